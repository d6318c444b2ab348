package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
)

// RotationFigures are the rotation phase's results.
type RotationFigures struct {
	Tokens int `json:"rotation_tokens"`
	// APIWritesPerToken and BackendWritesPerToken count what one overlapped rotation costs:
	// expected one create and one retirement on the backend.
	APIWritesPerToken     float64 `json:"rotation_api_writes_per_token"`
	BackendWritesPerToken float64 `json:"rotation_backend_writes_per_token"`
	// PeakRenewalsPerSecond: tokens created in the same second with a 720h lifetime, the
	// most whose status.renewalTime falls in one second (the deterministic spread).
	PeakRenewalsPerSecond int     `json:"rotation_peak_renewals_per_second"`
	SpreadTokens          int     `json:"rotation_spread_tokens"`
	LagP50Seconds         float64 `json:"rotation_lag_p50_seconds"`
	LagP99Seconds         float64 `json:"rotation_lag_p99_seconds"`
}

// measureRotation creates tokens that rotate once within the measurement (lifetime 10m,
// renewBefore 9m: the renewal comes at the floor of a tenth of the lifetime, 60 s after
// issue, and the successor's 60 s after its own; grace 5s), waits until each has its
// successor and the predecessor is retired, and counts the writes; afterwards the tokens
// are deleted, so nothing rotates on. Until session 7 the lifetime was 3m with renewBefore
// 150s: renewals came 18 to 30 s after issue, and on a slow machine (2026-12-02 00:30) some
// 40 successors renewed again before the last token drained, which put their second
// rotation into the per-token figures (2.40 backend writes). A token seen with a third id
// now fails the phase;
// the lag is from status.renewalTime to the successor's issue. A second batch with a 720h
// lifetime, created together, gives the spread of their renewal times.
func measureRotation(ctx context.Context, cfg *rest.Config, kube client.Client, be backendUnderTest, n, conc int) (*RotationFigures, error) {
	const ns = "bench-rotation"
	f := &RotationFigures{Tokens: n}
	rot := tokensv1alpha1.RotationSpec{Lifetime: &metav1.Duration{Duration: 10 * time.Minute}, RenewBefore: &metav1.Duration{Duration: 9 * time.Minute},
		GracePeriod: &metav1.Duration{Duration: 5 * time.Second}}
	if _, err := createAndWait(ctx, cfg, kube, ns, n, conc, func(_ int, t *tokensv1alpha1.APIToken) { t.Spec.Rotation = &rot }); err != nil {
		return nil, err
	}
	var first tokensv1alpha1.APITokenList
	if err := kube.List(ctx, &first, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	renewal := map[string]time.Time{}
	old := map[string]string{}
	for _, t := range first.Items {
		if t.Status.RenewalTime == nil {
			return nil, fmt.Errorf("%s has no renewalTime", t.Name)
		}
		renewal[t.Name], old[t.Name] = t.Status.RenewalTime.Time, t.Status.TokenID
	}
	apiBefore, err := apiWrites(ctx, cfg)
	if err != nil {
		return nil, err
	}
	beBefore := be.Stats()
	// The lag of each token's first rotation, from its renewal time to the successor's issue.
	lag := map[string]float64{}
	drained := map[string]bool{}
	successor := map[string]string{}
	twice := map[string]bool{}
	if err := harness.WaitFor(ctx, 5*time.Minute, "every token rotated once and drained", func() (bool, string, error) {
		var l tokensv1alpha1.APITokenList
		if err := kube.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return false, "", err
		}
		for _, t := range l.Items {
			if t.Status.TokenID == old[t.Name] || t.Status.IssuedAt == nil {
				continue
			}
			if _, seen := lag[t.Name]; !seen {
				lag[t.Name] = t.Status.IssuedAt.Sub(renewal[t.Name]).Seconds()
				successor[t.Name] = t.Status.TokenID
			} else if t.Status.TokenID != successor[t.Name] {
				twice[t.Name] = true
			}
			if len(t.Status.PreviousTokens) == 0 {
				drained[t.Name] = true
			}
		}
		return len(drained) == n, fmt.Sprintf("%d of %d rotated, %d drained", len(lag), n, len(drained)), nil
	}); err != nil {
		return nil, err
	}
	// A successor replaced before every token drained would put its second rotation's writes
	// into the per-token figures: the phase fails instead of reporting them.
	if len(twice) > 0 {
		return nil, fmt.Errorf("%d of %d tokens rotated a second time before the last one drained: the per-token writes would count both rotations", len(twice), n)
	}
	var lags []float64
	for _, v := range lag {
		lags = append(lags, v)
	}
	time.Sleep(2 * time.Second)
	apiAfter, err := apiWrites(ctx, cfg)
	if err != nil {
		return nil, err
	}
	core := 0
	for k, v := range diff(apiAfter, apiBefore) {
		if !strings.Contains(k, "events") {
			core += v
		}
	}
	f.APIWritesPerToken = float64(core) / float64(n)
	f.BackendWritesPerToken = float64(be.Stats().WriteRequests-beBefore.WriteRequests) / float64(n)
	sort.Float64s(lags)
	f.LagP50Seconds, f.LagP99Seconds = quantile(lags, 0.5), quantile(lags, 0.99)
	if err := kube.DeleteAllOf(ctx, &tokensv1alpha1.APIToken{}, client.InNamespace(ns)); err != nil {
		return nil, err
	}

	// The spread: tokens with a realistic lifetime, created together.
	long := tokensv1alpha1.RotationSpec{Lifetime: &metav1.Duration{Duration: 720 * time.Hour}}
	if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns + "-spread"}}); err != nil {
		return nil, err
	}
	if _, err := createAndWait(ctx, cfg, kube, ns+"-spread", n, conc, func(_ int, t *tokensv1alpha1.APIToken) { t.Spec.Rotation = &long }); err != nil {
		return nil, err
	}
	var spread tokensv1alpha1.APITokenList
	if err := kube.List(ctx, &spread, client.InNamespace(ns+"-spread")); err != nil {
		return nil, err
	}
	if err := kube.DeleteAllOf(ctx, &tokensv1alpha1.APIToken{}, client.InNamespace(ns+"-spread")); err != nil {
		return nil, err
	}
	perSecond := map[int64]int{}
	for _, t := range spread.Items {
		if t.Status.RenewalTime != nil {
			perSecond[t.Status.RenewalTime.Unix()]++
		}
	}
	for _, c := range perSecond {
		f.PeakRenewalsPerSecond = max(f.PeakRenewalsPerSecond, c)
	}
	f.SpreadTokens = len(spread.Items)
	logf("rotation of %d tokens: %.2f API and %.2f backend writes per token; lag from renewalTime p50 %.2fs p99 %.2fs; %d tokens created together renew at most %d in one second ("+strconv.Itoa(len(perSecond))+" distinct seconds)",
		n, f.APIWritesPerToken, f.BackendWritesPerToken, f.LagP50Seconds, f.LagP99Seconds, f.SpreadTokens, f.PeakRenewalsPerSecond)
	return f, nil
}
