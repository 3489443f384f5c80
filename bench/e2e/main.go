// Command e2e is the end-to-end delivery benchmark: it starts Postfix's
// smtp-sink on loopback and measures, in the same run and against the same
// kind of sink,
//
//   - engine:  N messages through engine.Deliver (a relay route to the sink,
//     connection reuse), from G goroutines, in a child process so that its
//     peak RSS can be read;
//   - source:  smtp-source -s G -m N -l SIZE straight to the sink (one
//     connection per message), and source -d (connections kept): the
//     client ceiling of this machine;
//   - postfix: a throwaway Postfix instance (testbed.md section 1f) relaying
//     the same N messages to the sink: injected while its smtp transport is
//     deferred, then released; only the delivery is timed.
//
// Every measurement gets a fresh sink, whose counters (-c) give the number
// of SMTP sessions (connections) and messages it saw. Results are medians
// of -runs runs with their ranges. Everything listens on 127.0.0.1 and is
// stopped, and every temporary directory removed, before the program exits.
//
//	go run ./bench/e2e [-n 5000] [-size 2048] [-parallel 20] [-runs 3]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	n, size, parallel, runs, mpc int
	timeout                      time.Duration
	skipPostfix                  bool
	only                         string
	markdown                     bool
}

// sample is one measurement of one contender.
type sample struct {
	elapsed  time.Duration
	sessions int           // SMTP sessions the sink saw
	messages int           // messages the sink received
	rssKB    int64         // peak resident set (Postfix: the sum of its processes' peaks)
	pssKB    int64         // peak proportional set size, sampled (10ms; Postfix 250ms)
	cpu      time.Duration // user+system time of the client (Postfix: its processes', sampled)
	extra    string
}

func (s sample) rate(n int) float64 { return float64(n) / s.elapsed.Seconds() }

func main() {
	var cfg config
	worker := flag.String("worker", "", "internal: run a measured child (engine)")
	addr := flag.String("addr", "", "internal: the sink address for -worker")
	flag.IntVar(&cfg.n, "n", 5000, "messages per measurement")
	flag.IntVar(&cfg.size, "size", 2048, "message payload in bytes (smtp-source -l)")
	flag.IntVar(&cfg.parallel, "parallel", 20, "engine goroutines and smtp-source sessions")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of every measurement (the table shows medians and ranges)")
	flag.IntVar(&cfg.mpc, "mpc", 1000, "limits.messages-per-connection of the engine's policy")
	flag.DurationVar(&cfg.timeout, "timeout", 3*time.Minute, "bound on each measurement")
	flag.BoolVar(&cfg.skipPostfix, "skip-postfix", false, "do not measure Postfix")
	flag.StringVar(&cfg.only, "only", "", "measure only this contender (engine, smtp-source, smtp-source -d, postfix)")
	flag.BoolVar(&cfg.markdown, "markdown", true, "print the table in Markdown")
	flag.Parse()

	if *worker == "engine" {
		os.Exit(engineWorker(*addr, cfg))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	tools := map[string]string{}
	for _, name := range []string{"smtp-sink", "smtp-source", "postfix", "postconf", "postqueue"} {
		p, err := lookTool(name)
		if err != nil {
			if cfg.skipPostfix && name != "smtp-sink" && name != "smtp-source" {
				continue
			}
			return fmt.Errorf("%s is not installed (apt-get install postfix; testbed.md section 1)", name)
		}
		tools[name] = p
	}
	tmp, err := os.MkdirTemp("", "postern-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// smtp-sink and Postfix drop privileges; let them into the directory.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	load0 := loadAvg()
	fmt.Printf("machine: nproc=%d, CPU %q, %s/%s, %s, load average at start %s\n",
		runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), load0)
	fmt.Printf("N=%d messages of %d bytes payload, %d parallel, messages-per-connection %d, %d runs\n\n",
		cfg.n, cfg.size, cfg.parallel, cfg.mpc, cfg.runs)

	type contender struct {
		name    string
		measure func(ctx context.Context, run int) (sample, error)
	}
	contenders := []contender{
		{"engine", func(ctx context.Context, _ int) (sample, error) { return measureEngine(ctx, cfg, tools, tmp, self) }},
		{"smtp-source", func(ctx context.Context, _ int) (sample, error) { return measureSource(ctx, cfg, tools, tmp, false) }},
		{"smtp-source -d", func(ctx context.Context, _ int) (sample, error) { return measureSource(ctx, cfg, tools, tmp, true) }},
	}
	if !cfg.skipPostfix {
		contenders = append(contenders, contender{"postfix", func(ctx context.Context, r int) (sample, error) {
			return measurePostfix(ctx, cfg, tools, tmp, r)
		}})
	}
	if cfg.only != "" {
		contenders = slices.DeleteFunc(contenders, func(c contender) bool { return c.name != cfg.only })
		if len(contenders) == 0 {
			return fmt.Errorf("-only %q: no such contender", cfg.only)
		}
	}
	results := map[string][]sample{}
	for r := 1; r <= cfg.runs; r++ {
		for _, c := range contenders { // interleaved: every run sees the same noise
			mctx, cancel := context.WithTimeout(ctx, cfg.timeout)
			s, err := c.measure(mctx, r)
			cancel()
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", r, c.name, err)
			}
			cpu := fmt.Sprintf("%.2fs", s.cpu.Seconds())
			fmt.Printf("run %d %-15s %8.0f msg/s  %7.3fs  sessions=%-5d messages=%-5d peak RSS %6.1f MiB  PSS %6.1f MiB  CPU %s %s\n",
				r, c.name, s.rate(cfg.n), s.elapsed.Seconds(), s.sessions, s.messages, float64(s.rssKB)/1024, float64(s.pssKB)/1024, cpu, s.extra)
			results[c.name] = append(results[c.name], s)
		}
	}
	fmt.Printf("\nload average at end %s\n\n", loadAvg())

	ceiling := 0.0
	for _, name := range []string{"smtp-source", "smtp-source -d"} {
		ceiling = max(ceiling, median(rates(results[name], cfg.n)))
	}
	if ceiling == 0 {
		ceiling = 1
	}
	pf := median(rates(results["postfix"], cfg.n))
	fmt.Println("| client | msg/s, median (range) | vs client ceiling | connections (sessions at the sink) | CPU ms per 1000 msgs | peak RSS | peak PSS |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, c := range contenders {
		ss := results[c.name]
		rs := rates(ss, cfg.n)
		var sess, rss, pss, cpu []float64
		for _, s := range ss {
			cpu = append(cpu, float64(s.cpu.Milliseconds())*1000/float64(cfg.n))
			sess = append(sess, float64(s.sessions))
			rss = append(rss, float64(s.rssKB)/1024)
			pss = append(pss, float64(s.pssKB)/1024)
		}
		vs := fmt.Sprintf("%.0f %%", 100*median(rs)/ceiling)
		if c.name == "engine" && pf > 0 {
			vs += fmt.Sprintf(" (%.1f× Postfix)", median(rs)/pf)
		}
		fmt.Printf("| %s | %.0f (%.0f–%.0f) | %s | %s | %s | %s MiB | %s MiB |\n", c.name, median(rs), slices.Min(rs), slices.Max(rs), vs,
			rangeText(sess, "%.0f"), rangeText(cpu, "%.0f"), rangeText(rss, "%.1f"), rangeText(pss, "%.1f"))
	}
	return nil
}

func rates(ss []sample, n int) []float64 {
	var out []float64
	for _, s := range ss {
		out = append(out, s.rate(n))
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rangeText is "median" when every value is the same, else "median (min–max)".
func rangeText(v []float64, f string) string {
	m := fmt.Sprintf(f, median(v))
	lo, hi := fmt.Sprintf(f, slices.Min(v)), fmt.Sprintf(f, slices.Max(v))
	if lo == hi {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, lo, hi)
}

// measureEngine runs the engine worker as a child process against a fresh
// sink.
func measureEngine(ctx context.Context, cfg config, tools map[string]string, tmp, self string) (sample, error) {
	sink, err := startSink(ctx, tools["smtp-sink"], tmp)
	if err != nil {
		return sample{}, err
	}
	defer sink.stop()
	cmd := exec.CommandContext(ctx, self, "-worker", "engine", "-addr", sink.addr,
		"-n", fmt.Sprint(cfg.n), "-size", fmt.Sprint(cfg.size), "-parallel", fmt.Sprint(cfg.parallel), "-mpc", fmt.Sprint(cfg.mpc))
	cmd.SysProcAttr = childAttr()
	cmd.Stderr = os.Stderr
	var outb syncBuffer
	cmd.Stdout = &outb
	mem, err := runSampled(cmd)
	if err != nil {
		return sample{}, fmt.Errorf("engine worker: %w", err)
	}
	out := []byte(outb.String())
	var w workerResult
	if err := json.Unmarshal(out, &w); err != nil {
		return sample{}, fmt.Errorf("engine worker output %q: %w", out, err)
	}
	if w.Failed > 0 {
		return sample{}, fmt.Errorf("engine: %d of %d messages not delivered (first: %s)", w.Failed, cfg.n, w.FirstError)
	}
	s := sample{elapsed: time.Duration(w.ElapsedNS), rssKB: cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss, pssKB: mem.peakPSSKB,
		cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	s.sessions, s.messages, err = sink.settle(ctx, cfg.n)
	return s, err
}

// measureSource runs smtp-source against a fresh sink; keep is -d (one
// connection per session for all its messages).
func measureSource(ctx context.Context, cfg config, tools map[string]string, tmp string, keep bool) (sample, error) {
	sink, err := startSink(ctx, tools["smtp-sink"], tmp)
	if err != nil {
		return sample{}, err
	}
	defer sink.stop()
	args := []string{"-s", fmt.Sprint(cfg.parallel), "-m", fmt.Sprint(cfg.n), "-l", fmt.Sprint(cfg.size),
		"-M", "bench.sender.test", "-f", "bench@sender.test", "-t", "rcpt@dest.test"}
	if keep {
		args = append(args, "-d")
	}
	cmd := exec.CommandContext(ctx, tools["smtp-source"], append(args, sink.addr)...)
	cmd.SysProcAttr = childAttr()
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	mem, err := runSampled(cmd)
	if err != nil {
		return sample{}, fmt.Errorf("smtp-source: %w: %s", err, out.String())
	}
	s := sample{elapsed: time.Since(start), rssKB: cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss, pssKB: mem.peakPSSKB,
		cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	s.sessions, s.messages, err = sink.settle(ctx, cfg.n)
	return s, err
}

// runSampled runs cmd to its end, sampling its memory.
func runSampled(cmd *exec.Cmd) (memPeak, error) {
	if err := cmd.Start(); err != nil {
		return memPeak{}, err
	}
	m := sampleMem(10*time.Millisecond, func() []int { return []int{cmd.Process.Pid} })
	err := cmd.Wait()
	return m.stop(), err
}

// lookTool finds a Postfix program in PATH or the usual sbin directories.
func lookTool(name string) (string, error) {
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/", "/sbin/"} {
		if p, err := exec.LookPath(dir + name); err == nil {
			return p, nil
		}
	}
	return "", errors.New(name + " not found")
}

// childAttr puts a child in its own process group (so that stopping it
// stops what it started) and kills it if this program dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// writeFile writes content to dir/name.
func writeFile(dir, name, content string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}
