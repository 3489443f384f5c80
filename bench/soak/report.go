package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/stats"
)

// Targets of the soak (the issue's): memory after warm-up grows at most
// this much, and observability costs at most this much throughput.
const (
	maxGrowth = 0.10
	maxCost   = 0.05
)

// printCurve prints every sample as a row of a Markdown table; msg/s is
// the throughput since the previous sample.
func printCurve(w io.Writer, cfg config, o outcome) {
	fmt.Fprintln(w, "| messages | time s | msg/s (window) | RSS MiB | anon / file MiB | heap live MiB | heap objects MiB | Go total MiB | GC cycles | goroutines | open fds | scrape ms |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	rows := append(append([]point{o.w.Baseline}, o.w.Points...), o.w.End, o.w.Closed)
	if o.w.Settled != nil {
		rows = append(rows, *o.w.Settled)
	}
	var prev point // the run starts at 0 messages, 0 s
	for _, p := range rows {
		name, t, rate := fmt.Sprint(p.Done), fmt.Sprintf("%.1f", time.Duration(p.ElapsedNS).Seconds()), "—"
		switch p.Label {
		case "baseline":
			name, t = "before the engine", "—"
		case "closed":
			name, t = "after Close + GC", "—"
		case "settled":
			name, t = fmt.Sprintf("after Close, %.1f s later", time.Duration(p.ElapsedNS).Seconds()), "—"
		default:
			if p.ElapsedNS > prev.ElapsedNS {
				rate = fmt.Sprintf("%.0f", float64(p.Done-prev.Done)/time.Duration(p.ElapsedNS-prev.ElapsedNS).Seconds())
			}
			if p.Label == "end" {
				name += " (end)"
			}
			prev = p
		}
		scrape := "—"
		if p.ScrapeNS > 0 {
			scrape = fmt.Sprintf("%.2f", float64(p.ScrapeNS)/1e6)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.1f | %.1f / %.1f | %.1f | %.1f | %.1f | %d | %d | %d | %s |\n", name, t, rate,
			kib(p.RSSKB), kib(p.AnonKB), kib(p.FileKB), mib(p.HeapLive), mib(p.HeapObj), mib(p.GoTotal), p.GCs, p.Goroutines, p.FDs, scrape)
	}
	fmt.Fprintln(w, "\nOnly the row after Close is taken after runtime.GC(); the others are as the run found the heap.")
}

// verdict is the soak judged against its targets.
type verdict struct {
	warm, end    point   // the first sample after warm-up, the last
	rssGrowth    float64 // (end − warm) / warm, VmRSS
	rssMax       int64   // the highest VmRSS from warm-up on, kB
	heapGrowth   float64 // the same for the live heap
	heapSlope    float64 // least-squares slope of the live heap from warm-up on, bytes per 10,000 messages
	after        point   // the last sample after Close (settled if taken)
	goroutinesOK bool
	fdsOK        bool
	memoryOK     bool
	rates        []float64 // msg/s of each window from warm-up on
}

// judge measures growth from the first sample at or after the warm-up
// (cfg.warmup of the messages) to the end of the deliveries.
func judge(cfg config, r workerResult) verdict {
	v := verdict{end: r.End, after: r.Closed}
	if r.Settled != nil {
		v.after = *r.Settled
	}
	run := append(slices.Clone(r.Points), r.End)
	i := slices.IndexFunc(run, func(p point) bool { return float64(p.Done) >= cfg.warmup*float64(cfg.n) })
	v.warm = run[i] // End qualifies, so i ≥ 0
	var xs, ys []float64
	for j, p := range run[i:] {
		v.rssMax = max(v.rssMax, p.RSSKB)
		xs, ys = append(xs, float64(p.Done)), append(ys, float64(p.HeapLive))
		if j > 0 && p.ElapsedNS > run[i+j-1].ElapsedNS {
			q := run[i+j-1]
			v.rates = append(v.rates, float64(p.Done-q.Done)/time.Duration(p.ElapsedNS-q.ElapsedNS).Seconds())
		}
	}
	v.rssGrowth = float64(v.end.RSSKB-v.warm.RSSKB) / float64(v.warm.RSSKB)
	v.heapGrowth = (float64(v.end.HeapLive) - float64(v.warm.HeapLive)) / float64(v.warm.HeapLive)
	v.heapSlope = slope(xs, ys) * 10000
	v.memoryOK = v.rssGrowth <= maxGrowth
	v.goroutinesOK = v.after.Goroutines <= r.Baseline.Goroutines
	v.fdsOK = v.after.FDs <= r.Baseline.FDs
	return v
}

// slope is the least-squares slope of ys over xs (0 with fewer than two
// distinct xs).
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// printVerdict prints the targets, met or not, and what the run did.
func printVerdict(w io.Writer, cfg config, o outcome) {
	v, r := judge(cfg, o.w), o.w
	fmt.Fprintf(w, "\nmemory: VmRSS %.1f MiB at %d messages (end of warm-up), %.1f MiB at the end: %+.1f %% (target ≤ %.0f %%: %s); highest from warm-up on %.1f MiB (%+.1f %%)\n",
		kib(v.warm.RSSKB), v.warm.Done, kib(v.end.RSSKB), 100*v.rssGrowth, 100*maxGrowth, met(v.memoryOK), kib(v.rssMax), 100*float64(v.rssMax-v.warm.RSSKB)/float64(v.warm.RSSKB))
	fmt.Fprintf(w, "        of which anonymous memory %.1f → %.1f MiB (%+.1f %%), file pages (the executable) %.1f → %.1f MiB\n",
		kib(v.warm.AnonKB), kib(v.end.AnonKB), 100*float64(v.end.AnonKB-v.warm.AnonKB)/float64(v.warm.AnonKB), kib(v.warm.FileKB), kib(v.end.FileKB))
	fmt.Fprintf(w, "heap:   live %.2f MiB → %.2f MiB (%+.1f %%), trend from warm-up on %+.1f KiB per 10,000 messages\n",
		mib(v.warm.HeapLive), mib(v.end.HeapLive), 100*v.heapGrowth, v.heapSlope/1024)
	fmt.Fprintf(w, "goroutines: %d before the engine, %d at the end of the run, %d after Close (target: back to the baseline: %s)\n",
		r.Baseline.Goroutines, r.End.Goroutines, v.after.Goroutines, met(v.goroutinesOK))
	fmt.Fprintf(w, "open fds:   %d before the engine, %d at the end of the run, %d after Close (target: back to the baseline: %s)\n",
		r.Baseline.FDs, r.End.FDs, v.after.FDs, met(v.fdsOK))
	if r.Settled != nil {
		fmt.Fprintf(w, "            (right after Close: %d goroutines, %d fds; the figures above are %.1f s later)\n",
			r.Closed.Goroutines, r.Closed.FDs, time.Duration(r.Settled.ElapsedNS).Seconds())
	}
	rs := "—"
	if len(v.rates) > 0 {
		rs = fmt.Sprintf("%.0f (%.0f–%.0f)", stats.Median(v.rates), slices.Min(v.rates), slices.Max(v.rates))
	}
	fmt.Fprintf(w, "throughput: %.0f msg/s over the run (%.1f s); windows from warm-up on, median (range): %s msg/s; engine CPU %.0f ms per 1000 messages\n",
		o.rate(), time.Duration(r.ElapsedNS).Seconds(), rs, float64(o.cpu.Milliseconds())*1000/float64(cfg.n))
	var sess []string
	total := 0
	for i, c := range o.sinks {
		sess = append(sess, fmt.Sprintf("sink%d %d sessions/%d messages", i+1, c.Sessions, c.Messages))
		total += c.Sessions
	}
	fmt.Fprintf(w, "sinks: %s (%d connections in all)\n", strings.Join(sess, ", "), total)
	if cfg.metrics {
		fmt.Fprintf(w, "metrics: postern_deliveries_total{outcome=\"delivered\"} = %.0f, postern_connections_opened_total = %.0f\n",
			r.MetricDelivered, r.MetricConnsOpen)
	}
	if cfg.log {
		if cfg.logHandler == "drop" {
			fmt.Fprintf(w, "log: %d records taken by the drop handler (none formatted)\n", r.LogLines)
		} else {
			fmt.Fprintf(w, "log: %d JSON lines, %.0f bytes each on average\n", r.LogLines, float64(r.LogBytes)/float64(max(r.LogLines, 1)))
		}
	}
}

// variant is one configuration of -compare.
type variant struct {
	name         string
	metrics, log bool
	logHandler   string // with log: json or drop
}

// parseVariants reads -variants: names among plain, metrics, log,
// metrics+log, record and metrics+record, at least two. A "record"
// variant logs through a handler that drops every record unformatted:
// the engine's own part of the log line, without the JSON formatting.
func parseVariants(list string) ([]variant, error) {
	known := map[string]variant{"plain": {"plain", false, false, ""}, "metrics": {"metrics", true, false, ""},
		"log": {"log", false, true, "json"}, "metrics+log": {"metrics+log", true, true, "json"},
		"record": {"record", false, true, "drop"}, "metrics+record": {"metrics+record", true, true, "drop"}}
	var vs []variant
	for name := range strings.SplitSeq(list, ",") {
		v, ok := known[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("-variants: %q is none of plain, metrics, log, metrics+log, record, metrics+record", name)
		}
		vs = append(vs, v)
	}
	if len(vs) < 2 {
		return nil, fmt.Errorf("-variants %q: name at least two", list)
	}
	return vs, nil
}

// compare runs cfg.compareRuns soaks of cfg.compareN messages for each
// variant, reversing the order from run to run so that no variant always
// runs first, and prints the medians and the cost of each variant against
// the first.
func compare(ctx context.Context, cfg config, w io.Writer) error {
	vs, err := parseVariants(cfg.variants)
	if err != nil {
		return err
	}
	c := cfg
	c.n = cfg.compareN
	c.sample = min(cfg.sample, c.n)
	printMachine(w, c)
	res := map[string][]outcome{}
	for r := range cfg.compareRuns {
		order := slices.Clone(vs)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			c.metrics, c.log = v.metrics, v.log
			if v.log {
				c.logHandler = v.logHandler
			}
			o, err := runOnce(ctx, c, os.Stderr)
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", r+1, v.name, err)
			}
			fmt.Fprintf(w, "run %d %-12s %6.0f msg/s  %6.2f s  CPU %4.0f ms per 1000 msgs  RSS at end %5.1f MiB\n", r+1, v.name,
				o.rate(), time.Duration(o.w.ElapsedNS).Seconds(), cpuPer1000(o, c.n), kib(o.w.End.RSSKB))
			res[v.name] = append(res[v.name], o)
		}
	}
	fmt.Fprintf(w, "\nload average at end %s\n\n", procstat.LoadAvg())
	printComparison(w, c.n, vs, res)
	return nil
}

func cpuPer1000(o outcome, n int) float64 { return float64(o.cpu.Milliseconds()) * 1000 / float64(n) }

// printComparison prints the medians of each variant and the cost of the
// others against the first, of the medians and run by run.
func printComparison(w io.Writer, n int, vs []variant, res map[string][]outcome) {
	fmt.Fprintln(w, "| variant | msg/s, median (range) | CPU ms per 1000 msgs, median (range) | RSS at end MiB, median |")
	fmt.Fprintln(w, "|---|---|---|---|")
	variant := func(name string) (rates, cpus, rss []float64) {
		for _, o := range res[name] {
			rates, cpus, rss = append(rates, o.rate()), append(cpus, cpuPer1000(o, n)), append(rss, kib(o.w.End.RSSKB))
		}
		return
	}
	for _, v := range vs {
		rates, cpus, rss := variant(v.name)
		fmt.Fprintf(w, "| %s | %.0f (%.0f–%.0f) | %.0f (%.0f–%.0f) | %.1f |\n", v.name, stats.Median(rates), slices.Min(rates), slices.Max(rates),
			stats.Median(cpus), slices.Min(cpus), slices.Max(cpus), stats.Median(rss))
	}
	fmt.Fprintln(w)
	br, bc, _ := variant(vs[0].name)
	for _, v := range vs[1:] {
		or, oc, _ := variant(v.name)
		cost := 1 - stats.Median(or)/stats.Median(br)
		var per []string
		for i := range min(len(br), len(or)) {
			per = append(per, fmt.Sprintf("%+.1f %%", -100*(1-or[i]/br[i])))
		}
		fmt.Fprintf(w, "%s vs %s: throughput %+.1f %% of the medians (cost %.1f %%, target ≤ %.0f %%: %s); run by run %s; CPU per message %+.1f %% of the medians\n",
			v.name, vs[0].name, -100*cost, 100*cost, 100*maxCost, met(cost <= maxCost), strings.Join(per, ", "), 100*(stats.Median(oc)/stats.Median(bc)-1))
	}
}
