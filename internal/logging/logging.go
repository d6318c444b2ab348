package logging

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"sync"

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

// CapVerbosity drops every log line above V(max).
func CapVerbosity(l logr.Logger, max int) logr.Logger {
	return logr.New(&cappedSink{LogSink: l.GetSink(), max: max, enabled: l.GetSink()})
}

// cappedSink caps the verbosity, and gives values and names to the sink under it only when
// a line is written. controller-runtime adds the controller, the object and a reconcile id
// to the logger of every pass, and zap copies its encoder (a 1 KiB buffer) for each: in the
// bench that was 2.6 GB in 150 s at N=5000, for passes that mostly log nothing.
type cappedSink struct {
	// LogSink writes the lines; for a derived sink it is made from the parent's by with, by
	// sink, at the first line written.
	logr.LogSink
	max int
	// enabled is the root's sink: values and names do not change what is enabled.
	enabled logr.LogSink
	parent  *cappedSink
	with    func(logr.LogSink) logr.LogSink
	once    sync.Once
}

// sink is the sink with every value and name given to it.
func (s *cappedSink) sink() logr.LogSink {
	if s.parent == nil {
		return s.LogSink
	}
	s.once.Do(func() { s.LogSink = s.with(s.parent.sink()) })
	return s.LogSink
}

func (s *cappedSink) Enabled(level int) bool {
	return level <= s.max && s.enabled.Enabled(level)
}

func (s *cappedSink) Info(level int, msg string, kv ...any) {
	if level <= s.max {
		s.sink().Info(level, msg, kv...)
	}
}

func (s *cappedSink) Error(err error, msg string, kv ...any) {
	s.sink().Error(err, msg, kv...)
}

func (s *cappedSink) WithValues(kv ...any) logr.LogSink {
	return &cappedSink{max: s.max, enabled: s.enabled, parent: s, with: func(l logr.LogSink) logr.LogSink { return l.WithValues(kv...) }}
}

func (s *cappedSink) WithName(name string) logr.LogSink {
	return &cappedSink{max: s.max, enabled: s.enabled, parent: s, with: func(l logr.LogSink) logr.LogSink { return l.WithName(name) }}
}

func (s *cappedSink) Init(info logr.RuntimeInfo) {
	info.CallDepth++
	s.sink().Init(info)
}
