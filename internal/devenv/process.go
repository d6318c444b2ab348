package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL. The manager and the
// API server shut down cleanly well within it.
const stopGrace = 10 * time.Second

// process is one binary the environment started. It runs in its own process group, so a
// Ctrl-C in the terminal reaches only the dev command, which then stops the processes in
// order (manager first, etcd last) instead of all of them at once.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
}

// startProcess starts binary with args, writing its stdout and stderr to logPath and, when
// extra is not nil, to extra as well.
func startProcess(name, binary string, args []string, logPath string, extra io.Writer) (*process, error) {
	return startProcessWithEnv(name, binary, args, nil, logPath, extra)
}

// startProcessWithEnv is startProcess with env (KEY=value) added to this process's
// environment; later entries win.
func startProcessWithEnv(name, binary string, args, env []string, logPath string, extra io.Writer) (*process, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s: binary %s: %w", name, binary, err)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: opening log file: %w", name, err)
	}
	fmt.Fprintf(logFile, "\n===== %s %s %s\n", time.Now().Format(time.RFC3339), binary, strings.Join(args, " "))

	var out io.Writer = logFile
	if extra != nil {
		out = io.MultiWriter(logFile, extra)
	}
	cmd := exec.Command(binary, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Stdin = nil
	// Own process group: the terminal's SIGINT does not reach it, and stop can signal the
	// whole group. Pdeathsig is the safety net when the dev command itself is killed
	// (SIGKILL, a test binary timing out): the kernel then kills the children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("%s: starting %s: %w", name, binary, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exitError reports why the process has already exited, or nil while it runs.
func (p *process) exitError() error {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return fmt.Errorf("%s exited unexpectedly (status 0)%s", p.name, p.logTail())
		}
		return fmt.Errorf("%s exited unexpectedly (%v)%s", p.name, p.waitErr, p.logTail())
	default:
		return nil
	}
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string { return logTail(p.logPath) }

// logTail is the end of a log file, for error messages; "" when it cannot be read.
func logTail(path string) string {
	tail := tailFile(path, 12)
	if tail == "" {
		return ""
	}
	return fmt.Sprintf("; last lines of %s:\n%s", path, tail)
}

// stop sends SIGTERM to the process group, waits up to grace, then sends SIGKILL.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", p.name, grace)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.name, pgid)
	}
}

// waitUntil polls check every interval until it returns nil. It gives up when ctx ends,
// after timeout, or as soon as p (when not nil) exits, and then says why.
func waitUntil(ctx context.Context, p *process, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(callCtx)
		callCancel()
		if err == nil {
			return nil
		}
		// A check cut short by the deadline (or started after it: select picks the tick or
		// ctx.Done at random when both are ready) fails with a context error that says
		// nothing about what was awaited; the error of the check before it does.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		if p != nil {
			if err := p.exitError(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				msg := fmt.Sprintf("timed out after %s waiting for %s: %v", timeout, what, last)
				if p != nil {
					msg += p.logTail()
				}
				return errors.New(msg)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// tailFile returns the last n lines of a file, or "" when it cannot be read.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	data = bytes.TrimRight(data, "\n")
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + string(bytes.Join(lines, []byte("\n  ")))
}

// lockedWriter serialises writes from several goroutines (the manager's log copier and the
// dev command's own messages) so their lines do not interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
