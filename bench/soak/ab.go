package main

// -ab: the cost of observability measured within one engine process, in
// alternating blocks, so that the drift of a shared machine (runs of the
// same variant spread over ±20 % on the development VM) falls on both
// sides of every comparison.

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/sinkproc"
	"github.com/postern-mta/postern/bench/internal/stats"
	"github.com/postern-mta/postern/engine"
)

// abBlock is one block of messages through one engine: its wall time and
// the process's CPU time (user and system, getrusage) over it.
type abBlock struct {
	WallNS int64 `json:"wall_ns"`
	CPUNS  int64 `json:"cpu_ns"`
}

// abResult is what the engine process prints in -ab mode: the blocks of
// the plain engine (A) and of the variant's (B), pair by pair.
type abResult struct {
	Procs      int       `json:"procs"`
	A          []abBlock `json:"a"`
	B          []abBlock `json:"b"`
	Failed     int64     `json:"failed"`
	FirstError string    `json:"first_error,omitempty"`
	LogLines   int64     `json:"log_lines"`
}

// abTotal is the number of messages an -ab run delivers: a warm-up pair
// and -ab-pairs pairs of two blocks.
func abTotal(cfg config) int { return (cfg.abPairs + 1) * 2 * cfg.abBlock }

// abCompare runs one -ab engine process and prints the cost of the
// variant against the plain engine, pair by pair.
func abCompare(ctx context.Context, cfg config, w io.Writer) error {
	cfg, name, err := abConfig(cfg)
	if err != nil {
		return err
	}
	printMachine(w, cfg)
	fmt.Fprintf(w, "-ab: %d pairs of blocks of %d messages (after one warm-up pair), A = plain, B = %s, in one engine process, the order alternating pair by pair\n\n",
		cfg.abPairs, cfg.abBlock, name)
	res, cpu, sinks, err := runAB(ctx, cfg, os.Stderr)
	if err != nil {
		return err
	}
	printAB(w, cfg, name, res)
	total := 0
	for _, c := range sinks {
		total += c.Messages
	}
	fmt.Fprintf(w, "engine process: GOMAXPROCS %d, CPU %.1f s in all; sinks counted %d messages; log records %d; load average at end %s\n",
		res.Procs, cpu.Seconds(), total, res.LogLines, procstat.LoadAvg())
	return nil
}

// abConfig sets cfg's metrics and log from -ab-variant and returns the
// variant's name.
func abConfig(cfg config) (config, string, error) {
	vs, err := parseVariants("plain," + cfg.abVariant)
	if err != nil {
		return cfg, "", fmt.Errorf("-ab-variant: %w", err)
	}
	v := vs[1]
	if v.name == "plain" {
		return cfg, "", fmt.Errorf("-ab-variant plain: name a variant with metrics or a log")
	}
	cfg.metrics, cfg.log = v.metrics, v.log
	if v.log {
		cfg.logHandler = v.logHandler
	}
	return cfg, v.name, nil
}

// runAB runs the -ab engine process against fresh sinks and checks that
// every message was delivered and counted.
func runAB(ctx context.Context, cfg config, progress io.Writer) (abResult, time.Duration, []sinkproc.Counts, error) {
	var res abResult
	n := abTotal(cfg)
	cpu, sinks, err := runChild(ctx, cfg, n, progress, &res, func() error {
		if res.Failed > 0 {
			return fmt.Errorf("%d of %d messages not delivered (first: %s)", res.Failed, n, res.FirstError)
		}
		return nil
	})
	return res, cpu, sinks, err
}

// printAB prints the per-message wall and CPU time of each side and the
// cost of B against A: the median of the pairs' ratios, and their
// quartiles.
func printAB(w io.Writer, cfg config, name string, r abResult) {
	per := func(ns int64) float64 { return float64(ns) / float64(cfg.abBlock) / 1e3 } // µs per message
	var wallA, wallB, cpuA, cpuB, wallRatio, cpuRatio []float64
	for i := range min(len(r.A), len(r.B)) {
		a, b := r.A[i], r.B[i]
		wallA, wallB = append(wallA, per(a.WallNS)), append(wallB, per(b.WallNS))
		cpuA, cpuB = append(cpuA, per(a.CPUNS)), append(cpuB, per(b.CPUNS))
		wallRatio = append(wallRatio, float64(b.WallNS)/float64(a.WallNS))
		cpuRatio = append(cpuRatio, float64(b.CPUNS)/float64(max(a.CPUNS, 1)))
	}
	fmt.Fprintln(w, "| side | msg/s, median (range) | wall µs per message, median | CPU µs per message, median (range) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, s := range []struct {
		name      string
		wall, cpu []float64
	}{{"A plain", wallA, cpuA}, {"B " + name, wallB, cpuB}} {
		rates := make([]float64, len(s.wall))
		for i, us := range s.wall {
			rates[i] = 1e6 / us
		}
		fmt.Fprintf(w, "| %s | %s | %.1f | %s |\n", s.name, stats.RangeText(rates, "%.0f"), stats.Median(s.wall), stats.RangeText(s.cpu, "%.1f"))
	}
	slower := stats.Median(wallRatio) // B's time per message over A's
	cost := 1 - 1/slower              // the throughput B loses
	fmt.Fprintf(w, "\n%s vs plain, %d pairs: time per message %+.1f %% (median of the pairs' ratios; quartiles %+.1f %%, %+.1f %%): cost %.1f %% of the throughput, target ≤ %.0f %%: %s\n",
		name, len(wallRatio), 100*(slower-1), 100*(quantile(wallRatio, 0.25)-1), 100*(quantile(wallRatio, 0.75)-1), 100*cost, 100*maxCost, met(cost <= maxCost))
	fmt.Fprintf(w, "%s vs plain: CPU per message %+.1f %% (median of the pairs' ratios; quartiles %+.1f %%, %+.1f %%), %+.2f µs per message (difference of the medians)\n",
		name, 100*(stats.Median(cpuRatio)-1), 100*(quantile(cpuRatio, 0.25)-1), 100*(quantile(cpuRatio, 0.75)-1), stats.Median(cpuB)-stats.Median(cpuA))
}

// quantile is the q-quantile of v (nearest rank), v unchanged.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// abWorker is the engine process of -ab: two engines on the same policy
// and sinks, A without metrics or log, B with the variant's; blocks of
// -ab-block messages go through one and then the other, A first in even
// pairs and B first in odd ones.
func abWorker(cfg config) (*abResult, error) {
	sinks, policy, cleanup, err := setUp(cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	a, err := engine.LoadFile(policy, engine.Options{})
	if err != nil {
		return nil, fmt.Errorf("load the soak policy: %w", err)
	}
	defer a.Close()
	logw := &countWriter{}
	opts, _, err := observed(cfg, logw)
	if err != nil {
		return nil, err
	}
	b, err := engine.LoadFile(policy, opts)
	if err != nil {
		return nil, fmt.Errorf("load the soak policy: %w", err)
	}
	defer b.Close()
	res := &abResult{Procs: runtime.GOMAXPROCS(0)}
	d := &abDeliverer{cfg: cfg, sinks: len(sinks), body: sinkproc.Message(cfg.size, "postern soak benchmark"), res: res}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	for p := -1; p < cfg.abPairs; p++ { // pair -1 warms both engines up and is not kept
		first, second := a, b
		if p%2 != 0 {
			first, second = b, a
		}
		x, err := d.block(ctx, first)
		if err != nil {
			return nil, err
		}
		y, err := d.block(ctx, second)
		if err != nil {
			return nil, err
		}
		if p < 0 {
			continue
		}
		if first == b {
			x, y = y, x
		}
		res.A, res.B = append(res.A, x), append(res.B, y)
		fmt.Fprintf(os.Stderr, "soak -ab: pair %d/%d  A %.1f µs  B %.1f µs per message\n", p+1, cfg.abPairs,
			float64(x.WallNS)/float64(cfg.abBlock)/1e3, float64(y.WallNS)/float64(cfg.abBlock)/1e3)
	}
	res.LogLines = logw.lines.Load()
	return res, nil
}

// abDeliverer delivers the blocks of an -ab run, numbering messages
// across them.
type abDeliverer struct {
	cfg   config
	sinks int
	body  string
	next  int64 // messages handed out before this block
	res   *abResult
	once  sync.Once
}

// block delivers -ab-block messages through e from -parallel goroutines
// and measures the block.
func (d *abDeliverer) block(ctx context.Context, e *engine.Engine) (abBlock, error) {
	var (
		next, failed atomic.Int64
		wg           sync.WaitGroup
	)
	base, n := d.next, int64(d.cfg.abBlock)
	d.next += n
	cpu0, err := processCPU()
	if err != nil {
		return abBlock{}, err
	}
	start := time.Now()
	for range d.cfg.parallel {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				if f := deliverNumbered(ctx, e, base+i, d.sinks, d.body); f != "" {
					failed.Add(1)
					d.once.Do(func() { d.res.FirstError = f })
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	cpu1, err := processCPU()
	if err != nil {
		return abBlock{}, err
	}
	d.res.Failed += failed.Load()
	return abBlock{WallNS: int64(wall), CPUNS: int64(cpu1 - cpu0)}, nil
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
