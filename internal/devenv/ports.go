package devenv

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Ports are the 127.0.0.1 ports the environment listens on. Zero means: the port this
// directory used last time (recorded in ports.json), or a free one on a first run. Keeping
// the ports of a directory stable keeps the backend URL, and so the Secrets, unchanged
// across restarts.
type Ports struct {
	Etcd              int `json:"etcd"`
	EtcdPeer          int `json:"etcdPeer"`
	APIServer         int `json:"apiServer"`
	ControllerManager int `json:"controllerManager"`
	Scheduler         int `json:"scheduler"`
	Backend           int `json:"backend"`
	ManagerMetrics    int `json:"managerMetrics"`
	ManagerHealth     int `json:"managerHealth"`
}

// portField names one port for messages and flags.
type portField struct {
	what string // what listens there
	flag string // the dev command's flag that sets it
	ptr  func(*Ports) *int
}

var portFields = []portField{
	{"etcd (clients)", "etcd-port", func(p *Ports) *int { return &p.Etcd }},
	{"etcd (peers)", "etcd-peer-port", func(p *Ports) *int { return &p.EtcdPeer }},
	{"kube-apiserver", "apiserver-port", func(p *Ports) *int { return &p.APIServer }},
	{"kube-controller-manager", "controller-manager-port", func(p *Ports) *int { return &p.ControllerManager }},
	{"kube-scheduler", "scheduler-port", func(p *Ports) *int { return &p.Scheduler }},
	{"status-backend", "backend-port", func(p *Ports) *int { return &p.Backend }},
	{"manager metrics", "metrics-port", func(p *Ports) *int { return &p.ManagerMetrics }},
	{"manager health probes", "health-port", func(p *Ports) *int { return &p.ManagerHealth }},
}

// BindFlags registers one flag per port on fs. The flag names are the ones a port-conflict
// message tells the user to change.
func (p *Ports) BindFlags(fs *flag.FlagSet) {
	for _, f := range portFields {
		fs.IntVar(f.ptr(p), f.flag, 0, fmt.Sprintf("127.0.0.1 port for %s (0: the port of the last run in --dir, else a free one)", f.what))
	}
}

const portsFile = "ports.json"

// resolvePorts decides every port (requested, else recorded in dir, else free), checks that
// each is free, and records the result in dir. picked names (by flag) the ports it chose
// itself: only those may be picked anew when another process takes one first.
func resolvePorts(dir string, requested Ports) (result Ports, picked map[string]bool, err error) {
	var recorded Ports
	recordedPath := filepath.Join(dir, portsFile)
	if data, err := os.ReadFile(recordedPath); err == nil {
		if err := json.Unmarshal(data, &recorded); err != nil {
			return Ports{}, nil, fmt.Errorf("reading %s: %w (delete it to pick new ports)", recordedPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return Ports{}, nil, err
	}

	picked = map[string]bool{}
	var (
		holders   []net.Listener // keep picked ports open until all are picked, so none repeats
		conflicts []error
		owners    = map[int]string{}
	)
	defer func() {
		for _, l := range holders {
			_ = l.Close()
		}
	}()
	for _, f := range portFields {
		port, source := *f.ptr(&requested), "set by --"+f.flag
		if port == 0 {
			port, source = *f.ptr(&recorded), "recorded in "+recordedPath+" by an earlier run"
		}
		if port == 0 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return Ports{}, nil, fmt.Errorf("finding a free port for %s: %w", f.what, err)
			}
			holders = append(holders, l)
			*f.ptr(&result) = l.Addr().(*net.TCPAddr).Port
			owners[*f.ptr(&result)] = f.what
			picked[f.flag] = true
			continue
		}
		if other, dup := owners[port]; dup {
			conflicts = append(conflicts, fmt.Errorf("port %d is given to both %s and %s: pass a different --%s", port, other, f.what, f.flag))
			continue
		}
		owners[port] = f.what
		*f.ptr(&result) = port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			conflicts = append(conflicts, fmt.Errorf("port %d for %s (%s) is in use on 127.0.0.1: stop what listens there (another `make dev` on the same directory?) or choose another port with --%s=PORT", port, f.what, source, f.flag))
			continue
		}
		holders = append(holders, l)
	}
	if len(conflicts) > 0 {
		return Ports{}, nil, errors.Join(conflicts...)
	}
	if err := recordPorts(dir, result); err != nil {
		return Ports{}, nil, err
	}
	return result, picked, nil
}

// recordPorts writes the ports to dir/ports.json, for the next run on dir.
func recordPorts(dir string, p Ports) error {
	data, _ := json.MarshalIndent(p, "", "  ")
	return os.WriteFile(filepath.Join(dir, portsFile), append(data, '\n'), 0o644)
}

// retryOnPortTaken returns start, run once more when it failed because another process bound
// one of its ports first. The ports were free when resolvePorts picked them, but are only
// bound when the component starts, and tests run side by side: the ports of flags that
// resolvePorts picked itself (never one set by a flag or recorded by an earlier run) are
// picked anew and recorded, once.
func (e *Env) retryOnPortTaken(start func(context.Context) error, flags ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		err := start(ctx)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		repicked := false
		for _, f := range portFields {
			if !slices.Contains(flags, f.flag) || !e.pickedPorts[f.flag] {
				continue
			}
			l, lerr := net.Listen("tcp", "127.0.0.1:0")
			if lerr != nil {
				return err
			}
			*f.ptr(&e.Ports) = l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
			repicked = true
		}
		if !repicked {
			return err
		}
		if rerr := recordPorts(e.Dir, e.Ports); rerr != nil {
			return rerr
		}
		return start(ctx)
	}
}
