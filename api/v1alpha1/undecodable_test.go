package v1alpha1_test

import (
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// TestListLeavesOutUndecodableItems: a list holding one object that does not decode (a
// duration or a time the Go types refuse, as a CRD upgrade or an etcd write can bring in)
// decodes through the same codec client-go uses, without that object, and the object is
// reported by name. Without the item-by-item path the whole list fails, and with it every
// informer of the operator.
func TestListLeavesOutUndecodableItems(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := tokensv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	decoder := serializer.NewCodecFactory(scheme).UniversalDeserializer()
	item := func(name, spec string) string {
		return `{"apiVersion":"tokens.statusops.dev/v1alpha1","kind":"APIToken","metadata":{"name":"` + name + `","namespace":"team-a","uid":"uid-` + name + `","resourceVersion":"7"},"spec":` + spec + `}`
	}
	list := func(items ...string) []byte {
		return []byte(`{"apiVersion":"tokens.statusops.dev/v1alpha1","kind":"APITokenList","metadata":{"resourceVersion":"42"},"items":[` + strings.Join(items, ",") + `]}`)
	}
	cases := map[string]struct {
		data []byte
		want []string
		bad  []string
	}{
		"all decode": {list(item("a", `{"permission":"ReadOnly"}`), item("b", `{"permission":"FullAccess"}`)), []string{"a", "b"}, nil},
		"a duration Go cannot hold": {list(item("a", `{"permission":"ReadOnly"}`), item("bad", `{"permission":"ReadOnly","rotation":{"gracePeriod":"99999999999h"}}`), item("b", `{"permission":"ReadOnly"}`)),
			[]string{"a", "b"}, []string{"bad"}},
		"an offset Go refuses": {list(item("bad", `{"permission":"ReadOnly","expiresAt":"2030-06-30T00:00:00+25:00"}`), item("b", `{"permission":"ReadOnly"}`)),
			[]string{"b"}, []string{"bad"}},
		"a quiet period and a time": {list(item("q", `{"permission":"ReadOnly","rotation":{"retireWhenUnused":{"quietPeriod":"99999999999h"}}}`), item("x", `{"permission":"ReadOnly","expiresAt":"2030-06-30T00:00:00x5Z"}`)),
			[]string{}, []string{"q", "x"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			var mu sync.Mutex
			var reported []tokensv1alpha1.Undecodable
			cancel := tokensv1alpha1.OnUndecodable(func(u tokensv1alpha1.Undecodable) {
				mu.Lock()
				defer mu.Unlock()
				reported = append(reported, u)
			})
			defer cancel()
			obj, _, err := decoder.Decode(c.data, nil, nil)
			g.Expect(err).NotTo(HaveOccurred())
			l, ok := obj.(*tokensv1alpha1.APITokenList)
			g.Expect(ok).To(BeTrue(), "decoded as %T", obj)
			g.Expect(l.ResourceVersion).To(Equal("42"))
			names := []string{}
			for _, it := range l.Items {
				names = append(names, it.Name)
			}
			g.Expect(names).To(Equal(c.want))
			var bad []string
			for _, u := range reported {
				g.Expect(u.Kind).To(Equal("APIToken"))
				g.Expect(u.Namespace).To(Equal("team-a"))
				g.Expect(string(u.UID)).To(Equal("uid-" + u.Name))
				g.Expect(u.Err).To(HaveOccurred())
				bad = append(bad, u.Name)
			}
			g.Expect(bad).To(Equal(c.bad))
		})
	}
}
