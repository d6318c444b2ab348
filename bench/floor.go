package main

import (
	"context"
	"crypto/rand"
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
)

// measureFloor runs the operator's writes for N objects once per floor concurrency, each in
// its own namespace, and keeps the fastest: the API server's best rate for this work on this
// machine, whatever concurrency gets it (a floor at one fixed concurrency is not a floor: the
// operator beat it at N=300). The floor's Secrets are deleted afterwards, because the
// manager's metadata cache of all Secrets would otherwise hold them during the measurement.
func measureFloor(ctx context.Context, cfg *rest.Config, kube client.Client, o options, res *Results) error {
	per := o.n
	if o.floorTokens > 0 && o.floorTokens < o.n {
		per = o.floorTokens
	}
	res.FloorTokens = per
	res.FloorByConcurrency = map[string]float64{}
	best := time.Duration(0)
	for _, conc := range o.floorConcurrencies {
		ns := fmt.Sprintf("bench-floor-c%d", conc)
		if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		cpuBefore := cpuSeconds()
		d, err := runFloor(ctx, cfg, ns, per, conc)
		cpu := cpuSince(cpuBefore)
		if err != nil {
			return fmt.Errorf("floor at concurrency %d: %w", conc, err)
		}
		scaled := time.Duration(float64(d) * float64(o.n) / float64(per))
		res.FloorByConcurrency[strconv.Itoa(conc)] = scaled.Seconds()
		if best == 0 || scaled < best {
			best, res.FloorConcurrency, res.CPUSecondsFloor = scaled, conc, cpu
		}
		logf("floor at concurrency %d: %d objects x (create, finalizer patch, Secret create, status patch, Event) in %.2fs; CPU seconds %v", conc, per, d.Seconds(), cpu)
		if err := kube.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("deleting the floor's Secrets: %w", err)
		}
	}
	res.FloorSeconds = best.Seconds()
	logf("floor: %.2fs for %d objects at concurrency %d", res.FloorSeconds, o.n, res.FloorConcurrency)
	return nil
}

// runFloor creates n APITokens in ns and does for each the writes the operator does
// (finalizer patch, Secret create, status patch, and the Issued Event), on conc workers. The
// Secret and the status are smaller than the operator's (floorSecret, floorStatus), and
// checkFloorShape says by which fields: a floor of the operator's full objects was tried in
// session 6 and not kept (docs/performance.md, the fifth round).
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

// floorSecret is the floor's Secret: the operator's data keys, one label, no annotation and
// no owner reference.
func floorSecret(tok *tokensv1alpha1.APIToken) *corev1.Secret {
	value := make([]byte, 44)
	_, _ = rand.Read(value)
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tok.Name, Namespace: tok.Namespace,
		Labels: map[string]string{tokensv1alpha1.LabelManagedBy: "bench-floor"}},
		Data: map[string][]byte{"token": value, "tokenID": []byte("tok_x"), "permission": []byte("ReadOnly"), "expiresAt": nil, "url": []byte("http://x/api/v3")}}
}

// floorStatus is the floor's status: four of the operator's fields and its Ready condition.
func floorStatus(tok *tokensv1alpha1.APIToken, now metav1.Time) tokensv1alpha1.APITokenStatus {
	return tokensv1alpha1.APITokenStatus{Phase: tokensv1alpha1.PhaseActive, TokenID: "tok_x", SecretName: tok.Name,
		Conditions: []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Issued", Message: "Issued", LastTransitionTime: now}}}
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

// checkFloorShape compares the floor's objects with an APIToken the operator made Ready and
// its Secret, by field paths, and returns what differs.
func checkFloorShape(ctx context.Context, kube client.Client, ns, name string) ([]string, error) {
	var tok tokensv1alpha1.APIToken
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &tok); err != nil {
		return nil, err
	}
	var sec corev1.Secret
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: tok.Status.SecretName}, &sec); err != nil {
		return nil, err
	}
	floorTok := tokenObj(ns, 0)
	floorTok.UID, floorTok.Generation, floorTok.Finalizers = tok.UID, tok.Generation, []string{tokensv1alpha1.Finalizer}
	floorTok.Spec = tok.Spec // the API server's defaults
	floorTok.Status = floorStatus(floorTok, metav1.Now())
	floorSec := floorSecret(floorTok)
	var diffs []string
	for _, pair := range [][2]any{{&tok, floorTok}, {&sec, floorSec}} {
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
// internal/operator's oneOffRecorder writes it): a write of every issuance, so the floor
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
