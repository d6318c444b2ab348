package operator

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
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

	// The metadata cache holds every Secret in the cluster: only the managed-by label and the
	// controller reference stay, however many labels and owners a tenant adds.
	hostile := secret.ObjectMeta.DeepCopy()
	hostile.Labels = map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}
	for i := range 1000 {
		hostile.Labels[fmt.Sprintf("l%04d", i)] = strings.Repeat("v", 63)
		hostile.OwnerReferences = append(hostile.OwnerReferences, metav1.OwnerReference{Name: fmt.Sprintf("o%d", i)})
	}
	hostile.OwnerReferences = append(hostile.OwnerReferences, metav1.OwnerReference{Name: "owner", Controller: ptr.To(true)})
	out, err = trimSecretMetadata(&metav1.PartialObjectMetadata{ObjectMeta: *hostile})
	g.Expect(err).NotTo(HaveOccurred())
	meta := out.(*metav1.PartialObjectMetadata)
	g.Expect(meta.Annotations).To(BeNil())
	g.Expect(meta.ManagedFields).To(BeNil())
	g.Expect(meta.Labels).To(Equal(map[string]string{tokensv1alpha1.LabelManagedBy: tokensv1alpha1.ManagedByValue}))
	g.Expect(meta.OwnerReferences).To(Equal([]metav1.OwnerReference{{Name: "owner", Controller: ptr.To(true)}}))

	out, err = trimSecretMetadata(&metav1.PartialObjectMetadata{ObjectMeta: *secret.ObjectMeta.DeepCopy()})
	g.Expect(err).NotTo(HaveOccurred())
	meta = out.(*metav1.PartialObjectMetadata)
	g.Expect(meta.Labels).To(BeNil(), "a foreign Secret keeps no label")
	g.Expect(meta.OwnerReferences).To(BeNil(), "nor a non-controller owner")
}

// TestNewLoggerClampsTheCore: the zap core under the logger, which client-go reaches
// through loggers it takes from contexts, is itself never enabled above MaxVerbosity.
func TestNewLoggerClampsTheCore(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	l := NewLogger(zapcore.Level(-10), false, &buf)
	capped, ok := l.GetSink().(*cappedSink)
	g.Expect(ok).To(BeTrue(), "NewLogger returns a capped logger")
	g.Expect(capped.LogSink.Enabled(MaxVerbosity)).To(BeTrue())
	g.Expect(capped.LogSink.Enabled(MaxVerbosity+1)).To(BeFalse(), "the zap core itself is enabled above the cap")
	l.V(8).Info("Response Body", "body", "secret-body")
	l.V(5).Info("Debug line")
	g.Expect(buf.String()).NotTo(ContainSubstring("secret-body"))
	g.Expect(buf.String()).To(ContainSubstring("Debug line"))
}

// TestSetGlobalLoggersCapsKlog: klog's own -v never exceeds the cap (client-go's debugging
// round trippers and every klog.V call read it), and klog and ctrl.Log write through l.
func TestSetGlobalLoggersCapsKlog(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	l := zap.New(zap.WriteTo(&buf), zap.Level(zapcore.Level(-10)))
	g.Expect(SetGlobalLoggers(l, zapcore.Level(-10))).To(Succeed())
	t.Cleanup(func() { klog.ClearLogger(); _ = setKlogVerbosity(0) })
	g.Expect(klog.V(MaxVerbosity).Enabled()).To(BeTrue())
	g.Expect(klog.V(MaxVerbosity + 1).Enabled()).To(BeFalse())
	klog.V(5).InfoS("klog debug")
	klog.Background().V(8).Info("klog body", "body", "secret-body")
	ctrl.Log.V(8).Info("ctrl body", "body", "secret-body")
	ctrl.Log.V(5).Info("ctrl debug")
	g.Expect(buf.String()).NotTo(ContainSubstring("secret-body"))
	g.Expect(buf.String()).To(And(ContainSubstring("klog debug"), ContainSubstring("ctrl debug")))

	g.Expect(SetGlobalLoggers(l, zapcore.InfoLevel)).To(Succeed())
	g.Expect(klog.V(1).Enabled()).To(BeFalse(), "info means klog -v 0")
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]zapcore.Level{"debug": -5, "info": 0, "error": zapcore.ErrorLevel, "10": -10, "0": 0} {
		got, err := ParseLogLevel(in)
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		NewWithT(t).Expect(got).To(Equal(want), in)
	}
	for _, in := range []string{"trace", "-1", ""} {
		_, err := ParseLogLevel(in)
		NewWithT(t).Expect(err).To(HaveOccurred(), in)
	}
}

func TestSetGCPercentDefault(t *testing.T) {
	g := NewWithT(t)
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	debug.SetGCPercent(100)
	g.Expect(SetGCPercentDefault()).To(BeTrue())
	g.Expect(debug.SetGCPercent(100)).To(Equal(DefaultGCPercent))

	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200) // as the runtime applies GOGC at start
	g.Expect(SetGCPercentDefault()).To(BeFalse())
	g.Expect(debug.SetGCPercent(100)).To(Equal(200), "a GOGC the user set is kept")
}
