// Command bench measures the operator against the physical floor of its API server: the same
// writes by a plain client, each floor concurrency on a hermetic control plane of its own
// (bin/controlplane); then, on one more, the reference backend (in this process, so its own
// counters give the backend requests) and the manager as a separate process built from
// ./cmd/manager. It writes bench/results-n<N>.json. With -report it
// regenerates the figures in docs/performance.md and bench/plot.svg from the committed
// results files, and with -check it fails when a target is missed. See docs/performance.md.
//
// With -backend zabbix the backend is a real Zabbix 6.0 (hack/zabbix/start.sh in the run's
// directory; `make zabbix` installs it) with spec.provider.zabbix, reached through a proxy
// that counts its JSON-RPC calls by method; it writes bench/results-n<N>-zabbix.json, which
// the report leaves out (its targets are the reference backend's), and by default skips the
// expiry, rotation and unrelated-Secrets phases (they measure the operator, not its backend).
//
//	go run ./bench -n 1000
//	go run ./bench -n 1000 -backend zabbix
//	go run ./bench -report -check
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/statusops/apitoken-operator/api/v1alpha1"
	"github.com/statusops/apitoken-operator/controllers/inventory"
	"github.com/statusops/apitoken-operator/internal/reliability/harness"
	"github.com/statusops/apitoken-operator/internal/testenv"
)

// Results is one bench/results-*.json.
type Results struct {
	Tokens          int     `json:"tokens"`
	ReadySeconds    float64 `json:"ready_seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	// FloorSeconds is the fastest of FloorByConcurrency: the true floor.
	FloorSeconds       float64            `json:"floor_seconds"`
	FloorConcurrency   int                `json:"floor_concurrency"`
	FloorByConcurrency map[string]float64 `json:"floor_seconds_by_concurrency"`
	// FloorTokens is how many objects each floor concurrency wrote; FloorSeconds is scaled
	// to Tokens when it is smaller (-floor-tokens).
	FloorTokens  int     `json:"floor_tokens"`
	RatioToFloor float64 `json:"ratio_to_floor"`
	// FloorShapeDifferences are the fields in which the floor's APIToken and Secret differ
	// from the ones the operator wrote (checkFloorShape); empty when the writes match.
	FloorShapeDifferences []string `json:"floor_shape_differences"`
	// ObjectBytes are the JSON sizes of one stored object of each kind, managedFields
	// included, as a client reads them: the floor's APIToken and Secret (read at the end of
	// the first floor run) and the operator's after Ready. Every write, watch event
	// and response costs the API server in proportion to them.
	ObjectBytes                map[string]int `json:"object_bytes,omitempty"`
	APIWritesPerToken          float64        `json:"api_writes_per_token"`
	APIWritesPerTokenEvents    float64        `json:"api_writes_per_token_including_events"`
	BackendWritesPerToken      float64        `json:"backend_writes_per_token"`
	RestartSeconds             float64        `json:"restart_seconds"`
	RestartBackendWrites       int64          `json:"restart_backend_writes"`
	ExpiryTokens               int            `json:"expiry_tokens"`
	ExpiryLagP50Seconds        float64        `json:"expiry_lag_p50_seconds"`
	ExpiryLagP99Seconds        float64        `json:"expiry_lag_p99_seconds"`
	SyncIntervalSeconds        float64        `json:"sync_interval_seconds"`
	IdleIntervals              int            `json:"idle_intervals"`
	BackendRequestsPerSyncIdle float64        `json:"backend_requests_per_sync_idle"`
	BackendListCallsPerSync    float64        `json:"backend_list_calls_per_sync_idle"`
	RSSMiBPeak                 float64        `json:"rss_mib_peak"`
	HeapMiB                    float64        `json:"heap_mib"`
	HeapLiveMiB                float64        `json:"heap_live_mib_after_ready"`
	HeapLiveMiBRestarted       float64        `json:"heap_live_mib_after_restart,omitempty"`
	UnrelatedSecrets           int            `json:"unrelated_secrets"`
	UnrelatedSecretsRSSGrowth  float64        `json:"unrelated_secrets_rss_growth_mib"`
	UnrelatedSecretsHeapGrowth float64        `json:"unrelated_secrets_heap_growth_mib"`
	BackendLatencyMS           float64        `json:"backend_latency_ms"`
	Concurrency                int            `json:"concurrency"`
	ManagerArgs                []string       `json:"manager_args"`
	ManagerEnv                 []string       `json:"manager_env,omitempty"`
	ManagerBuiltFrom           string         `json:"manager_built_from"`
	APIWritesByKind            map[string]int `json:"api_writes_by_kind"`
	Commit                     string         `json:"commit"`
	CPUs                       int            `json:"cpus"`
	// LoadAverage1m is /proc/loadavg's one-minute figure, sampled through the run: the
	// machine is shared, so this says how much else was running.
	LoadAverageMean float64 `json:"load_average_1m_mean"`
	LoadAverageMax  float64 `json:"load_average_1m_max"`
	Date            string  `json:"date"`
	WallSeconds     float64 `json:"wall_seconds"`
	// CPU seconds by process (kube-apiserver, etcd, manager, and bench, which serves the
	// backend and makes the creates; with zabbix also "zabbix php" and "zabbix postgres") in
	// the fastest floor run and in the Ready phase: what the time to Ready was spent on, on a
	// machine whose cores they all share.
	CPUSecondsFloor map[string]float64 `json:"cpu_seconds_floor"`
	CPUSecondsReady map[string]float64 `json:"cpu_seconds_ready"`
	// RSSMiBStarted is the manager's RSS once it is up with no APIToken: the part of
	// rss_mib_peak that the number of tokens does not explain.
	RSSMiBStarted float64 `json:"rss_mib_started"`
	// ReconcilesPerToken is the apitoken controller's passes in the Ready phase per token:
	// 1 is each token issued in one pass; passes refused by the backend's in-flight cap and
	// wake-ups that found nothing to do count too.
	ReconcilesPerToken float64 `json:"reconciles_per_token"`
	// The peaks of each phase (start, ready, restart, idle, expiry, rotation, unrelated):
	// which phase sets rss_mib_peak.
	RSSMiBPeakByPhase map[string]float64 `json:"rss_mib_peak_by_phase"`
	HeapMiBByPhase    map[string]float64 `json:"heap_mib_by_phase"`
	// Backend is what the manager issued tokens from: empty (or native) for the reference
	// backend served by this process, zabbix for a real Zabbix from hack/zabbix (-backend
	// zabbix), whose version BackendVersion is.
	Backend        string `json:"backend,omitempty"`
	BackendVersion string `json:"backend_version,omitempty"`
	// BackendRequestsPerToken counts every backend request of the Ready phase (issues,
	// checks, inventory listings) per token.
	BackendRequestsPerToken float64 `json:"backend_requests_per_token,omitempty"`
	// BackendRequestsByMethodReady and ...Idle are, with zabbix, the JSON-RPC calls of the
	// Ready phase and of the idle intervals by method, as a counting proxy in front of Zabbix
	// saw them (token.get by what it asked for: by id, by name, by value, by owner, or a
	// listing of every token).
	BackendRequestsByMethodReady map[string]int64 `json:"backend_requests_by_method_ready,omitempty"`
	BackendRequestsByMethodIdle  map[string]int64 `json:"backend_requests_by_method_idle,omitempty"`
	// The rotation phase (spec.rotation), when it ran.
	*RotationFigures
}

// options are the flags of one measuring run.
type options struct {
	n, conc, qps, burst, expiryN, unrelated, floorTokens, idleIntervals, rotationN int
	latency, syncInterval                                                          time.Duration
	floorConcurrencies                                                             []int
	managerArgs, managerEnv, out, backend                                          string
}

func main() {
	var o options
	var floorConc string
	report := flag.Bool("report", false, "only regenerate docs/performance.md's figures and bench/plot.svg from bench/results-n*.json")
	check := flag.Bool("check", false, "with -report: exit 1 when a target is missed")
	flag.IntVar(&o.n, "n", 1000, "APITokens to create")
	flag.DurationVar(&o.latency, "backend-latency", 0, "added latency of every backend request")
	flag.IntVar(&o.conc, "concurrency", 16, "manager --max-concurrent-reconciles, and the bench's own create workers")
	flag.StringVar(&floorConc, "floor-concurrencies", "8,16,32,64", "the floor's worker counts; the fastest is the floor")
	flag.IntVar(&o.floorTokens, "floor-tokens", 0, "objects per floor concurrency (0: N); a smaller sample is scaled to N")
	flag.IntVar(&o.qps, "kube-api-qps", 0, "manager --kube-api-qps (0: the manager's default)")
	flag.IntVar(&o.burst, "kube-api-burst", 0, "manager --kube-api-burst (0: the manager's default)")
	flag.DurationVar(&o.syncInterval, "sync-interval", 10*time.Second, "manager --sync-interval, also the unit of the idle request count")
	flag.IntVar(&o.idleIntervals, "idle-intervals", 6, "sync intervals over which idle backend requests are counted (0 skips)")
	flag.IntVar(&o.expiryN, "expiry-tokens", 200, "tokens expiring within one minute, for the expiry lag (0 skips)")
	flag.IntVar(&o.rotationN, "rotation-tokens", 200, "tokens that rotate once (lifetime 10m, renewal 60 s after issue, grace 5s), and as many with a 720h lifetime for the spread (0 skips)")
	flag.IntVar(&o.unrelated, "unrelated-secrets", 300, "unrelated 1 MiB Secrets for the memory check (0 skips)")
	flag.StringVar(&o.managerArgs, "manager-args", "", "comma-separated extra manager flags")
	flag.StringVar(&o.managerEnv, "manager-env", "", "comma-separated KEY=VALUE added to the manager's environment, e.g. GOMEMLIMIT=80MiB")
	flag.StringVar(&cpuProfileDir, "cpu-profile-dir", "", "write CPU profiles of a window of each floor and of Ready (API server, manager) to this directory")
	flag.DurationVar(&cpuProfileWindow, "cpu-profile-window", 4*time.Second, "with -cpu-profile-dir: each window's length from the phase's start; longer than the phase, it holds the whole phase (the bench waits for it before going on)")
	flag.StringVar(&keepHeapProfile, "keep-heap-profile", "", "copy the live-heap profile taken after Ready to this file")
	flag.StringVar(&o.out, "out", "", "results file (default bench/results-n<N>[-latency<ms>ms][-zabbix][-variant].json)")
	flag.StringVar(&o.backend, "backend", tokensv1alpha1.DriverNative, "native: the reference backend in this process; zabbix: a real Zabbix 6.0 from hack/zabbix (`make zabbix`), with spec.provider.zabbix, whose JSON-RPC calls a proxy counts")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	root := testenv.RepoRoot()
	if *report {
		if err := writeReport(root, *check); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	switch o.backend {
	case tokensv1alpha1.DriverNative:
	case tokensv1alpha1.DriverZabbix:
		if o.latency > 0 {
			fmt.Fprintln(os.Stderr, "bench: -backend-latency is for the reference backend")
			os.Exit(2)
		}
		// The phases that measure the operator rather than its backend are left to the
		// native rows unless asked for: expiry's 200 tokens are issued in the 30 s before the
		// first expires, which Zabbix's one PHP worker cannot do (about 0.4 s an issue).
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]*int{"expiry-tokens": &o.expiryN, "rotation-tokens": &o.rotationN, "unrelated-secrets": &o.unrelated} {
			if !set[name] {
				*v = 0
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "bench: -backend %q: choose native or zabbix\n", o.backend)
		os.Exit(2)
	}
	for _, f := range strings.Split(floorConc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "bench: bad -floor-concurrencies %q\n", floorConc)
			os.Exit(2)
		}
		o.floorConcurrencies = append(o.floorConcurrencies, c)
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", defaultResultsName(o))
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// defaultResultsName names the file after what differs from the shipped setup, so that a
// variant never overwrites the standard row.
func defaultResultsName(o options) string {
	name := fmt.Sprintf("results-n%d", o.n)
	if o.latency > 0 {
		name += fmt.Sprintf("-latency%dms", o.latency.Milliseconds())
	}
	if o.backend == tokensv1alpha1.DriverZabbix {
		name += "-zabbix"
	}
	if o.managerEnv != "" || o.managerArgs != "" || o.qps > 0 || o.burst > 0 || o.conc != 16 {
		name += "-variant"
	}
	return name + ".json"
}

func logf(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(o options) error {
	ctx := context.Background()
	began := time.Now()
	dir, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	// BENCH_KEEP=1 keeps the run's directory (the manager's log, the control plane's files).
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		logf("keeping %s", dir)
	}
	res := &Results{Tokens: o.n, BackendLatencyMS: float64(o.latency.Milliseconds()), Concurrency: o.conc,
		CPUs: runtime.NumCPU(), Date: time.Now().UTC().Format(time.RFC3339), Commit: gitCommit(),
		SyncIntervalSeconds: o.syncInterval.Seconds()}
	load := startLoadSampler()

	bin, pkg, err := harness.BuildManager(dir)
	if err != nil {
		return err
	}
	res.ManagerBuiltFrom = pkg
	logf("manager built from %s at %s", pkg, res.Commit)

	// 1. The floor: the same writes by a plain client, no controller, at each concurrency,
	// each on a control plane of its own.
	if err := measureFloor(ctx, dir, o, res); err != nil {
		return err
	}

	cp, err := harness.StartControlPlane(dir)
	if err != nil {
		return err
	}
	defer func() { _ = cp.Stop() }()
	kube := cp.Client
	logf("the operator's control plane up")

	for _, ns := range []string{"bench", "bench-expiry", "bench-rotation"} {
		if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}

	// 2. The backend and the manager.
	be, spec, err := startBackend(ctx, dir, o, res)
	if err != nil {
		return err
	}
	defer func() { _ = be.Stop() }()
	if err := kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "backend-admin", Namespace: "bench"},
		StringData: map[string]string{"token": spec.adminToken}}); err != nil {
		return err
	}
	if err := kube.Create(ctx, &tokensv1alpha1.ClusterStatusBackend{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: tokensv1alpha1.ClusterStatusBackendSpec{StatusBackendSpec: tokensv1alpha1.StatusBackendSpec{URL: spec.url, Provider: spec.provider,
			CredentialsSecretRef: tokensv1alpha1.CredentialsSecretReference{Name: "backend-admin", Namespace: "bench", Key: "token"}}}}); err != nil {
		return err
	}
	pprofPort, err := harness.FreePort()
	if err != nil {
		return err
	}
	pprofAddr := "127.0.0.1:" + strconv.Itoa(pprofPort)
	// --metrics-secure=false: the bench scrapes the manager's metrics plainly, on loopback.
	args := []string{"--watch-namespaces=bench,bench-expiry,bench-rotation,bench-rotation-spread", "--log-level=info", "--metrics-secure=false",
		"--max-concurrent-reconciles=" + strconv.Itoa(o.conc), "--sync-interval=" + o.syncInterval.String()}
	if o.qps > 0 {
		args = append(args, "--kube-api-qps="+strconv.Itoa(o.qps))
	}
	if o.burst > 0 {
		args = append(args, "--kube-api-burst="+strconv.Itoa(o.burst))
	}
	if o.managerArgs != "" {
		args = append(args, strings.Split(o.managerArgs, ",")...)
	}
	res.ManagerArgs = args
	// The pprof address is a free port of this run, not a setting worth recording.
	args = append(args, "--pprof-bind-address="+pprofAddr)
	mgr, err := harness.NewManager("manager", bin, cp.Kubeconfig, filepath.Join(dir, "manager.log"), args...)
	if err != nil {
		return err
	}
	if o.managerEnv != "" {
		mgr.Env = strings.Split(o.managerEnv, ",")
		res.ManagerEnv = mgr.Env
	}
	defer mgr.Stop()
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	mem := startMemorySampler(mgr, res)
	if err := waitBackendReady(ctx, kube); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	res.RSSMiBStarted = procStatus(mgr.Pid(), "VmRSS")
	logf("manager and backend up; manager RSS %.1f MiB", res.RSSMiBStarted)

	// 3. N APITokens until all Ready.
	readsBefore, _ := apiReads(ctx, cp.Config)
	apiBefore, err := apiWrites(ctx, cp.Config)
	if err != nil {
		return err
	}
	beBefore := be.Stats()
	methodsBefore := byMethod(be)
	passesBefore, _ := reconcileProgress(mgr)
	breakdownBefore := passBreakdown(mgr)
	cpuBefore := cpuSeconds()
	mem.enter("ready")
	waitProfiles := []func(){profileWindow("ready-apiserver.pb.gz", apiserverProfile(cp.Config)),
		profileWindow("ready-manager.pb.gz", managerProfile(pprofAddr))}
	ready, err := createAndWait(ctx, cp.Config, kube, "bench", o.n, o.conc, nil)
	if err != nil {
		return err
	}
	readyAt := time.Now()
	res.CPUSecondsReady = cpuSince(cpuBefore)
	for _, w := range waitProfiles {
		w()
	}
	// Every token's Issued Event, and no pass left: then the trailing writes have landed.
	apiAfter, err := waitSettled(ctx, cp.Config, mgr, apiBefore, o.n)
	if err != nil {
		return err
	}
	beAfter := be.Stats()
	res.BackendRequestsPerToken = float64(beAfter.Requests-beBefore.Requests) / float64(o.n)
	if m := byMethod(be); m != nil {
		res.BackendRequestsByMethodReady = subtractCounts(m, methodsBefore)
		logf("backend requests while reaching Ready, by method: %v (%.2f per token)", res.BackendRequestsByMethodReady, res.BackendRequestsPerToken)
	}
	if err := recordObjectBytes(ctx, kube, res, "bench", tokenObj("bench", 0).Name, ""); err != nil {
		logf("object sizes not read: %v", err)
	}
	logf("stored object sizes in bytes, managedFields included: %v", res.ObjectBytes)
	if diffs, err := checkFloorShape(ctx, kube, "bench", tokenObj("bench", 0).Name); err != nil {
		logf("floor shape not checked: %v", err)
		res.FloorShapeDifferences = []string{"not checked: " + err.Error()}
	} else {
		res.FloorShapeDifferences = diffs
		logf("the floor's objects against the operator's: %d differences %v", len(diffs), diffs)
	}
	if readsAfter, err := apiReads(ctx, cp.Config); err == nil {
		logf("API reads while reaching Ready (every client, the bench's included): %v", diff(readsAfter, readsBefore))
	}
	passesAfter, _ := reconcileProgress(mgr)
	if after := passBreakdown(mgr); after != nil {
		per := map[string]string{}
		for k, v := range after {
			per[k] = fmt.Sprintf("%.2f", (v-breakdownBefore[k])/float64(o.n))
		}
		logf("passes per token by result, and slot waits per token: %v", per)
	}
	res.ReconcilesPerToken = (passesAfter - passesBefore) / float64(o.n)
	res.ReadySeconds = ready.Seconds()
	res.TokensPerSecond = float64(o.n) / ready.Seconds()
	res.RatioToFloor = res.ReadySeconds / res.FloorSeconds
	res.APIWritesByKind = diff(apiAfter, apiBefore)
	var core, all int
	for k, v := range res.APIWritesByKind {
		if strings.HasSuffix(k, " apitokens") && strings.HasPrefix(k, "POST ") {
			continue // the bench's own creates
		}
		all += v
		if !strings.Contains(k, "events") {
			core += v
		}
	}
	res.APIWritesPerToken = float64(core) / float64(o.n)
	res.APIWritesPerTokenEvents = float64(all) / float64(o.n)
	res.BackendWritesPerToken = float64(beAfter.WriteRequests-beBefore.WriteRequests) / float64(o.n)
	logf("ready: %d in %.2fs (%.0f/s, %.2fx floor); API writes/token %.2f (%.2f with events) %v; backend writes/token %.2f; passes/token %.2f; CPU seconds %v (floor %v)",
		o.n, res.ReadySeconds, res.TokensPerSecond, res.RatioToFloor, res.APIWritesPerToken, res.APIWritesPerTokenEvents, res.APIWritesByKind, res.BackendWritesPerToken,
		res.ReconcilesPerToken, res.CPUSecondsReady, res.CPUSecondsFloor)
	// The profile's summary goes next to the results file: bench/n<N>-heap-top.txt.
	topFile := func(suffix string) string {
		return filepath.Join(filepath.Dir(o.out), strings.TrimSuffix(strings.TrimPrefix(filepath.Base(o.out), "results-"), ".json")+"-heap-top"+suffix+".txt")
	}
	live, err := liveHeap(pprofAddr, topFile(""), keepHeapProfile)
	if err != nil {
		logf("live heap not measured: %v", err)
	}
	res.HeapLiveMiB = live
	logf("live heap after a forced GC: %.1f MiB", live)

	// 4. Restart: until every token has been reconciled again, and the backend writes it made.
	mem.sample()
	mgr.Stop()
	beBefore = be.Stats()
	restartBegin := time.Now()
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	mem.enter("restart")
	if err := harness.WaitFor(ctx, 10*time.Minute, "every token re-verified", func() (bool, string, error) {
		total, depth := reconcileProgress(mgr)
		return total >= float64(o.n) && depth == 0, fmt.Sprintf("%v reconciled, queue %v", total, depth), nil
	}); err != nil {
		return err
	}
	res.RestartSeconds = time.Since(restartBegin).Seconds()
	// No pass queued or running: no backend write can still come.
	if _, err := waitSettled(ctx, cp.Config, mgr, nil, 0); err != nil {
		return err
	}
	res.RestartBackendWrites = be.Stats().WriteRequests - beBefore.WriteRequests
	logf("restart: every token re-verified %.2fs after the process started; %d backend writes", res.RestartSeconds, res.RestartBackendWrites)

	// 5. Idle: nothing changes; what does a sync interval cost the backend? The restarted
	// manager's first sync (a full list) is let pass first, and so are the walks whose
	// overlap still reaches back to the last issuance: "idle" is nothing changed since.
	mem.enter("idle")
	if o.idleIntervals > 0 {
		idleFrom := restartBegin.Add(2 * o.syncInterval)
		if t := readyAt.Add(inventory.DefaultInventoryOverlap + 2*o.syncInterval); t.After(idleFrom) {
			idleFrom = t
		}
		time.Sleep(time.Until(idleFrom))
		b0, m0 := be.Stats(), byMethod(be)
		time.Sleep(time.Duration(o.idleIntervals) * o.syncInterval)
		b1 := be.Stats()
		if m1 := byMethod(be); m1 != nil {
			res.BackendRequestsByMethodIdle = subtractCounts(m1, m0)
			logf("idle backend requests by method: %v", res.BackendRequestsByMethodIdle)
		}
		res.IdleIntervals = o.idleIntervals
		res.BackendRequestsPerSyncIdle = float64(b1.Requests-b0.Requests) / float64(o.idleIntervals)
		res.BackendListCallsPerSync = float64(b1.ListCalls-b0.ListCalls) / float64(o.idleIntervals)
		logf("idle: %d backend requests (%d list calls) over %d sync intervals of %s",
			b1.Requests-b0.Requests, b1.ListCalls-b0.ListCalls, o.idleIntervals, o.syncInterval)
	}

	// The restarted process holds the same tokens: its live heap, next to the first one's,
	// says whether the restart's burst left anything behind.
	keepRestarted := ""
	if keepHeapProfile != "" {
		keepRestarted = strings.TrimSuffix(keepHeapProfile, ".pb.gz") + "-restarted.pb.gz"
	}
	if live, err := liveHeap(pprofAddr, topFile("-restarted"), keepRestarted); err != nil {
		logf("live heap after the restart not measured: %v", err)
	} else {
		res.HeapLiveMiBRestarted = live
		logf("live heap of the restarted process after a forced GC: %.1f MiB", live)
	}

	// 6. Expiry lag.
	mem.enter("expiry")
	if o.expiryN > 0 {
		p50, p99, err := expiryLag(ctx, cp.Config, kube, o.expiryN, o.conc)
		if err != nil {
			return err
		}
		res.ExpiryTokens, res.ExpiryLagP50Seconds, res.ExpiryLagP99Seconds = o.expiryN, p50, p99
		logf("expiry lag of %d tokens: p50 %.3fs, p99 %.3fs", o.expiryN, p50, p99)
	}

	// 7. Rotation without downtime.
	mem.enter("rotation")
	if o.rotationN > 0 {
		rf, err := measureRotation(ctx, cp.Config, kube, be, o.rotationN, o.conc)
		if err != nil {
			return err
		}
		res.RotationFigures = rf
	}

	// 8. Unrelated Secrets.
	mem.enter("unrelated")
	if o.unrelated > 0 {
		rss0, heap0 := settledMemory(mgr, pprofAddr)
		if err := createUnrelated(ctx, kube, o.unrelated, o.conc); err != nil {
			return err
		}
		time.Sleep(10 * time.Second)
		rss1, heap1 := settledMemory(mgr, pprofAddr)
		res.UnrelatedSecrets = o.unrelated
		res.UnrelatedSecretsRSSGrowth = rss1 - rss0
		res.UnrelatedSecretsHeapGrowth = heap1 - heap0
		logf("%d unrelated 1 MiB Secrets: RSS %.1f -> %.1f MiB, heap %.1f -> %.1f MiB", o.unrelated, rss0, rss1, heap0, heap1)
	}
	mem.stop()
	logf("RSS peak by phase %v MiB; heap in use by phase %v MiB", res.RSSMiBPeakByPhase, res.HeapMiBByPhase)
	res.LoadAverageMean, res.LoadAverageMax = load.stop()
	res.WallSeconds = time.Since(began).Seconds()

	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	printTable(res)
	logf("wrote %s", o.out)
	return nil
}

// backendSpec is what the ClusterStatusBackend "default" says of the backend under test.
type backendSpec struct {
	url, adminToken string
	provider        *tokensv1alpha1.BackendProvider
}

// startBackend starts the backend -backend names: the reference backend in this process, or a
// real Zabbix (hack/zabbix/start.sh) behind a counting proxy.
func startBackend(ctx context.Context, dir string, o options, res *Results) (backendUnderTest, backendSpec, error) {
	if o.backend == tokensv1alpha1.DriverZabbix {
		z, err := startZabbix(ctx)
		if err != nil {
			return nil, backendSpec{}, err
		}
		res.Backend, res.BackendVersion = tokensv1alpha1.DriverZabbix, z.Version
		extraCPU = z.cpuSeconds
		logf("zabbix %s up; the operator reaches it through the counting proxy %s", z.Version, z.URL)
		return z, backendSpec{url: z.URL, adminToken: z.AdminToken, provider: z.provider()}, nil
	}
	be, err := harness.StartBackend(dir, o.latency)
	if err != nil {
		return nil, backendSpec{}, err
	}
	return be, backendSpec{url: be.URL, adminToken: be.AdminToken}, nil
}

// byMethod is the backend's request counts by method, when it has them (zabbix).
func byMethod(be backendUnderTest) map[string]int64 {
	if z, ok := be.(*zabbixBackend); ok {
		return z.ByMethod()
	}
	return nil
}

// gitCommit is the commit the manager was built from, "+dirty" when Go files differ from it.
func gitCommit() string {
	root := testenv.RepoRoot()
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "*.go", "go.mod", "go.sum").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += "+dirty"
	}
	return commit
}

func printTable(r *Results) {
	rows := [][2]string{
		{"tokens", strconv.Itoa(r.Tokens)},
		{"backend_latency_ms", fmt.Sprintf("%.0f", r.BackendLatencyMS)},
		{"ready_seconds", fmt.Sprintf("%.2f", r.ReadySeconds)},
		{"tokens_per_second", fmt.Sprintf("%.1f", r.TokensPerSecond)},
		{"floor_seconds", fmt.Sprintf("%.2f (concurrency %d; %v)", r.FloorSeconds, r.FloorConcurrency, r.FloorByConcurrency)},
		{"ratio_to_floor", fmt.Sprintf("%.2f", r.RatioToFloor)},
		{"api_writes_per_token", fmt.Sprintf("%.2f (%.2f with events)", r.APIWritesPerToken, r.APIWritesPerTokenEvents)},
		{"backend_writes_per_token", fmt.Sprintf("%.2f", r.BackendWritesPerToken)},
		{"backend_requests_per_token", fmt.Sprintf("%.2f", r.BackendRequestsPerToken)},
		{"restart_seconds", fmt.Sprintf("%.2f", r.RestartSeconds)},
		{"restart_backend_writes", strconv.FormatInt(r.RestartBackendWrites, 10)},
		{"backend_requests_per_sync_idle", fmt.Sprintf("%.2f (%.2f list calls)", r.BackendRequestsPerSyncIdle, r.BackendListCallsPerSync)},
		{"expiry_lag_p50_seconds", fmt.Sprintf("%.3f", r.ExpiryLagP50Seconds)},
		{"expiry_lag_p99_seconds", fmt.Sprintf("%.3f", r.ExpiryLagP99Seconds)},
		{"rss_mib_peak", fmt.Sprintf("%.1f", r.RSSMiBPeak)},
		{"heap_mib", fmt.Sprintf("%.1f", r.HeapMiB)},
		{"heap_live_mib_after_ready", fmt.Sprintf("%.1f", r.HeapLiveMiB)},
		{"heap_live_mib_after_restart", fmt.Sprintf("%.1f", r.HeapLiveMiBRestarted)},
		{"unrelated_secrets_rss_growth_mib", fmt.Sprintf("%.1f", r.UnrelatedSecretsRSSGrowth)},
		{"load_average_1m", fmt.Sprintf("mean %.2f, max %.2f on %d CPUs", r.LoadAverageMean, r.LoadAverageMax, r.CPUs)},
	}
	if r.Backend != "" {
		rows = append([][2]string{{"backend", r.Backend + " " + r.BackendVersion}}, rows...)
	}
	fmt.Println()
	fmt.Printf("| %-34s | %-22s |\n|%s|%s|\n", "metric", "value", strings.Repeat("-", 36), strings.Repeat("-", 24))
	for _, row := range rows {
		fmt.Printf("| %-34s | %-22s |\n", row[0], row[1])
	}
	fmt.Println()
}
