package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-mta/postern/bench/internal/sinkproc"
	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/transport"
)

// childEnv marks the re-executed process that runs the engine (the parent
// keeps the sinks), so that /proc/self and runtime.NumGoroutine describe
// the engine and nothing else.
const childEnv = "POSTERN_SOAK_CHILD"

// workerResult is what the engine process prints (JSON) for its parent.
type workerResult struct {
	Baseline   point   `json:"baseline"` // before the engine was created
	Points     []point `json:"points"`   // every -sample messages
	End        point   `json:"end"`      // after the last result, before Close
	Closed     point   `json:"closed"`   // after Close and runtime.GC
	Settled    *point  `json:"settled,omitempty"`
	ElapsedNS  int64   `json:"elapsed_ns"` // first Deliver to last result
	Delivered  int64   `json:"delivered"`
	Failed     int64   `json:"failed"`
	FirstError string  `json:"first_error,omitempty"`
	Procs      int     `json:"procs"` // the engine process's GOMAXPROCS (1 with -pin)
	LogLines   int64   `json:"log_lines"`
	LogBytes   int64   `json:"log_bytes"`
	// From the engine's own metrics, read at the end (-metrics only).
	MetricDelivered float64 `json:"metric_delivered"`
	MetricConnsOpen float64 `json:"metric_conns_opened"`
}

// countWriter discards what it is given and counts it: the JSON handler
// still formats every record (the cost -log measures) but no disk is
// involved. slog's handlers write one record per Write.
type countWriter struct{ lines, bytes atomic.Int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.lines.Add(1)
	w.bytes.Add(int64(len(p)))
	return len(p), nil
}

var _ io.Writer = (*countWriter)(nil)

// dropHandler takes every record at Info and above (the JSON handler's
// default level) and formats none of it, counting it as a line of no
// bytes: with it, -log measures what the engine spends building and
// handing over its log lines, apart from what a handler spends
// formatting them.
type dropHandler struct{ w *countWriter }

func (h dropHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h dropHandler) Handle(context.Context, slog.Record) error {
	h.w.lines.Add(1)
	return nil
}
func (h dropHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h dropHandler) WithGroup(string) slog.Handler      { return h }

// soakPolicy is a relay policy with one route per sink; recipients of
// domain dK.dest.test go to sink K. STARTTLS is off: smtp-sink has none.
func soakPolicy(sinks []netip.AddrPort, mpc int) string {
	var b strings.Builder
	b.WriteString("version: 1\nhostname: bench.sender.test\nrouting:\n  route:\n")
	for i := range sinks[:len(sinks)-1] {
		fmt.Fprintf(&b, "    - if: rcpt_domain == %q\n      then: sink%d\n", sinkDomain(i), i+1)
	}
	fmt.Fprintf(&b, "    - else: sink%d\n  routes:\n", len(sinks))
	for i, s := range sinks {
		fmt.Fprintf(&b, "    sink%d:\n      type: relay\n      address: %s\n      port: %d\n", i+1, s.Addr(), s.Port())
	}
	fmt.Fprintf(&b, "limits:\n  messages-per-connection: %d\ntls:\n  starttls: disable\n", mpc)
	b.WriteString("dns:\n  resolver: static\n  zone-file: zone.txt\n")
	return b.String()
}

// sinkDomain is the recipient domain routed to sink i (from 0).
func sinkDomain(i int) string { return fmt.Sprintf("d%d.dest.test", i+1) }

const soakZone = "$TTL 300\n$ORIGIN dest.test.\n@ IN SOA ns1 hostmaster 1 3600 600 604800 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n"

// engineWorker is the engine process: it delivers cfg.n messages and
// prints a workerResult on stdout, progress on stderr.
func engineWorker(cfg config) int {
	var res any
	var err error
	if cfg.ab {
		res, err = abWorker(cfg)
	} else {
		res, err = soak(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak worker:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "soak worker:", err)
		return 1
	}
	return 0
}

// run is the state of one soak in the engine process.
type run struct {
	cfg     config
	e       *engine.Engine
	reg     *prometheus.Registry // nil without -metrics
	logw    *countWriter         // where -log's records go
	start   time.Time
	done    atomic.Int64
	mu      sync.Mutex
	points  []point
	probeEr error
}

// soak is the engine process's whole run: baseline, engine, deliveries,
// Close, and the samples along the way.
func soak(cfg config) (*workerResult, error) {
	sinks, policy, cleanup, err := setUp(cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	res := &workerResult{Procs: runtime.GOMAXPROCS(0)}
	if res.Baseline, err = probe(); err != nil {
		return nil, err
	}
	res.Baseline.Label = "baseline"
	r := &run{cfg: cfg, logw: &countWriter{}}
	var opts engine.Options
	if opts, r.reg, err = observed(cfg, r.logw); err != nil {
		return nil, err
	}
	if r.e, err = engine.LoadFile(policy, opts); err != nil {
		return nil, fmt.Errorf("load the soak policy: %w", err)
	}
	stopProfile, err := startProfile(cfg.cpuprofile)
	if err != nil {
		return nil, err
	}
	r.deliverAll(res, len(sinks))
	stopProfile()
	return res, r.wrapUp(res)
}

// setUp reads the sinks' addresses and writes the soak's policy for them
// into a temporary directory, which cleanup removes.
func setUp(cfg config) (sinks []netip.AddrPort, policy string, cleanup func(), err error) {
	if sinks, err = parseAddrs(cfg.addrs); err != nil {
		return nil, "", nil, err
	}
	dir, err := os.MkdirTemp("", "postern-soak-")
	if err != nil {
		return nil, "", nil, err
	}
	if policy, err = writePolicy(dir, sinks, cfg.mpc); err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return sinks, policy, func() { os.RemoveAll(dir) }, nil
}

// observed is the engine options of -metrics (on a fresh registry, also
// returned) and -log (records counted by logw).
func observed(cfg config, logw *countWriter) (engine.Options, *prometheus.Registry, error) {
	var opts engine.Options
	var reg *prometheus.Registry
	if cfg.metrics {
		reg = prometheus.NewRegistry()
		var err error
		if opts.Metrics, err = metrics.New(reg, metrics.Options{}); err != nil {
			return opts, nil, fmt.Errorf("metrics.New: %w", err)
		}
	}
	if cfg.log {
		var h slog.Handler = slog.NewJSONHandler(logw, nil)
		if cfg.logHandler == "drop" {
			h = dropHandler{logw}
		}
		opts.Logger = slog.New(h)
	}
	return opts, reg, nil
}

// parseAddrs reads -addrs, the sinks' addresses.
func parseAddrs(list string) ([]netip.AddrPort, error) {
	var sinks []netip.AddrPort
	for a := range strings.SplitSeq(list, ",") {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return nil, fmt.Errorf("-addrs: %w", err)
		}
		sinks = append(sinks, ap)
	}
	return sinks, nil
}

// writePolicy writes the soak's policy and zone file into dir and returns
// the policy's path.
func writePolicy(dir string, sinks []netip.AddrPort, mpc int) (string, error) {
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(soakPolicy(sinks, mpc)), 0o644); err != nil {
		return "", err
	}
	return policy, os.WriteFile(filepath.Join(dir, "zone.txt"), []byte(soakZone), 0o644)
}

// wrapUp records the samples after the deliveries: at the end, after
// Close (and a GC), and, when goroutines or fds are still above the
// baseline, once they settle.
func (r *run) wrapUp(res *workerResult) error {
	if r.probeEr != nil {
		return r.probeEr
	}
	r.points = slices.DeleteFunc(r.points, func(p point) bool { return p.Done >= int64(r.cfg.n) })
	slices.SortFunc(r.points, func(a, b point) int { return cmp.Compare(a.Done, b.Done) })
	res.Points = r.points
	var err error
	if res.End, err = r.sample("end"); err != nil {
		return err
	}
	if err := r.e.Close(); err != nil {
		return fmt.Errorf("engine.Close: %w", err)
	}
	if r.reg != nil {
		res.MetricDelivered, res.MetricConnsOpen = readEngineMetrics(r.reg)
	}
	res.LogLines, res.LogBytes = r.logw.lines.Load(), r.logw.bytes.Load()
	// Free what the run left so that the figures after Close show what
	// is still held, not garbage the collector has not reached yet.
	runtime.GC()
	if res.Closed, err = r.sample("closed"); err != nil {
		return err
	}
	if res.Closed.Goroutines > res.Baseline.Goroutines || res.Closed.FDs > res.Baseline.FDs {
		res.Settled, err = r.settle(res.Baseline)
	}
	return err
}

// startProfile starts a CPU profile into file, when named, and returns
// what stops it.
func startProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// deliverAll delivers cfg.n messages from cfg.parallel goroutines, one
// recipient each, spread over the sinks' domains in turn.
func (r *run) deliverAll(res *workerResult, sinks int) {
	body := sinkproc.Message(r.cfg.size, "postern soak benchmark")
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.timeout)
	defer cancel()
	var (
		next, failed atomic.Int64
		firstErr     sync.Once
		wg           sync.WaitGroup
	)
	r.start = time.Now()
	for range r.cfg.parallel {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(r.cfg.n); i = next.Add(1) {
				if f := deliverNumbered(ctx, r.e, i, sinks, body); f != "" {
					failed.Add(1)
					firstErr.Do(func() { res.FirstError = f })
				}
				if d := r.done.Add(1); d%int64(r.cfg.sample) == 0 && d < int64(r.cfg.n) {
					r.sampleInline()
				}
			}
		})
	}
	wg.Wait()
	res.ElapsedNS = int64(time.Since(r.start))
	res.Failed = failed.Load()
	res.Delivered = int64(r.cfg.n) - res.Failed
}

// deliverNumbered delivers soak message number k, to one recipient at
// the sink its number picks, through e; it returns what went wrong, ""
// when the recipient was delivered.
func deliverNumbered(ctx context.Context, e *engine.Engine, k int64, sinks int, body string) (failure string) {
	msg := engine.Message{ID: fmt.Sprintf("SOAK%08X", k), From: "bench@sender.test",
		To: []string{fmt.Sprintf("r%d@%s", k, sinkDomain(int(k)%sinks))}, Size: len(body)}
	out, err := e.Deliver(ctx, msg, strings.NewReader(body))
	if err != nil || len(out) != 1 || out[0].Status != transport.StatusDelivered {
		return describe(out, err)
	}
	return ""
}

// describe is the first failure, for the report.
func describe(out []engine.Result, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case len(out) != 1:
		return fmt.Sprintf("%d results for one recipient", len(out))
	}
	return fmt.Sprintf("%s %d %s", out[0].Status, out[0].Code, out[0].Text)
}

// sampleInline takes a sample on the delivering goroutine that finished
// a multiple of -sample messages; the other goroutines carry on.
func (r *run) sampleInline() {
	p, err := r.sample("")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.probeEr = err
		return
	}
	r.points = append(r.points, p)
	fmt.Fprintf(os.Stderr, "soak: %7d/%d  %6.1fs  RSS %6.1f MiB  heap live %5.1f MiB  goroutines %4d  fds %4d\n",
		p.Done, r.cfg.n, time.Duration(p.ElapsedNS).Seconds(), kib(p.RSSKB), mib(p.HeapLive), p.Goroutines, p.FDs)
}

// sample probes the process and, with -metrics, scrapes the registry once
// (as a Prometheus server would) so that its cost is in the run.
func (r *run) sample(label string) (point, error) {
	p, err := probe()
	p.Label = label
	p.Done, p.ElapsedNS = r.done.Load(), int64(time.Since(r.start))
	if err == nil && r.reg != nil {
		t := time.Now()
		if _, err = r.reg.Gather(); err != nil {
			err = fmt.Errorf("scrape the engine's metrics: %w", err)
		}
		p.ScrapeNS = int64(time.Since(t))
	}
	return p, err
}

// settle waits, up to cfg.settle, for goroutines and open files to fall
// back to the baseline (a connection closed by Close may end a moment
// later) and returns the last sample, its time since Close's.
func (r *run) settle(base point) (*point, error) {
	t0 := time.Now()
	for {
		p, err := probe()
		if err != nil {
			return nil, err
		}
		p.Label, p.Done, p.ElapsedNS = "settled", r.done.Load(), int64(time.Since(t0))
		if (p.Goroutines <= base.Goroutines && p.FDs <= base.FDs) || time.Since(t0) > r.cfg.settle {
			return &p, nil
		}
		time.Sleep(50 * time.Millisecond) // polling a count that has no event to wait on
	}
}

// readEngineMetrics sums postern_deliveries_total{outcome="delivered"} and
// reads postern_connections_opened_total.
func readEngineMetrics(reg *prometheus.Registry) (delivered, opened float64) {
	fams, err := reg.Gather()
	if err != nil {
		return -1, -1
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "postern_deliveries_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" && l.GetValue() == metrics.OutcomeDelivered {
						delivered += m.GetCounter().GetValue()
					}
				}
			case "postern_connections_opened_total":
				opened += m.GetCounter().GetValue()
			}
		}
	}
	return delivered, opened
}

func kib(kb int64) float64 { return float64(kb) / 1024 }
func mib(b uint64) float64 { return float64(b) / (1 << 20) }
