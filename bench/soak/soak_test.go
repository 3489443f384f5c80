package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed"
)

// TestMain lets the test binary be the engine process that runOnce
// re-executes, as the command is.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		cfg, err := parseFlags(os.Args[1:])
		if err != nil {
			os.Exit(2)
		}
		os.Exit(engineWorker(cfg))
	}
	os.Exit(m.Run())
}

// TestStatusKB: each figure is read from its own line of
// /proc/PID/status (VmRSS, not VmHWM); a status without it is an error.
func TestStatusKB(t *testing.T) {
	status := "Name:\tsoak\nVmHWM:\t   99999 kB\nVmRSS:\t   21544 kB\nRssAnon:\t   11000 kB\nRssFile:\t    9000 kB\n"
	for key, want := range map[string]int64{"VmRSS": 21544, "RssAnon": 11000, "RssFile": 9000} {
		if got, err := statusKB([]byte(status), key); err != nil || got != want {
			t.Errorf("statusKB %s = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := statusKB([]byte("Name:\tsoak\nVmHWM:\t 1 kB\n"), "VmRSS"); err == nil {
		t.Error("statusKB of a status without VmRSS: no error")
	}
	// And this process's own status has them.
	if p, err := probe(); err != nil || p.RSSKB <= 0 || p.AnonKB <= 0 || p.FileKB <= 0 || p.AnonKB+p.FileKB > p.RSSKB {
		t.Errorf("probe: RSS %d kB (anon %d, file %d), %v", p.RSSKB, p.AnonKB, p.FileKB, err)
	}
}

// TestOpenFilesCountsEachFile: opening a file adds one to the count and
// closing it takes it away (the directory read is not counted).
func TestOpenFilesCountsEachFile(t *testing.T) {
	before, err := openFiles()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	during, err := openFiles()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	after, err := openFiles()
	if err != nil {
		t.Fatal(err)
	}
	if during != before+1 || after != before {
		t.Errorf("open files %d, %d with one more open, %d after closing it; want %d, %d, %d", before, during, after, before, before+1, before)
	}
}

// curve is a synthetic run of 100 messages sampled every 10, whose RSS
// and live heap go from warm to end linearly.
func curve(warmRSS, endRSS int64, goroutinesAfter, fdsAfter int) workerResult {
	r := workerResult{Baseline: point{Label: "baseline", Goroutines: 2, FDs: 9}}
	for d := int64(10); d < 100; d += 10 {
		rss := warmRSS + (endRSS-warmRSS)*(d-10)/90
		r.Points = append(r.Points, point{Done: d, ElapsedNS: d * int64(time.Millisecond), RSSKB: rss, HeapLive: uint64(rss) * 100})
	}
	r.End = point{Label: "end", Done: 100, ElapsedNS: 100 * int64(time.Millisecond), RSSKB: endRSS, HeapLive: uint64(endRSS) * 100}
	r.Closed = point{Label: "closed", Done: 100, Goroutines: goroutinesAfter, FDs: fdsAfter}
	return r
}

// TestJudge: growth is measured from the first sample at or after the
// warm-up to the end, against the 10 % target; goroutines or fds above
// the baseline after Close fail; the heap trend has the right sign.
func TestJudge(t *testing.T) {
	cfg := config{n: 100, warmup: 0.1}
	v := judge(cfg, curve(20000, 21000, 2, 9))
	if v.warm.Done != 10 || v.rssGrowth != 0.05 || !v.memoryOK || !v.goroutinesOK || !v.fdsOK {
		t.Errorf("5 %% growth: warm at %d, growth %v, ok %v %v %v", v.warm.Done, v.rssGrowth, v.memoryOK, v.goroutinesOK, v.fdsOK)
	}
	if v.heapSlope <= 0 || len(v.rates) != 9 || v.rates[0] != 1000 {
		t.Errorf("heap slope %v (want > 0), rates %v (want 9 windows of 1000 msg/s)", v.heapSlope, v.rates)
	}
	if v := judge(cfg, curve(20000, 22200, 2, 9)); v.memoryOK {
		t.Errorf("11 %% growth judged met (growth %v)", v.rssGrowth)
	}
	if v := judge(cfg, curve(20000, 20000, 3, 9)); v.goroutinesOK || !v.fdsOK {
		t.Errorf("one goroutine over the baseline: goroutines ok %v, fds ok %v", v.goroutinesOK, v.fdsOK)
	}
	r := curve(20000, 20000, 2, 10)
	r.Settled = &point{Label: "settled", Goroutines: 2, FDs: 9}
	if v := judge(cfg, r); !v.fdsOK {
		t.Error("an fd closed by the time of the settled sample: still judged not met")
	}
	if v := judge(config{n: 100, warmup: 0.35}, curve(20000, 20000, 2, 9)); v.warm.Done != 40 {
		t.Errorf("warm-up 35 %%: measured from %d messages, want 40", v.warm.Done)
	}
}

// TestSoakPolicyRoutesEachDomainToItsSink: the generated policy loads,
// and each sink's domain goes to its relay route with STARTTLS off.
func TestSoakPolicyRoutesEachDomainToItsSink(t *testing.T) {
	sinks := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:2501"), netip.MustParseAddrPort("127.0.0.1:2502"), netip.MustParseAddrPort("127.0.0.1:2503")}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(soakPolicy(sinks, 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zone.txt"), []byte(soakZone), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := engine.LoadFile(filepath.Join(dir, "policy.yaml"), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d, err := e.Evaluate(context.Background(), engine.Message{From: "bench@sender.test",
		To: []string{"a@" + sinkDomain(0), "b@" + sinkDomain(1), "c@" + sinkDomain(2)}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range d.Groups {
		s := fmt.Sprintf("%s→%s:%d", g.Domain, g.Route.Name, g.Route.Port)
		for _, h := range g.Hosts {
			s += " starttls=" + string(h.TLS.STARTTLS)
		}
		got = append(got, s)
	}
	want := "d1.dest.test→sink1:2501 starttls=disable, d2.dest.test→sink2:2502 starttls=disable, d3.dest.test→sink3:2503 starttls=disable"
	if strings.Join(got, ", ") != want {
		t.Errorf("groups:\n%s\nwant\n%s", strings.Join(got, ", "), want)
	}
}

// TestSoakEndToEnd runs a short soak through the real path (smtp-sinks,
// the re-executed engine process, metrics and logging on): every message
// reaches the sinks, split evenly between them; the engine's metrics and
// log saw each; and after Close the engine process is back to the
// goroutines and open files it had before the engine existed.
func TestSoakEndToEnd(t *testing.T) {
	testbed.Require(t, "smtp-sink")
	cfg, o := runShort(t, "-n", "400", "-sinks", "2", "-sample", "100", "-parallel", "8", "-mpc", "50", "-metrics", "-log")
	if o.w.Delivered != 400 || len(o.sinks) != 2 || o.sinks[0].Messages != 200 || o.sinks[1].Messages != 200 {
		t.Errorf("delivered %d, sinks %+v; want 400, 200 at each sink", o.w.Delivered, o.sinks)
	}
	// 200 messages a sink at 50 a connection: at least 4 connections each.
	if s := o.sinks[0].Sessions + o.sinks[1].Sessions; s < 8 || float64(s) != o.w.MetricConnsOpen {
		t.Errorf("%d sessions at the sinks, %v connections opened by the engine; want at least 8, the same", s, o.w.MetricConnsOpen)
	}
	if o.w.MetricDelivered != 400 || o.w.LogLines < 400 {
		t.Errorf("metrics counted %v delivered, the log has %d lines; want 400, at least 400", o.w.MetricDelivered, o.w.LogLines)
	}
	if len(o.w.Points) != 3 || o.w.Points[0].ScrapeNS <= 0 {
		t.Errorf("%d samples during the run (want 3, at 100, 200, 300 messages), first scrape %d ns", len(o.w.Points), o.w.Points[0].ScrapeNS)
	}
	v := judge(cfg, o.w)
	if !v.goroutinesOK || !v.fdsOK {
		t.Errorf("after Close: %d goroutines, %d fds; before the engine: %d, %d", v.after.Goroutines, v.after.FDs, o.w.Baseline.Goroutines, o.w.Baseline.FDs)
	}
}

// TestSoakPinnedDropHandler: with -pin the engine process runs on one CPU
// (GOMAXPROCS 1, from its affinity) and still delivers every message; with
// -log-handler drop the engine hands over a record per recipient and none
// is formatted.
func TestSoakPinnedDropHandler(t *testing.T) {
	testbed.Require(t, "smtp-sink")
	testbed.Require(t, "taskset")
	if runtime.NumCPU() < 2 {
		t.Skip("-pin needs 2 CPUs")
	}
	_, o := runShort(t, "-n", "200", "-sinks", "1", "-sample", "100", "-parallel", "4", "-log", "-log-handler", "drop", "-pin")
	if o.w.Delivered != 200 || o.sinks[0].Messages != 200 {
		t.Errorf("delivered %d, sink counted %+v; want 200", o.w.Delivered, o.sinks)
	}
	if o.w.Procs != 1 {
		t.Errorf("engine process GOMAXPROCS %d, want 1 when pinned to one CPU", o.w.Procs)
	}
	if o.w.LogLines < 200 || o.w.LogBytes != 0 {
		t.Errorf("drop handler: %d records, %d bytes; want at least 200 records and no bytes", o.w.LogLines, o.w.LogBytes)
	}
}

// TestParseFlagsRefuses: flags that would be ignored, or that name
// nothing, are refused with the reason.
func TestParseFlagsRefuses(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-log-handler", "text"}, "want json or drop"},
		{[]string{"-ab", "-compare"}, "name one"},
		{[]string{"-ab", "-cpuprofile", "x.prof"}, "-cpuprofile is for a single soak"},
		{[]string{"-compare", "-cpuprofile", "x.prof"}, "-cpuprofile is for a single soak"},
		{[]string{"-ab", "-ab-block", "0"}, "must be positive"},
	} {
		if _, err := parseFlags(c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	if _, err := parseFlags([]string{"-cpuprofile", "x.prof"}); err != nil {
		t.Errorf("-cpuprofile alone: %v", err)
	}
}

// runShort runs one soak with the flags given (and a 2-minute bound).
func runShort(t *testing.T, args ...string) (config, outcome) {
	t.Helper()
	cfg, err := parseFlags(append(args, "-timeout", "2m"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o, err := runOnce(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, o
}

// TestSoakAB: -ab runs a plain engine and the variant's in one process,
// in alternating blocks after a warm-up pair: every block is measured,
// every message reaches the sinks, and only the variant's engine logs
// (its "policy loaded", then one record per message of its blocks, the
// warm-up one included).
func TestSoakAB(t *testing.T) {
	testbed.Require(t, "smtp-sink")
	cfg, err := parseFlags([]string{"-ab", "-ab-variant", "metrics+log", "-ab-block", "50", "-ab-pairs", "3", "-sinks", "2", "-parallel", "4", "-timeout", "2m"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, name, err := abConfig(cfg)
	if err != nil || name != "metrics+log" || !cfg.metrics || !cfg.log || cfg.logHandler != "json" {
		t.Fatalf("abConfig: %q, metrics %v, log %v (%s), %v", name, cfg.metrics, cfg.log, cfg.logHandler, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, _, sinks, err := runAB(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.A) != 3 || len(res.B) != 3 {
		t.Fatalf("%d A blocks, %d B blocks; want 3 each", len(res.A), len(res.B))
	}
	for i := range 3 {
		if res.A[i].WallNS <= 0 || res.B[i].WallNS <= 0 || res.A[i].CPUNS <= 0 || res.B[i].CPUNS <= 0 {
			t.Errorf("pair %d: A %+v, B %+v; want positive wall and CPU times", i, res.A[i], res.B[i])
		}
	}
	if got := sinks[0].Messages + sinks[1].Messages; got != 400 {
		t.Errorf("sinks counted %d messages, want 400 (4 pairs of 2 blocks of 50)", got)
	}
	if res.LogLines != 201 {
		t.Errorf("%d log records, want 201 (\"policy loaded\", then a line for each of the variant's 4 blocks of 50)", res.LogLines)
	}
	if _, _, err := abConfig(config{abVariant: "plain"}); err == nil {
		t.Error("-ab-variant plain accepted")
	}
}
