package logging

import (
	"bytes"
	"testing"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
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
