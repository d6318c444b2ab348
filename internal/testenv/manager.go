package testenv

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
)

// RunManager starts mgr in the background. When the test ends it deletes the APITokens of
// namespace ns while the manager still runs, so that their finalizers are handled (and their
// backend tokens deactivated), waits up to 30 s for them to go, then stops the manager and
// waits for it to return.
func RunManager(tb testing.TB, c client.Client, mgr manager.Manager, ns string) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			tb.Errorf("manager: %v", err)
		}
	}()
	tb.Cleanup(func() {
		bg := context.Background()
		_ = c.DeleteAllOf(bg, &tokensv1alpha1.APIToken{}, client.InNamespace(ns))
		err := wait.PollUntilContextTimeout(bg, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var l tokensv1alpha1.APITokenList
			if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
				return false, nil
			}
			return len(l.Items) == 0, nil
		})
		if err != nil {
			tb.Errorf("APITokens of namespace %s still there 30 s after their deletion: %v", ns, err)
		}
		cancel()
		<-done
	})
}

// SyncBuffer collects a process's or a logger's output while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreeAddr is a free 127.0.0.1 address, released for a process the test starts to bind.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is a process a test started with StartProcess.
type Process struct {
	done chan struct{}
	err  error
}

// Exited reports whether the process has exited, and then its Wait error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// StartProcess starts cmd, to be killed with the test binary (Pdeathsig), and stops it when
// the test ends: SIGTERM, then SIGKILL after 15 s, waiting for it to exit either way.
func StartProcess(tb testing.TB, cmd *exec.Cmd) *Process {
	tb.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", cmd.Path, err)
	}
	p := &Process{done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}
