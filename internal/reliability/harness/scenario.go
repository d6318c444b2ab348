package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/reliability/faultproxy"
	"github.com/statusops/apitoken-operator/internal/reliability/oracle"
)

// Scenario is one namespace with its own backend, fault proxy, ClusterStatusBackend (named
// like the namespace) and manager processes watching only that namespace.
type Scenario struct {
	Name      string
	Dir       string
	CP        *ControlPlane
	Kube      client.Client
	Namespace string
	Backend   *Backend
	Proxy     *faultproxy.Proxy
	Managers  []*Manager
	// ManagerBinary is the binary NewManager starts.
	ManagerBinary string
	// Deleted and Retain feed the oracle.
	Deleted []types.UID
	Retain  map[types.UID]bool

	mu      sync.Mutex
	values  map[string]string
	scrapes map[string][]byte
	// scrapeErrs are failed scrapes: the oracle's text scan cannot vouch for what it did
	// not read, so Check fails on them.
	scrapeErrs []error
	stop       chan struct{}
	stopped    chan struct{}
	// watcher is the continuous oracle, when Watch started it.
	watcher *Watcher
}

// NewScenario creates the namespace, the backend (with latency), the proxy in front of it,
// the admin Secret and the ClusterStatusBackend, and starts collecting every token value
// that appears in a Secret of the namespace.
func NewScenario(ctx context.Context, cp *ControlPlane, managerBinary, dir, name string, latency time.Duration) (*Scenario, error) {
	s := &Scenario{Name: name, Dir: dir, CP: cp, Kube: cp.Client, Namespace: name, ManagerBinary: managerBinary,
		Retain: map[types.UID]bool{}, values: map[string]string{}, scrapes: map[string][]byte{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	var err error
	if s.Backend, err = StartBackend(dir, latency); err != nil {
		return nil, err
	}
	if s.Proxy, err = faultproxy.Start(s.Backend.URL); err != nil {
		return nil, err
	}
	if err := s.Kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"reliability": "true"}}}); err != nil {
		return nil, err
	}
	if err := s.Kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "backend-admin", Namespace: name},
		StringData: map[string]string{"token": s.Backend.AdminToken}}); err != nil {
		return nil, err
	}
	if err := s.CreateBackend(ctx, name, s.Proxy.URL, "backend-admin", "token", nil); err != nil {
		return nil, err
	}
	go s.collect()
	return s, nil
}

// CreateBackend creates a ClusterStatusBackend whose credentials are in this namespace.
func (s *Scenario) CreateBackend(ctx context.Context, name, url, secret, key string, allowed *metav1.LabelSelector) error {
	return s.Kube.Create(ctx, &tokensv1alpha1.ClusterStatusBackend{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1alpha1.ClusterStatusBackendSpec{
			StatusBackendSpec: tokensv1alpha1.StatusBackendSpec{URL: url,
				CredentialsSecretRef: tokensv1alpha1.CredentialsSecretReference{Name: secret, Namespace: s.Namespace, Key: key}},
			AllowedNamespaces: allowed,
		},
	})
}

// NewManager adds a manager process watching this namespace, logging at debug level (so
// the leak check sees the most), with a 3 s inventory interval; args are added.
func (s *Scenario) NewManager(args ...string) (*Manager, error) {
	name := fmt.Sprintf("manager-%d", len(s.Managers))
	base := []string{"--watch-namespaces=" + s.Namespace, "--leader-election-namespace=" + s.Namespace,
		"--leader-election-id=" + s.Name, "--log-level=debug", "--sync-interval=3s"}
	m, err := NewManager(name, s.ManagerBinary, s.CP.Kubeconfig, filepath.Join(s.Dir, name+".log"), append(base, args...)...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock() // the continuous oracle reads Managers
	s.Managers = append(s.Managers, m)
	s.mu.Unlock()
	return m, nil
}

// Scrape reads a manager's metrics now and keeps the text for the oracle.
func (s *Scenario) Scrape(m *Manager) {
	data, err := m.Scrape()
	if err != nil {
		s.mu.Lock()
		s.scrapeErrs = append(s.scrapeErrs, fmt.Errorf("scraping the metrics of %s: %w", m.Name, err))
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.scrapes[fmt.Sprintf("metrics of %s #%d", m.Name, len(s.scrapes))] = data
	s.mu.Unlock()
}

// collect records the token value of every Secret of the namespace, every 200 ms.
func (s *Scenario) collect() {
	defer close(s.stopped)
	for {
		s.CollectNow(context.Background())
		select {
		case <-s.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CollectNow records the token values now in the namespace's Secrets.
func (s *Scenario) CollectNow(ctx context.Context) {
	var list corev1.SecretList
	if err := s.Kube.List(ctx, &list, client.InNamespace(s.Namespace)); err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range list.Items {
		v := string(sec.Data[tokensv1alpha1.SecretKeyToken])
		owner := ""
		for _, ref := range sec.OwnerReferences {
			if ref.Kind == "APIToken" {
				owner = string(ref.UID)
			}
		}
		if v == "" || owner == "" {
			continue // not an APIToken's Secret (credentials, foreign Secrets)
		}
		if _, ok := s.values[v]; !ok || s.values[v] == "" {
			s.values[v] = owner
		}
	}
}

// Values are every token value seen so far, in Secrets or through the proxy.
func (s *Scenario) Values() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.values {
		out[k] = v
	}
	for k, v := range s.Proxy.IssuedValues() {
		out[k] = v
	}
	return out
}

// Close stops the managers, the collector, the proxy and the backend. It keeps the
// namespace (the control plane goes away with the test binary).
func (s *Scenario) Close() {
	if w := s.Watcher(); w != nil {
		w.stop()
	}
	for _, m := range s.Managers {
		m.Stop()
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
		<-s.stopped
	}
	s.Proxy.Close()
	_ = s.Backend.Stop()
}

// TokenSpec builds an APIToken of this scenario's backend.
func (s *Scenario) TokenSpec(name string, perm tokensv1alpha1.Permission) *tokensv1alpha1.APIToken {
	return &tokensv1alpha1.APIToken{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace},
		Spec: tokensv1alpha1.APITokenSpec{Permission: perm,
			BackendRef: &tokensv1alpha1.BackendReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: s.Name}},
	}
}

// CreateTokens creates n APITokens named prefix-0000.. with 8 writers in parallel; mutate,
// when set, adjusts each before it is created.
func (s *Scenario) CreateTokens(ctx context.Context, prefix string, n int, mutate func(i int, t *tokensv1alpha1.APIToken)) error {
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		t := s.TokenSpec(fmt.Sprintf("%s-%04d", prefix, i), tokensv1alpha1.PermissionReadOnly)
		if mutate != nil {
			mutate(i, t)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.Kube.Create(ctx, t); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// List returns the namespace's APITokens.
func (s *Scenario) List(ctx context.Context) ([]tokensv1alpha1.APIToken, error) {
	var list tokensv1alpha1.APITokenList
	if err := s.Kube.List(ctx, &list, client.InNamespace(s.Namespace)); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// IsIssued: Active, Ready=True reason Issued, for the current generation.
func IsIssued(t *tokensv1alpha1.APIToken) bool {
	c := meta.FindStatusCondition(t.Status.Conditions, tokensv1alpha1.ConditionReady)
	return t.Status.Phase == tokensv1alpha1.PhaseActive && c != nil && c.Status == metav1.ConditionTrue &&
		c.Reason == tokensv1alpha1.ReasonIssued && t.Status.ObservedGeneration == t.Generation && t.Status.TokenID != ""
}

// ReadyReason is the reason of the Ready condition, or "".
func ReadyReason(t *tokensv1alpha1.APIToken) string {
	if c := meta.FindStatusCondition(t.Status.Conditions, tokensv1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// WaitAll waits until every APIToken of the namespace (at least min of them) satisfies ok.
func (s *Scenario) WaitAll(ctx context.Context, timeout time.Duration, what string, min int, ok func(*tokensv1alpha1.APIToken) bool) error {
	return WaitFor(ctx, timeout, what, func() (bool, string, error) {
		items, err := s.List(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		var bad []string
		for i := range items {
			if !ok(&items[i]) {
				bad = append(bad, fmt.Sprintf("%s(%s/%s)", items[i].Name, items[i].Status.Phase, ReadyReason(&items[i])))
			}
		}
		if len(items) < min {
			return false, fmt.Sprintf("%d of %d APITokens exist", len(items), min), nil
		}
		sort.Strings(bad)
		if len(bad) > 5 {
			bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
		}
		return len(bad) == 0, strings.Join(bad, " "), nil
	})
}

// WaitGone waits until the namespace has no APIToken left.
func (s *Scenario) WaitGone(ctx context.Context, timeout time.Duration) error {
	return WaitFor(ctx, timeout, "every APIToken to be gone", func() (bool, string, error) {
		items, err := s.List(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return len(items) == 0, fmt.Sprintf("%d left", len(items)), nil
	})
}

// DeleteAll deletes every APIToken of the namespace and records their UIDs for the oracle.
func (s *Scenario) DeleteAll(ctx context.Context) error {
	items, err := s.List(ctx)
	if err != nil {
		return err
	}
	for i := range items {
		if err := s.Delete(ctx, &items[i]); err != nil {
			return err
		}
	}
	return nil
}

// Delete deletes one APIToken and records it for the oracle.
func (s *Scenario) Delete(ctx context.Context, t *tokensv1alpha1.APIToken) error {
	s.mu.Lock()
	s.Deleted = append(s.Deleted, t.UID)
	if t.Spec.DeletionPolicy == tokensv1alpha1.DeletionPolicyRetain {
		s.Retain[t.UID] = true
	}
	s.mu.Unlock()
	if err := s.Kube.Delete(ctx, t); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// Check runs the oracle over the namespace with everything captured so far.
func (s *Scenario) Check(ctx context.Context) (*oracle.Report, error) {
	return s.CheckCreates(ctx, nil)
}

// CheckCreates is Check that also judges the backend's creates: expectCreates, when set, is
// the number of issuances the scenario caused (a duplicate create is cleaned up by the
// controller, so only this count sees it).
func (s *Scenario) CheckCreates(ctx context.Context, expectCreates *int) (*oracle.Report, error) {
	s.CollectNow(ctx)
	texts := map[string][]byte{}
	for _, m := range s.Managers {
		if m.Running() {
			s.Scrape(m)
		}
		data, err := os.ReadFile(m.LogPath)
		if err != nil {
			return nil, fmt.Errorf("reading the log of %s for the leak scan: %w", m.Name, err)
		}
		texts["log of "+m.Name] = data
	}
	s.mu.Lock()
	if err := errors.Join(s.scrapeErrs...); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	for k, v := range s.scrapes {
		texts[k] = v
	}
	deleted := append([]types.UID(nil), s.Deleted...)
	retain := map[types.UID]bool{}
	for k, v := range s.Retain {
		retain[k] = v
	}
	s.mu.Unlock()
	var continuous []string
	if wa := s.Watcher(); wa != nil {
		continuous, _ = wa.Violations()
	}
	st := s.Backend.Stats()
	w := &oracle.Writes{Creates: int(st.TokensCreated), Replays: int(st.Replays), Deactivations: int(st.Deactivations)}
	w.Other = int(st.WriteRequests) - w.Creates - w.Replays - w.Deactivations
	rep, err := oracle.Check(ctx, oracle.Input{
		Kube: s.Kube, Namespace: s.Namespace, BackendURL: s.Backend.URL, AdminToken: s.Backend.AdminToken,
		Values: s.Values(), Texts: texts, DeletedUIDs: deleted, RetainUIDs: retain, Writes: w,
		ExpectCreates: expectCreates,
	})
	if err != nil {
		return nil, err
	}
	// The continuous oracle's violations so far (each phase's Check repeats the earlier
	// ones: a violation during a phase fails every check after it).
	for _, v := range continuous {
		rep.Violations = append(rep.Violations, "during the scenario: "+v)
	}
	return rep, nil
}

// AddValue registers a value the leak check must look for (e.g. one planted in a hostile
// backend reply).
func (s *Scenario) AddValue(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[v] = ""
}
