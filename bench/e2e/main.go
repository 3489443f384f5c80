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
// With -tls it measures STARTTLS (RFC 3207) delivery instead, into a sink
// of its own that offers STARTTLS with a certificate from a CA made at
// start (gosink.go: SMTP of RFC 5321 with PIPELINING, RFC 2920) and counts
// TLS handshakes, full and resumed (RFC 8446):
//
//   - engine, engine STARTTLS: the engine with tls.starttls disable, and
//     require with the certificate verified against that CA (PKIX);
//   - postfix, postfix STARTTLS: the same Postfix instance with
//     smtp_tls_security_level none, and encrypt with its TLS session cache
//     and smtp_tls_connection_reuse (connections are cached with TLS too);
//   - engine smtp-sink: the engine's plaintext into smtp-sink, to show that
//     the STARTTLS sink is not the bottleneck.
//
// Every measurement gets a fresh sink, whose counters (-c) give the number
// of SMTP sessions (connections) and messages it saw. Results are medians
// of -runs runs with their ranges. Everything listens on 127.0.0.1 and is
// stopped, and every temporary directory removed, before the program exits.
//
//	go run ./bench/e2e [-tls] [-n 5000] [-size 2048] [-parallel 20] [-runs 3]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/postern-mta/postern/bench/internal/postfixproc"
	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/sinkproc"
	"github.com/postern-mta/postern/bench/internal/stats"
)

type config struct {
	n, size, parallel, runs, mpc int
	timeout                      time.Duration
	skipPostfix                  bool
	only                         string
	markdown                     bool
	tls                          bool
	starttls, caFile             string // the engine worker's tls.starttls and RootCAs
	cpuprofile                   string // the engine worker's CPU profile
}

// sample is one measurement of one contender.
type sample struct {
	sinkproc.Counts               // what the sink saw (the readiness probe excluded)
	elapsed         time.Duration // see README: the timed part of the measurement
	rssKB           int64         // peak resident set (Postfix: the sum of its processes' peaks)
	pssKB           int64         // peak proportional set size, sampled (10ms; Postfix 250ms)
	cpu             time.Duration // user+system time of the client (Postfix: its processes', sampled)
	sinkCPU         time.Duration // user+system time of the sink, from start to stop
	extra           string
}

// contender is one client measured against a fresh sink.
type contender struct {
	name    string
	measure func(ctx context.Context, run int) (sample, error)
}

func (s sample) rate(n int) float64 { return float64(n) / s.elapsed.Seconds() }

func main() {
	var cfg config
	worker := flag.String("worker", "", "internal: run a child: the measured engine (engine) or the STARTTLS sink (sink)")
	addr := flag.String("addr", "", "internal: the sink address for -worker")
	cert := flag.String("cert", "", "internal: the STARTTLS sink's certificate chain (PEM)")
	key := flag.String("key", "", "internal: the STARTTLS sink's key (PEM)")
	flag.StringVar(&cfg.starttls, "starttls", "", "internal: tls.starttls of the engine worker's policy (empty: not set)")
	flag.StringVar(&cfg.caFile, "cafile", "", "internal: the CA (PEM) the engine worker verifies certificates against")
	flag.BoolVar(&cfg.tls, "tls", false, "measure STARTTLS delivery: engine and Postfix, with and without TLS, into a STARTTLS sink")
	flag.IntVar(&cfg.n, "n", 5000, "messages per measurement")
	flag.IntVar(&cfg.size, "size", 2048, "message payload in bytes (smtp-source -l)")
	flag.IntVar(&cfg.parallel, "parallel", 20, "engine goroutines and smtp-source sessions")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of every measurement (the table shows medians and ranges)")
	flag.IntVar(&cfg.mpc, "mpc", 1000, "limits.messages-per-connection of the engine's policy")
	flag.DurationVar(&cfg.timeout, "timeout", 3*time.Minute, "bound on each measurement")
	flag.BoolVar(&cfg.skipPostfix, "skip-postfix", false, "do not measure Postfix")
	flag.StringVar(&cfg.only, "only", "", "measure only this contender (engine, smtp-source, smtp-source -d, postfix; with -tls: engine, engine STARTTLS, engine smtp-sink, postfix, postfix STARTTLS)")
	flag.BoolVar(&cfg.markdown, "markdown", true, "print the table in Markdown")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write the CPU profile of the engine's deliveries to `file` (each engine measurement overwrites it: use with -only and -runs 1)")
	flag.Parse()

	switch *worker {
	case "engine":
		os.Exit(engineWorker(*addr, cfg))
	case "sink":
		os.Exit(sinkWorker(*addr, *cert, *key))
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
		p, err := postfixproc.LookTool(name)
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

	load0 := procstat.LoadAvg()
	fmt.Printf("machine: nproc=%d, CPU %q, %s/%s, %s, load average at start %s\n",
		runtime.NumCPU(), procstat.CPUModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), load0)
	fmt.Printf("N=%d messages of %d bytes payload, %d parallel, messages-per-connection %d, %d runs\n\n",
		cfg.n, cfg.size, cfg.parallel, cfg.mpc, cfg.runs)

	var contenders []contender
	if cfg.tls {
		if contenders, err = tlsContenders(cfg, tools, tmp, self); err != nil {
			return err
		}
	} else {
		contenders = plainContenders(cfg, tools, tmp, self)
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
			fmt.Printf("run %d %-16s %8.0f msg/s  %7.3fs  sessions=%-5d messages=%-5d TLS full/resumed=%d/%d  peak RSS %6.1f MiB  PSS %6.1f MiB  CPU %.2fs  sink CPU %.2fs %s\n",
				r, c.name, s.rate(cfg.n), s.elapsed.Seconds(), s.Sessions, s.Messages, s.Full, s.Resumed,
				float64(s.rssKB)/1024, float64(s.pssKB)/1024, s.cpu.Seconds(), s.sinkCPU.Seconds(), s.extra)
			results[c.name] = append(results[c.name], s)
		}
	}
	fmt.Printf("\nload average at end %s\n\n", procstat.LoadAvg())
	if cfg.tls {
		printTLSTable(cfg, contenders, results)
	} else {
		printPlainTable(cfg, contenders, results)
	}
	return nil
}

// plainContenders are the measurements without -tls, all into smtp-sink.
func plainContenders(cfg config, tools map[string]string, tmp, self string) []contender {
	sp := sinkproc.SmtpSink(tools["smtp-sink"])
	cs := []contender{
		{"engine", func(ctx context.Context, _ int) (sample, error) { return measureEngine(ctx, cfg, sp, tmp, self) }},
		{"smtp-source", func(ctx context.Context, _ int) (sample, error) { return measureSource(ctx, cfg, tools, tmp, false) }},
		{"smtp-source -d", func(ctx context.Context, _ int) (sample, error) { return measureSource(ctx, cfg, tools, tmp, true) }},
	}
	if !cfg.skipPostfix {
		cs = append(cs, contender{"postfix", func(ctx context.Context, r int) (sample, error) {
			return measurePostfix(ctx, cfg, tools, tmp, r, sp, "")
		}})
	}
	return cs
}

// printPlainTable prints the table of the plaintext run.
func printPlainTable(cfg config, contenders []contender, results map[string][]sample) {
	ceiling := 0.0
	for _, name := range []string{"smtp-source", "smtp-source -d"} {
		ceiling = max(ceiling, stats.Median(rates(results[name], cfg.n)))
	}
	// ceiling stays 0 when no client-ceiling run was made (-only engine):
	// the column then says so instead of dividing by a stand-in.
	pf := stats.Median(rates(results["postfix"], cfg.n))
	fmt.Println("| client | msg/s, median (range) | vs client ceiling | connections (sessions at the sink) | CPU ms per 1000 msgs | peak RSS | peak PSS |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, c := range contenders {
		ss := results[c.name]
		rs := rates(ss, cfg.n)
		var sess, rss, pss, cpu []float64
		for _, s := range ss {
			cpu = append(cpu, float64(s.cpu.Milliseconds())*1000/float64(cfg.n))
			sess = append(sess, float64(s.Sessions))
			rss = append(rss, float64(s.rssKB)/1024)
			pss = append(pss, float64(s.pssKB)/1024)
		}
		vs := "—"
		if ceiling > 0 {
			vs = fmt.Sprintf("%.0f %%", 100*stats.Median(rs)/ceiling)
		}
		if c.name == "engine" && pf > 0 {
			vs += fmt.Sprintf(" (%.1f× Postfix)", stats.Median(rs)/pf)
		}
		fmt.Printf("| %s | %.0f (%.0f–%.0f) | %s | %s | %s | %s MiB | %s MiB |\n", c.name, stats.Median(rs), slices.Min(rs), slices.Max(rs), vs,
			stats.RangeText(sess, "%.0f"), stats.RangeText(cpu, "%.0f"), stats.RangeText(rss, "%.1f"), stats.RangeText(pss, "%.1f"))
	}
}

func rates(ss []sample, n int) []float64 {
	var out []float64
	for _, s := range ss {
		out = append(out, s.rate(n))
	}
	return out
}

// measureEngine runs the engine worker as a child process against a fresh
// sink; args go to the worker (-starttls, -cafile).
func measureEngine(ctx context.Context, cfg config, sp sinkproc.Spec, tmp, self string, args ...string) (sample, error) {
	sink, err := sinkproc.Start(ctx, sp, tmp)
	if err != nil {
		return sample{}, err
	}
	defer sink.Stop()
	cmd := exec.CommandContext(ctx, self, append([]string{"-worker", "engine", "-addr", sink.Addr,
		"-n", fmt.Sprint(cfg.n), "-size", fmt.Sprint(cfg.size), "-parallel", fmt.Sprint(cfg.parallel), "-mpc", fmt.Sprint(cfg.mpc),
		"-cpuprofile", cfg.cpuprofile}, args...)...)
	cmd.SysProcAttr = childAttr()
	cmd.Stderr = os.Stderr
	var outb sinkproc.Buffer
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
	s := sample{elapsed: time.Duration(w.ElapsedNS), rssKB: cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss, pssKB: mem.PeakPSSKB,
		cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	s.Counts, err = sink.Settle(ctx, cfg.n)
	s.sinkCPU = sink.CPU()
	return s, err
}

// measureSource runs smtp-source against a fresh sink; keep is -d (one
// connection per session for all its messages).
func measureSource(ctx context.Context, cfg config, tools map[string]string, tmp string, keep bool) (sample, error) {
	sink, err := sinkproc.Start(ctx, sinkproc.SmtpSink(tools["smtp-sink"]), tmp)
	if err != nil {
		return sample{}, err
	}
	defer sink.Stop()
	args := []string{"-s", fmt.Sprint(cfg.parallel), "-m", fmt.Sprint(cfg.n), "-l", fmt.Sprint(cfg.size),
		"-M", "bench.sender.test", "-f", "bench@sender.test", "-t", "rcpt@dest.test"}
	if keep {
		args = append(args, "-d")
	}
	cmd := exec.CommandContext(ctx, tools["smtp-source"], append(args, sink.Addr)...)
	cmd.SysProcAttr = childAttr()
	var out sinkproc.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	mem, err := runSampled(cmd)
	if err != nil {
		return sample{}, fmt.Errorf("smtp-source: %w: %s", err, out.String())
	}
	s := sample{elapsed: time.Since(start), rssKB: cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss, pssKB: mem.PeakPSSKB,
		cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	s.Counts, err = sink.Settle(ctx, cfg.n)
	s.sinkCPU = sink.CPU()
	return s, err
}

// runSampled runs cmd to its end, sampling its memory.
func runSampled(cmd *exec.Cmd) (procstat.Peak, error) {
	if err := cmd.Start(); err != nil {
		return procstat.Peak{}, err
	}
	m := procstat.Sample(10*time.Millisecond, func() []int { return []int{cmd.Process.Pid} })
	err := cmd.Wait()
	return m.Stop(), err
}

// childAttr puts a child in its own process group (so that stopping it
// stops what it started) and kills it if this program dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// writeFile writes content to dir/name.
func writeFile(dir, name, content string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}
