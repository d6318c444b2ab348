package main

import (
	"context"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// scriptedWatches is a client whose watches the test ends at will: each Watch returns the
// next fake watcher and records the resourceVersion it was asked to start from; List
// answers with listed.
type scriptedWatches struct {
	client.WithWatch
	mu       sync.Mutex
	watchers []*watch.FakeWatcher
	from     []string
	lists    int
	listed   tokensv1alpha1.APITokenList
	opened   chan int
}

func (s *scriptedWatches) Watch(_ context.Context, _ client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
	o := &client.ListOptions{}
	o.ApplyOptions(opts)
	rv := ""
	if o.Raw != nil {
		rv = o.Raw.ResourceVersion
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.from)
	s.from = append(s.from, rv)
	s.opened <- n
	return s.watchers[n], nil
}

func (s *scriptedWatches) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	s.listed.DeepCopyInto(list.(*tokensv1alpha1.APITokenList))
	return nil
}

func tokenAt(name, rv string) *tokensv1alpha1.APIToken {
	return &tokensv1alpha1.APIToken{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench", ResourceVersion: rv}}
}

// TestWatchTokensGoesOn: when the API server ends the watch, watchTokens watches on from the
// last resourceVersion it delivered, without a list; after a 410 Gone it lists, delivers the
// list, and watches on from the list's resourceVersion. Before session 7 the bench failed
// when the watch ended, and its first fix listed every time (4292 tokens inside Ready).
func TestWatchTokensGoesOn(t *testing.T) {
	s := &scriptedWatches{watchers: []*watch.FakeWatcher{watch.NewFakeWithChanSize(4, false), watch.NewFakeWithChanSize(4, false),
		watch.NewFakeWithChanSize(4, false)}, opened: make(chan int, 3)}
	s.listed.ResourceVersion = "20"
	s.listed.Items = []tokensv1alpha1.APIToken{*tokenAt("c", "19")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := watchTokens(ctx, s, "bench")
	if err != nil {
		t.Fatal(err)
	}
	next := func() *tokensv1alpha1.APIToken {
		t.Helper()
		select {
		case tok := <-events:
			return tok
		case <-time.After(5 * time.Second):
			t.Fatal("no token delivered")
			return nil
		}
	}
	opened := func(want int) {
		t.Helper()
		select {
		case n := <-s.opened:
			if n != want {
				t.Fatalf("watch %d opened, want %d", n, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("watch %d not opened", want)
		}
	}
	opened(0)
	s.watchers[0].Add(tokenAt("a", "7"))
	if got := next(); got.Name != "a" {
		t.Fatalf("got %s, want a", got.Name)
	}
	s.watchers[0].Stop() // the API server ends the watch
	opened(1)
	s.watchers[1].Modify(tokenAt("b", "9"))
	if got := next(); got.Name != "b" {
		t.Fatalf("got %s, want b", got.Name)
	}
	s.watchers[1].Error(&apierrors.NewGone("too old resource version").ErrStatus)
	s.watchers[1].Stop()
	if got := next(); got.Name != "c" {
		t.Fatalf("after 410 Gone got %s, want the listed c", got.Name)
	}
	opened(2)
	s.mu.Lock()
	defer s.mu.Unlock()
	if want := []string{"", "7", "20"}; len(s.from) != 3 || s.from[0] != want[0] || s.from[1] != want[1] || s.from[2] != want[2] {
		t.Fatalf("watches started from %q, want %q", s.from, want)
	}
	if s.lists != 1 {
		t.Fatalf("%d lists, want 1 (only after 410 Gone)", s.lists)
	}
}
