package operator

import (
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// MaxVerbosity is the most verbose level anything in the process logs at. client-go logs
// request and response bodies (which for a Secret include the token) at V(8) and headers at
// V(7), so nothing above V(5) is ever written, whatever the configured level.
const MaxVerbosity = 5

// ParseLogLevel reads --log-level: debug (V(5)), info, error, or a verbosity number N.
func ParseLogLevel(s string) (zapcore.Level, error) {
	switch s {
	case "debug":
		return zapcore.Level(-MaxVerbosity), nil
	case "info":
		return zapcore.InfoLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--log-level must be debug, info, error or a verbosity number, not %q", s)
	}
	return zapcore.Level(-n), nil
}

// NewLogger is the process's logger: zap at level (json, or console when asked), writing to
// w (nil: stderr). The zap core itself is clamped to MaxVerbosity, so every logger derived
// from it, including ones client-go takes from a context, is capped, not only this one.
func NewLogger(level zapcore.Level, console bool, w io.Writer) logr.Logger {
	level = max(level, zapcore.Level(-MaxVerbosity))
	opts := []zap.Opts{zap.Level(level), zap.UseDevMode(console)}
	if w != nil {
		opts = append(opts, zap.WriteTo(w))
	}
	return CapVerbosity(zap.New(opts...), MaxVerbosity)
}

// SetGlobalLoggers makes l, capped, the logger of controller-runtime (ctrl.Log, which the
// caches and their client-go reflectors use) and of klog (which the rest of client-go uses),
// and sets klog's own verbosity (its -v) to that of level, at most MaxVerbosity: klog checks
// its -v before it calls l, and client-go's debugging round trippers read it.
func SetGlobalLoggers(l logr.Logger, level zapcore.Level) error {
	l = CapVerbosity(l, MaxVerbosity)
	ctrl.SetLogger(l)
	klog.SetLogger(l)
	return setKlogVerbosity(min(max(-int(level), 0), MaxVerbosity))
}

// setKlogVerbosity sets klog's -v through a private flag set, so that klog's flags do not
// become the manager's.
func setKlogVerbosity(v int) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Set("v", strconv.Itoa(v)); err != nil {
		return fmt.Errorf("setting klog's verbosity: %w", err)
	}
	return nil
}
