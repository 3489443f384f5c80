// Command soak is the soak benchmark of engine.Deliver: many messages
// (100,000 by default) delivered over SMTP (RFC 5321, with PIPELINING,
// RFC 2920) to Postfix smtp-sinks on loopback through one engine, with
// its memory, goroutines and open files sampled along the way, to show
// that an engine embedded in an MTA for days keeps flat memory and gives
// back its goroutines and file descriptors when closed.
//
// The parent starts the sinks (-sinks, one relay route each, connection
// reuse up to limits.messages-per-connection) and re-executes itself as
// the engine process, so that /proc/self/status, /proc/self/fd and
// runtime.NumGoroutine describe the engine alone. That process samples
// itself before the engine exists (the baseline), every -sample messages,
// after the last result, and after engine.Close (the only sample taken
// after a forced runtime.GC). The parent prints the curve as a Markdown
// table and a verdict against the targets: memory growth after warm-up
// ≤ 10 %, goroutines and file descriptors back to the baseline.
//
// -metrics gives the engine engine/metrics on a fresh Prometheus registry,
// scraped (Gather) at every sample; -log gives it a slog JSON handler that
// formats every record into a counting io.Discard. -compare runs short
// soaks without and with both (or the -variants named), alternately, and
// prints the median throughput and CPU per message of each: the cost of
// observability (target ≤ 5 %).
//
//	go run ./bench/soak [-n 100000] [-parallel 20] [-size 2048] [-sample 5000] [-metrics] [-log]
//	go run ./bench/soak -compare [-compare-n 20000] [-compare-runs 3] [-variants plain,metrics,log,metrics+log]
//	go run ./bench/soak -ab [-ab-variant metrics+log] [-ab-block 2000] [-ab-pairs 40] [-pin]
//
// -ab measures the same cost inside one engine process: a plain engine
// and the variant's, on the same sinks, take blocks of messages in turn,
// and the cost is the median of the pairs' ratios, so that a machine
// whose speed drifts from run to run (as shared VMs do) does not decide
// the result. -pin puts the engine process on one CPU and the sinks on
// the others, so that its throughput is bound by its own CPU.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/sinkproc"
)

// config is the command line, shared by the parent and the engine process.
type config struct {
	n, parallel, size, sample, sinks, mpc int
	warmup                                float64
	metrics, log                          bool
	logHandler                            string // -log: json (format every record) or drop (take every record, format none)
	pin                                   bool   // the engine process on one CPU, the sinks on the others
	ab                                    bool   // one engine process, plain and -ab-variant engines in alternating blocks
	abVariant                             string
	abBlock, abPairs                      int
	compare                               bool
	compareN, compareRuns                 int
	variants                              string // -compare: the variants, the first being the reference
	cpuprofile                            string // engine process: where to write the CPU profile of the deliveries
	timeout, settle                       time.Duration
	addrs                                 string // engine process: the sinks, comma-separated
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.IntVar(&c.n, "n", 100000, "messages to deliver")
	fs.IntVar(&c.parallel, "parallel", 20, "goroutines calling engine.Deliver")
	fs.IntVar(&c.size, "size", 2048, "message payload in bytes")
	fs.IntVar(&c.sample, "sample", 5000, "sample every this many messages")
	fs.IntVar(&c.sinks, "sinks", 3, "smtp-sinks, one relay route each")
	fs.IntVar(&c.mpc, "mpc", 1000, "limits.messages-per-connection")
	fs.Float64Var(&c.warmup, "warmup", 0.1, "fraction of the messages counted as warm-up: memory growth is measured from the first sample after it")
	fs.BoolVar(&c.metrics, "metrics", false, "engine metrics on a fresh Prometheus registry, scraped at every sample")
	fs.BoolVar(&c.log, "log", false, "engine logging: a slog handler (-log-handler) that counts the records")
	fs.StringVar(&c.logHandler, "log-handler", "json", "-log's handler: json (slog's JSON handler writing to a counting io.Discard) or drop (takes every record and formats none: what the engine itself spends on the line)")
	fs.BoolVar(&c.pin, "pin", false, "run the engine process on one CPU only (GOMAXPROCS 1) and the sinks on the other CPUs, so that the engine's throughput is bound by its own CPU (needs taskset and 2 CPUs)")
	fs.BoolVar(&c.compare, "compare", false, "compare the throughput without and with -metrics -log (alternating short runs)")
	fs.IntVar(&c.compareN, "compare-n", 20000, "messages per -compare run")
	fs.IntVar(&c.compareRuns, "compare-runs", 3, "-compare runs of each variant")
	fs.StringVar(&c.variants, "variants", "plain,metrics+log", "-compare: the variants (plain, metrics, log, metrics+log, record, metrics+record), each compared with the first; record is -log -log-handler drop")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write the CPU profile of the engine's deliveries to `file` (not with -compare or -ab)")
	fs.BoolVar(&c.ab, "ab", false, "measure the cost of -ab-variant within one engine process: a plain engine and the variant's take blocks of messages in turn (drift of the machine falls on both)")
	fs.StringVar(&c.abVariant, "ab-variant", "metrics+log", "-ab: the variant compared with plain (metrics, log, metrics+log, record, metrics+record)")
	fs.IntVar(&c.abBlock, "ab-block", 2000, "-ab: messages per block")
	fs.IntVar(&c.abPairs, "ab-pairs", 40, "-ab: pairs of blocks measured (after one warm-up pair)")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Minute, "bound on the deliveries of one run")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "after Close, how long to wait for goroutines and fds to fall back to the baseline")
	fs.StringVar(&c.addrs, "addrs", "", "internal (engine process): the sinks' addresses")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.n < 1 || c.parallel < 1 || c.sample < 1 || c.sinks < 1 || c.compareN < 1 || c.compareRuns < 1 || c.abBlock < 1 || c.abPairs < 1 {
		return c, fmt.Errorf("-n, -parallel, -sample, -sinks, -compare-n, -compare-runs, -ab-block and -ab-pairs must be positive")
	}
	if c.ab && c.compare {
		return c, fmt.Errorf("-ab and -compare are two ways of comparing: name one")
	}
	if (c.ab || c.compare) && c.cpuprofile != "" {
		return c, fmt.Errorf("-cpuprofile is for a single soak, not -ab or -compare")
	}
	if c.logHandler != "json" && c.logHandler != "drop" {
		return c, fmt.Errorf("-log-handler %q: want json or drop", c.logHandler)
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if os.Getenv(childEnv) == "1" {
		os.Exit(engineWorker(cfg))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case cfg.ab:
		err = abCompare(ctx, cfg, os.Stdout)
	case cfg.compare:
		err = compare(ctx, cfg, os.Stdout)
	default:
		err = soakOnce(ctx, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		stop()
		os.Exit(1)
	}
}

// soakOnce runs one soak and prints its curve and verdict.
func soakOnce(ctx context.Context, cfg config, w io.Writer) error {
	printMachine(w, cfg)
	o, err := runOnce(ctx, cfg, os.Stderr)
	if err != nil {
		return err
	}
	printCurve(w, cfg, o)
	printVerdict(w, cfg, o)
	return nil
}

// outcome is one run as the parent saw it.
type outcome struct {
	w     workerResult
	cpu   time.Duration     // user+system of the engine process, start to exit
	sinks []sinkproc.Counts // per sink, the readiness probe excluded
}

func (o outcome) rate() float64 {
	return float64(o.w.Delivered) / time.Duration(o.w.ElapsedNS).Seconds()
}

// runOnce starts fresh sinks, runs the engine process against them and
// checks that the sinks received every message. The engine process's
// progress goes to progress.
func runOnce(ctx context.Context, cfg config, progress io.Writer) (outcome, error) {
	var o outcome
	var err error
	o.cpu, o.sinks, err = runChild(ctx, cfg, cfg.n, progress, &o.w, func() error {
		if o.w.Failed > 0 {
			return fmt.Errorf("%d of %d messages not delivered (first: %s)", o.w.Failed, cfg.n, o.w.FirstError)
		}
		return nil
	})
	return o, err
}

// runChild starts fresh sinks (on their CPUs with -pin), runs the engine
// process against them with cfg's flags, decodes what it prints into out,
// calls check, and waits until the sinks have counted n messages. It
// returns the engine process's CPU time (user and system) and the sinks'
// counts.
func runChild(ctx context.Context, cfg config, n int, progress io.Writer, out any, check func() error) (time.Duration, []sinkproc.Counts, error) {
	bin, err := findSmtpSink()
	if err != nil {
		return 0, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	tmp, err := os.MkdirTemp("", "postern-soak-sinks-")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // smtp-sink runs as nobody
		return 0, nil, err
	}
	var engineCPU, sinkCPUs string
	if cfg.pin {
		if engineCPU, sinkCPUs, err = cpuSplit(); err != nil {
			return 0, nil, err
		}
	}
	ss, err := startSinks(ctx, bin, tmp, cfg.sinks, sinkCPUs)
	if err != nil {
		return 0, nil, err
	}
	defer stopSinks(ss)
	var addrs []string
	for _, s := range ss {
		addrs = append(addrs, s.Addr)
	}
	argv := append([]string{self}, childArgs(cfg, strings.Join(addrs, ","))...)
	if cfg.pin {
		argv = append([]string{"taskset", "-c", engineCPU}, argv...) // taskset execs the engine: its CPU time is still the child's
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, progress
	if err := cmd.Run(); err != nil {
		return 0, nil, fmt.Errorf("engine process: %w", err)
	}
	if err := json.Unmarshal([]byte(stdout.String()), out); err != nil {
		return 0, nil, fmt.Errorf("engine process output %q: %w", stdout.String(), err)
	}
	if err := check(); err != nil {
		return 0, nil, err
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	counts, err := sinkproc.Settle(ctx, ss, n)
	return cpu, counts, err
}

// childArgs are the engine process's flags.
func childArgs(cfg config, addrs string) []string {
	return []string{"-addrs", addrs, "-n", fmt.Sprint(cfg.n), "-parallel", fmt.Sprint(cfg.parallel),
		"-size", fmt.Sprint(cfg.size), "-sample", fmt.Sprint(cfg.sample), "-mpc", fmt.Sprint(cfg.mpc),
		"-metrics=" + fmt.Sprint(cfg.metrics), "-log=" + fmt.Sprint(cfg.log), "-log-handler", cfg.logHandler,
		"-timeout", cfg.timeout.String(), "-settle", cfg.settle.String(), "-cpuprofile", cfg.cpuprofile,
		"-ab=" + fmt.Sprint(cfg.ab), "-ab-block", fmt.Sprint(cfg.abBlock), "-ab-pairs", fmt.Sprint(cfg.abPairs)}
}

func printMachine(w io.Writer, cfg config) {
	fmt.Fprintf(w, "machine: nproc=%d, CPU %q, %s/%s, %s, load average %s\n",
		runtime.NumCPU(), procstat.CPUModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), procstat.LoadAvg())
	fmt.Fprintf(w, "N=%d messages of %d bytes payload, %d goroutines, %d smtp-sinks, messages-per-connection %d, sample every %d, metrics %v, log %v (%s), pinned %v\n\n",
		cfg.n, cfg.size, cfg.parallel, cfg.sinks, cfg.mpc, cfg.sample, cfg.metrics, cfg.log, cfg.logHandler, cfg.pin)
}
