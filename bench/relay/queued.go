package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/postern-mta/postern/bench/internal/procstat"
)

// point is the relay's memory after one step of -queued.
type point struct {
	queued             int
	rssKB, anonKB, hwm int64
	heapGoal           float64 // go_memstats_next_gc_bytes: the live heap after the last GC × (1 + GOGC/100)
	goroutines         float64
	rate               float64 // msg/s of the step's intake
}

// runQueued queues cfg.queued messages into the relay with its
// destination down, cfg.step at a time, and samples its memory after each
// step, once every message of the step is deferred; then restarts it on
// the full spool (the start-up scan) and samples it again.
func runQueued(ctx context.Context, cfg config, out io.Writer) error {
	b, err := setup(ctx, cfg, out, false)
	if err != nil {
		return err
	}
	defer b.close()
	fmt.Fprintln(out, b.machine(ctx))
	fmt.Fprintf(out, "spool in %s; load average at start %s\n", b.tmp, procstat.LoadAvg())
	fmt.Fprintf(out, "%d messages of %d bytes queued with the destination down, smtp-source -d -s %d, a sample every %d\n\n",
		cfg.queued, cfg.size, cfg.conns, cfg.step)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(1, cfg.queued/cfg.step))*b.cfg.timeout)
	defer cancel()
	dir, err := b.dirFor("relay-queued")
	if err != nil {
		return err
	}
	dest, err := freeAddr()
	if err != nil {
		return err
	}
	opts := startOpts{dir: dir, dest: dest, deferred: true, maxQueue: 2 * cfg.queued}
	inst, err := startRelay(ctx, b, opts)
	if err != nil {
		return err
	}
	r := inst.(*relayInst)
	defer func() { r.stop() }()
	sample := func(queued int, rate float64) (point, error) {
		ms, err := r.metricsNow(ctx)
		if err != nil {
			return point{}, err
		}
		return point{queued: queued, rssKB: procstat.StatusKB(r.pid, "VmRSS:"), anonKB: procstat.StatusKB(r.pid, "RssAnon:"),
			hwm: procstat.StatusKB(r.pid, "VmHWM:"), heapGoal: ms.sum("go_memstats_next_gc_bytes"), goroutines: ms.sum("go_goroutines"), rate: rate}, nil
	}
	base, err := sample(0, 0)
	if err != nil {
		return err
	}
	points := []point{base}
	for done := 0; done < cfg.queued; {
		k := min(cfg.step, cfg.queued-done)
		t := time.Now()
		if err := b.load(ctx, r.smtpAddr(), k); err != nil {
			return err
		}
		el := time.Since(t)
		done += k
		if err := r.queued(ctx, done); err != nil {
			return err
		}
		p, err := sample(done, float64(k)/el.Seconds())
		if err != nil {
			return err
		}
		points = append(points, p)
		fmt.Fprintf(out, "queued %7d: RSS %6.1f MiB (anon %6.1f), peak %6.1f MiB, heap goal %6.1f MiB, %4.0f goroutines, step intake %5.0f msg/s\n",
			p.queued, mib(p.rssKB), mib(p.anonKB), mib(p.hwm), p.heapGoal/(1<<20), p.goroutines, p.rate)
	}

	// Restart on the full spool: the scan, then every message deferred
	// again (the destination is still down).
	r.stop()
	t := time.Now()
	inst, err = startRelay(ctx, b, opts)
	if err != nil {
		return err
	}
	r = inst.(*relayInst)
	listening := time.Since(t)
	if err := waitScheduled(ctx, r, cfg.queued); err != nil {
		return err
	}
	settled := time.Since(t)
	after, err := sample(cfg.queued, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nrestart on %d queued messages: listening after %.2fs, all scheduled after %.2fs; RSS %.1f MiB (anon %.1f), peak %.1f MiB, heap goal %.1f MiB, %.0f goroutines\n",
		cfg.queued, listening.Seconds(), settled.Seconds(), mib(after.rssKB), mib(after.anonKB), mib(after.hwm), after.heapGoal/(1<<20), after.goroutines)
	fmt.Fprintf(out, "load average at end %s\n\n", procstat.LoadAvg())

	fmt.Fprintln(out, "| queued | RSS MiB | RSS anon MiB | peak RSS MiB | Go heap goal MiB | goroutines | step intake msg/s |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	peak := after.hwm
	for _, p := range points {
		fmt.Fprintf(out, "| %d | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f |\n", p.queued, mib(p.rssKB), mib(p.anonKB), mib(p.hwm), p.heapGoal/(1<<20), p.goroutines, p.rate)
		peak = max(peak, p.hwm)
	}
	fmt.Fprintf(out, "| %d after a restart | %.1f | %.1f | %.1f | %.1f | %.0f | — |\n\n", cfg.queued, mib(after.rssKB), mib(after.anonKB), mib(after.hwm), after.heapGoal/(1<<20), after.goroutines)
	verdict(out, fmt.Sprintf("memory ≤ %d MiB with %d queued", targetQueuedM, cfg.queued), mib(peak) <= targetQueuedM,
		fmt.Sprintf("peak RSS %.1f MiB over the run and after the restart", mib(peak)))
	return nil
}
