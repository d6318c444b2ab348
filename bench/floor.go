package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
)

// measureFloor runs the operator's writes for N objects once per floor concurrency and keeps
// the fastest: the API server's best rate for this work on this machine, whatever concurrency
// gets it (a floor at one fixed concurrency is not a floor: the operator beat it at N=300).
// Each concurrency runs on a control plane of its own, started for it and stopped after it,
// and the operator's run gets one of its own too: every run starts from the same empty API
// server and etcd. Until session 7 every run shared one control plane, so each later floor
// and then the operator ran on an API server that held the earlier floors' objects (4N
// APITokens and Events by the operator's run; with the floor writing the operator's full
// objects at N=20000, 2.9 GB of API server RSS, and the later floors slowed: 233 s, then
// 273). Deleting the objects instead took longer than the floor itself (44 s after a floor
// of 37 s at N=2000: the API server deletes a collection one object at a time).
func measureFloor(ctx context.Context, dir string, o options, res *Results) error {
	per := o.n
	if o.floorTokens > 0 && o.floorTokens < o.n {
		per = o.floorTokens
	}
	res.FloorTokens = per
	res.FloorByConcurrency = map[string]float64{}
	best := time.Duration(0)
	for _, conc := range o.floorConcurrencies {
		cp, err := harness.StartControlPlane(dir)
		if err != nil {
			return fmt.Errorf("the floor's control plane: %w", err)
		}
		d, cpu, err := floorOn(ctx, cp, per, conc, res)
		if stopErr := cp.Stop(); err == nil && stopErr != nil {
			err = stopErr
		}
		if err != nil {
			return fmt.Errorf("floor at concurrency %d: %w", conc, err)
		}
		scaled := time.Duration(float64(d) * float64(o.n) / float64(per))
		res.FloorByConcurrency[strconv.Itoa(conc)] = scaled.Seconds()
		if best == 0 || scaled < best {
			best, res.FloorConcurrency, res.CPUSecondsFloor = scaled, conc, cpu
		}
		logf("floor at concurrency %d: %d objects x (create, finalizer patch, Secret create, status patch, Event) in %.2fs; CPU seconds %v", conc, per, d.Seconds(), cpu)
	}
	res.FloorSeconds = best.Seconds()
	logf("floor: %.2fs for %d objects at concurrency %d", res.FloorSeconds, o.n, res.FloorConcurrency)
	return nil
}

// floorOn runs one floor on cp and returns its time and the CPU seconds of each process;
// the first run also records the sizes of the floor's objects.
func floorOn(ctx context.Context, cp *harness.ControlPlane, per, conc int, res *Results) (time.Duration, map[string]float64, error) {
	ns := fmt.Sprintf("bench-floor-c%d", conc)
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return 0, nil, err
	}
	cpuBefore := cpuSeconds()
	waitProfile := profileWindow(fmt.Sprintf("floor-c%d-apiserver.pb.gz", conc), apiserverProfile(cp.Config))
	d, err := runFloor(ctx, cp.Config, ns, per, conc)
	cpu := cpuSince(cpuBefore)
	waitProfile()
	if err == nil && res.ObjectBytes == nil {
		if err := recordObjectBytes(ctx, cp.Client, res, ns, tokenObj(ns, 0).Name, "floor "); err != nil {
			logf("floor object sizes not read: %v", err)
		}
	}
	return d, cpu, err
}

// runFloor creates n APITokens in ns and does for each the writes the operator does
// (finalizer patch, Secret create, status patch, and the Issued Event), on conc workers. The
// Secret and the status have every field the operator writes, with values of the same
// length (floorSecret, floorStatus); checkFloorShape compares them with the operator's
// after Ready, and object_bytes gives both sizes. Until session 7 the floor wrote a status
// of four fields and one condition and a Secret with one label: objects of 1325 and 738
// bytes against the operator's 2474 and 1328, cheaper in every step of the API server.
func runFloor(ctx context.Context, cfg *rest.Config, ns string, n, conc int) (time.Duration, error) {
	c, err := unthrottled(cfg)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	err = pool(n, conc, func(i int) error {
		tok := tokenObj(ns, i)
		if err := c.Create(ctx, tok); err != nil {
			return err
		}
		patch := client.MergeFrom(tok.DeepCopy())
		tok.Finalizers = append(tok.Finalizers, tokensv1alpha1.Finalizer)
		if err := c.Patch(ctx, tok, patch); err != nil {
			return err
		}
		if err := c.Create(ctx, floorSecret(tok)); err != nil {
			return err
		}
		before := tok.DeepCopy()
		tok.Status = floorStatus(tok, metav1.Now())
		if err := c.Status().Patch(ctx, tok, client.MergeFrom(before)); err != nil {
			return err
		}
		return c.Create(ctx, floorEvent(tok))
	})
	return time.Since(start), err
}

// randomString is n random characters of the backend's id alphabet.
func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// floorTokenID is a token id of the reference backend's length.
func floorTokenID() string { return "tok_" + randomString(20) }

// floorSecret is the Secret the operator writes for tok: its labels, its hash annotation,
// its controller owner reference and its data keys, with values of the same length.
func floorSecret(tok *tokensv1alpha1.APIToken) *corev1.Secret {
	value := "sgt_" + randomString(40)
	sum := sha256.Sum256([]byte(value))
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tok.Name, Namespace: tok.Namespace,
			Labels:      map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue, tokensv1alpha1.LabelAPIToken: tok.Name},
			Annotations: map[string]string{"tokens.statusops.dev/token-sha256": hex.EncodeToString(sum[:])},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "APIToken", Name: tok.Name, UID: tok.UID,
				Controller: new(true), BlockOwnerDeletion: new(true)}}},
		Data: map[string][]byte{"token": []byte(value), "tokenID": []byte(floorTokenID()), "permission": []byte("ReadOnly"), "expiresAt": nil,
			"url": []byte("http://127.0.0.1:46177/api/v3")},
		Type: corev1.SecretTypeOpaque,
	}
}

// floorStatus is the status the operator writes when it issues tok's token: every field,
// with values of the same length.
func floorStatus(tok *tokensv1alpha1.APIToken, now metav1.Time) tokensv1alpha1.APITokenStatus {
	return tokensv1alpha1.APITokenStatus{
		Phase: tokensv1alpha1.PhaseActive, TokenID: floorTokenID(), TokenHint: "..." + randomString(4),
		Permission: tokensv1alpha1.PermissionReadOnly, SecretName: tok.Name, IssuedAt: &now,
		Backend:     &tokensv1alpha1.BackendStatusReference{Kind: tokensv1alpha1.BackendKindClusterStatusBackend, Name: "default", UID: "57a954ae-07cd-4388-b158-1dd0b5a0f520"},
		IssueSerial: 1, RecentIssues: []metav1.Time{now}, Usage: &tokensv1alpha1.UsageStatus{ObservedSince: &now},
		ObservedGeneration: tok.Generation,
		Conditions: []metav1.Condition{
			{Type: tokensv1alpha1.ConditionLeastPrivilege, Status: metav1.ConditionTrue, ObservedGeneration: tok.Generation, LastTransitionTime: now,
				Reason: "PermissionFitsUse", Message: "The ReadOnly token was refused no write within the review window."},
			{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: tok.Generation, LastTransitionTime: now,
				Reason: "Issued", Message: "An active ReadOnly token is in Secret " + tok.Name + "."},
		},
	}
}

// fieldPaths are the JSON field paths of obj without its metadata's server-set fields
// (managedFields, resourceVersion, uid, creationTimestamp, generation), sorted; list items
// are one path each ("[]").
func fieldPaths(obj any) ([]string, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := prefix + "." + k
				switch p {
				case ".metadata.managedFields", ".metadata.resourceVersion", ".metadata.uid", ".metadata.creationTimestamp", ".metadata.generation":
					continue
				}
				// Label, annotation and data keys are fields of their own.
				walk(p, e)
			}
		case []any:
			for _, e := range x {
				walk(prefix+"[]", e)
			}
		default:
			seen[prefix] = true
		}
	}
	walk("", v)
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// tokenAndSecret reads the APIToken ns/name and the Secret its status names.
func tokenAndSecret(ctx context.Context, kube client.Client, ns, name string) (*tokensv1alpha1.APIToken, *corev1.Secret, error) {
	var tok tokensv1alpha1.APIToken
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &tok); err != nil {
		return nil, nil, err
	}
	var sec corev1.Secret
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: tok.Status.SecretName}, &sec); err != nil {
		return nil, nil, err
	}
	return &tok, &sec, nil
}

// recordObjectBytes reads the APIToken ns/name and its Secret and records their JSON sizes
// in res.ObjectBytes under prefix+"apitoken" and prefix+"secret".
func recordObjectBytes(ctx context.Context, kube client.Client, res *Results, ns, name, prefix string) error {
	tok, sec, err := tokenAndSecret(ctx, kube, ns, name)
	if err != nil {
		return err
	}
	if res.ObjectBytes == nil {
		res.ObjectBytes = map[string]int{}
	}
	for kind, obj := range map[string]any{"apitoken": tok, "secret": sec} {
		data, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		res.ObjectBytes[prefix+kind] = len(data)
	}
	return nil
}

// checkFloorShape compares the floor's objects with an APIToken the operator made Ready and
// its Secret, by field paths, and returns what differs.
func checkFloorShape(ctx context.Context, kube client.Client, ns, name string) ([]string, error) {
	tok, sec, err := tokenAndSecret(ctx, kube, ns, name)
	if err != nil {
		return nil, err
	}
	floorTok := tokenObj(ns, 0)
	floorTok.UID, floorTok.Generation, floorTok.Finalizers = tok.UID, tok.Generation, []string{tokensv1alpha1.Finalizer}
	floorTok.Spec = tok.Spec // the API server's defaults
	floorTok.Status = floorStatus(floorTok, metav1.Now())
	floorSec := floorSecret(floorTok)
	diffs := []string{}
	for _, pair := range [][2]any{{tok, floorTok}, {sec, floorSec}} {
		a, err := fieldPaths(pair[0])
		if err != nil {
			return nil, err
		}
		b, err := fieldPaths(pair[1])
		if err != nil {
			return nil, err
		}
		for _, p := range a {
			if !slices.Contains(b, p) {
				diffs = append(diffs, "the floor lacks "+p)
			}
		}
		for _, p := range b {
			if !slices.Contains(a, p) {
				diffs = append(diffs, "the floor adds "+p)
			}
		}
	}
	return diffs, nil
}

// floorEvent is the Issued Event the operator writes for each token (events.k8s.io/v1, as
// the controllers root's oneOffRecorder writes it): a write of every issuance, so the floor
// makes it too.
func floorEvent(tok *tokensv1alpha1.APIToken) *eventsv1.Event {
	now := time.Now()
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%v.%x", tok.Name, now.UnixNano()), Namespace: tok.Namespace},
		EventTime:           metav1.MicroTime{Time: now},
		ReportingController: "apitoken-operator",
		ReportingInstance:   "apitoken-operator-bench-floor",
		Action:              "Issued",
		Reason:              "Issued",
		Regarding: corev1.ObjectReference{Kind: "APIToken", APIVersion: tokensv1alpha1.GroupVersion.String(),
			Namespace: tok.Namespace, Name: tok.Name, UID: tok.UID, ResourceVersion: tok.ResourceVersion},
		Note: "Issued ReadOnly token tok_x (...abcd) into Secret " + tok.Name + "; never expires",
		Type: corev1.EventTypeNormal,
	}
}
