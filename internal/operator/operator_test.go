package operator

import (
	"bytes"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"os"
	"testing"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// TestCapVerbosity: client-go logs Secret bodies at V(8); the cap must drop them even when
// the configured level would print them.
func TestCapVerbosity(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	l := CapVerbosity(zap.New(zap.WriteTo(&buf), zap.Level(zapcore.Level(-10))), MaxVerbosity)
	l.V(8).Info("Request Body", "body", "secret-body")
	l.WithName("client").WithValues("k", "v").V(7).Info("Request Headers")
	g.Expect(buf.String()).To(BeEmpty())
	l.V(5).Info("Debug line")
	l.Info("Info line")
	g.Expect(buf.String()).To(ContainSubstring("Debug line"))
	g.Expect(buf.String()).To(ContainSubstring("Info line"))
	g.Expect(l.V(6).Enabled()).To(BeFalse())
}

func TestSplitNamespaces(t *testing.T) {
	g := NewWithT(t)
	g.Expect(SplitNamespaces(" a, b,,c ")).To(Equal([]string{"a", "b", "c"}))
	g.Expect(SplitNamespaces("")).To(BeEmpty())
}

func TestCgroupMemoryLimit(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		g.Expect(os.WriteFile(p, []byte(content), 0o644)).To(Succeed())
		return p
	}
	g.Expect(cgroupMemoryLimit([]string{write("v2", "268435456\n")})).To(BeEquivalentTo(256 << 20))
	g.Expect(cgroupMemoryLimit([]string{write("unlimited", "max\n")})).To(BeZero())
	g.Expect(cgroupMemoryLimit([]string{dir + "/absent", write("v1", "134217728")})).To(BeEquivalentTo(128 << 20))
	g.Expect(cgroupMemoryLimit([]string{write("v1-unlimited", "9223372036854771712")})).To(BeZero())
	g.Expect(cgroupMemoryLimit([]string{dir + "/absent"})).To(BeZero())
}

func TestCacheTransformsDropLargeMetadata(t *testing.T) {
	g := NewWithT(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: "s", Labels: map[string]string{"a": "b"},
		Annotations:     map[string]string{lastAppliedAnnotation: `{"data":{"token":"c2VjcmV0"}}`, "keep": "me"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "owner"}},
	}}
	out, err := trimForCache(secret.DeepCopy())
	g.Expect(err).NotTo(HaveOccurred())
	got := out.(*corev1.Secret)
	g.Expect(got.ManagedFields).To(BeNil())
	g.Expect(got.Annotations).To(Equal(map[string]string{"keep": "me"}))
	g.Expect(got.Labels).To(HaveKey("a"))

	out, err = trimSecretMetadata(&metav1.PartialObjectMetadata{ObjectMeta: *secret.ObjectMeta.DeepCopy()})
	g.Expect(err).NotTo(HaveOccurred())
	meta := out.(*metav1.PartialObjectMetadata)
	g.Expect(meta.Annotations).To(BeNil())
	g.Expect(meta.ManagedFields).To(BeNil())
	g.Expect(meta.Labels).To(HaveKey("a"))
	g.Expect(meta.OwnerReferences).To(HaveLen(1))
}
