package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/stats"
)

// Targets of the issue.
const (
	targetIntake  = 1000.0 // msg/s, the relay's intake
	targetE2E     = 2.0    // × Postfix's end-to-end msg/s
	targetCPU     = 1 / 3.0
	targetSyncs   = 2.2 // sync calls per message
	targetQueuedM = 100 // MiB of RSS with 100k messages queued
)

// report is what run measured.
type report struct {
	results map[string][]result // by system, one per run
	syncs   map[string]syncs    // by system; absent without -strace-n
}

// run measures the systems -runs times, alternating their order, then
// counts their sync calls, and prints the table and the verdicts.
func run(ctx context.Context, cfg config, out io.Writer) (*report, error) {
	systems := []system{relaySystem, postfixSystem}
	if cfg.only != "" {
		systems = slices.DeleteFunc(systems, func(s system) bool { return s.name != cfg.only })
	}
	b, err := setup(ctx, cfg, out, cfg.only != "relay")
	if err != nil {
		return nil, err
	}
	defer b.close()
	fmt.Fprintln(out, b.machine(ctx))
	fmt.Fprintf(out, "spools and queues in %s; load average at start %s\n", b.tmp, procstat.LoadAvg())
	fmt.Fprintf(out, "N=%d messages of %d bytes, smtp-source -d -s %d (connections kept), %d run(s), strace run of %d messages\n\n",
		cfg.n, cfg.size, cfg.conns, cfg.runs, cfg.straceN)

	rep := &report{results: map[string][]result{}, syncs: map[string]syncs{}}
	for r := 1; r <= cfg.runs; r++ {
		order := slices.Clone(systems)
		if r%2 == 0 {
			slices.Reverse(order)
		}
		for _, sys := range order {
			res, err := b.measure(ctx, sys)
			if err != nil {
				return nil, fmt.Errorf("run %d: %w", r, err)
			}
			if !cfg.quiet {
				printRun(out, r, sys.name, cfg.n, res)
			}
			rep.results[sys.name] = append(rep.results[sys.name], res)
		}
	}
	if cfg.straceN > 0 {
		for _, sys := range systems {
			s, err := b.measureSyncs(ctx, sys, cfg.straceN)
			if err != nil {
				return nil, fmt.Errorf("%s under strace: %w", sys.name, err)
			}
			rep.syncs[sys.name] = s
			if !cfg.quiet {
				fmt.Fprintf(out, "strace %-7s %d messages end to end: %s\n", sys.name, s.n, callsText(s))
			}
		}
	}
	fmt.Fprintf(out, "\nload average at end %s\n\n", procstat.LoadAvg())
	printTable(out, cfg, systems, rep)
	printVerdicts(out, cfg, rep)
	return rep, nil
}

func callsText(s syncs) string {
	var parts []string
	for _, c := range syncCalls {
		parts = append(parts, fmt.Sprintf("%s %d", c, s.calls[c]))
	}
	var paths []string
	for _, k := range slices.Sorted(maps.Keys(s.byPath)) {
		paths = append(paths, fmt.Sprintf("%s %d", k, s.byPath[k]))
	}
	return fmt.Sprintf("%s; %.2f per message; by file: %s", strings.Join(parts, ", "), float64(s.total())/float64(s.n), strings.Join(paths, ", "))
}

// printRun prints one run of one system.
func printRun(out io.Writer, run int, name string, n int, r result) {
	fmt.Fprintf(out, "run %d %-7s intake %6.0f msg/s (%.1fs, CPU %s)  delivery only %6.0f msg/s (%.1fs, CPU %s)  sink %d sessions/%d msgs\n",
		run, name, float64(n)/r.intake.Seconds(), r.intake.Seconds(), r.intakeCPU,
		float64(n)/r.drain.Seconds(), r.drain.Seconds(), r.drainCPU, r.drained.Sessions, r.drained.Messages)
	fmt.Fprintf(out, "      %-7s end to end %6.0f msg/s (%.1fs, CPU %s)  sink %d sessions/%d msgs\n",
		name, float64(n)/r.e2e.Seconds(), r.e2e.Seconds(), r.e2eCPU, r.delivered.Sessions, r.delivered.Messages)
	fmt.Fprintf(out, "      %-7s memory, end to end / queued and released: RSS at one instant %.1f / %.1f MiB, PSS %.1f / %.1f MiB, sum of VmHWM %.1f / %.1f MiB\n",
		name, mib(r.e2ePeak.PeakRSSKB), mib(r.intakePeak.PeakRSSKB), mib(r.e2ePeak.PeakPSSKB), mib(r.intakePeak.PeakPSSKB),
		mib(r.e2ePeak.SumHWMKB), mib(r.intakePeak.SumHWMKB))
	if r.disk != nil {
		fmt.Fprintf(out, "      %-7s disk over the e2e window: %d flushes, %d write requests (idle background scaled to the window: %d, %d)",
			name, r.disk.flushes, r.disk.writes, r.diskBG.flushes, r.diskBG.writes)
	}
	if r.spoolSyncs >= 0 {
		fmt.Fprintf(out, "; spool fsyncs (metrics) %.0f, %.2f per message", r.spoolSyncs, r.spoolSyncs/float64(n))
	}
	fmt.Fprintln(out)
	if r.note != "" {
		fmt.Fprintf(out, "      %-7s NOTE: %s\n", name, r.note)
	}
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// column is one figure of a system over its runs.
func column(rs []result, f func(result) float64) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return v
}

// Figures of a run, per message or per second.
func intakeRate(n int) func(result) float64 {
	return func(r result) float64 { return float64(n) / r.intake.Seconds() }
}
func drainRate(n int) func(result) float64 {
	return func(r result) float64 { return float64(n) / r.drain.Seconds() }
}
func e2eRate(n int) func(result) float64 {
	return func(r result) float64 { return float64(n) / r.e2e.Seconds() }
}
func cpuPer1000(n int) func(result) float64 {
	return func(r result) float64 { return float64(r.e2eCPU.total().Milliseconds()) * 1000 / float64(n) }
}

// peakMiB is the largest RSS: of one process its VmHWM, of several the
// largest sum of their RSS at one instant.
func peakMiB(r result) float64 {
	if r.oneProcess {
		return mib(max(r.e2ePeak.SumHWMKB, r.intakePeak.SumHWMKB))
	}
	return mib(max(r.e2ePeak.PeakRSSKB, r.intakePeak.PeakRSSKB))
}
func peakPSS(r result) float64 { return mib(max(r.e2ePeak.PeakPSSKB, r.intakePeak.PeakPSSKB)) }

// printTable prints the Markdown table of medians (and ranges).
func printTable(out io.Writer, cfg config, systems []system, rep *report) {
	n := cfg.n
	perMsg := func(f func(r result) int64) func(result) float64 {
		return func(r result) float64 { return float64(f(r)) / float64(n) }
	}
	fmt.Fprintln(out, "| system | intake msg/s | delivery only msg/s | end to end msg/s | CPU ms per 1000 msgs (end to end) | peak RSS MiB | peak PSS MiB | sync calls/msg (strace) | flushes/msg | idle background flushes/msg | write requests/msg |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, sys := range systems {
		rs := rep.results[sys.name]
		syncText := "—"
		if s, ok := rep.syncs[sys.name]; ok {
			syncText = fmt.Sprintf("%.2f", float64(s.total())/float64(s.n))
		}
		flushes, bg, writes := "n/a", "n/a", "n/a"
		if len(rs) > 0 && rs[0].disk != nil {
			flushes = stats.RangeText(column(rs, perMsg(func(r result) int64 { return r.disk.flushes })), "%.2f")
			bg = stats.RangeText(column(rs, perMsg(func(r result) int64 { return r.diskBG.flushes })), "%.2f")
			writes = stats.RangeText(column(rs, perMsg(func(r result) int64 { return r.disk.writes })), "%.2f")
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sys.name,
			stats.RangeText(column(rs, intakeRate(n)), "%.0f"), stats.RangeText(column(rs, drainRate(n)), "%.0f"),
			stats.RangeText(column(rs, e2eRate(n)), "%.0f"), stats.RangeText(column(rs, cpuPer1000(n)), "%.0f"),
			stats.RangeText(column(rs, peakMiB), "%.1f"), stats.RangeText(column(rs, peakPSS), "%.1f"), syncText, flushes, bg, writes)
	}
	fmt.Fprintln(out)
}

// verdict is one target's line.
func verdict(out io.Writer, what string, met bool, detail string) {
	word := "met"
	if !met {
		word = "NOT MET"
	}
	fmt.Fprintf(out, "- %s: %s (%s)\n", what, word, detail)
}

// ratios is relay/Postfix of a figure, run by run (the runs of one
// round saw the same load).
func ratios(relay, pf []result, f func(result) float64) string {
	var parts []string
	for i := range min(len(relay), len(pf)) {
		parts = append(parts, fmt.Sprintf("%.2f×", f(relay[i])/f(pf[i])))
	}
	return strings.Join(parts, ", ")
}

// printVerdicts prints the targets the run can judge.
func printVerdicts(out io.Writer, cfg config, rep *report) {
	n := cfg.n
	relay, pf := rep.results["relay"], rep.results["postfix"]
	fmt.Fprintln(out, "targets:")
	if len(relay) > 0 {
		v := stats.Median(column(relay, intakeRate(n)))
		verdict(out, "intake ≥ 1000 msg/s", v >= targetIntake, fmt.Sprintf("relay %.0f msg/s, median", v))
	}
	if len(relay) > 0 && len(pf) > 0 {
		re, pe := stats.Median(column(relay, e2eRate(n))), stats.Median(column(pf, e2eRate(n)))
		verdict(out, "end to end ≥ 2× Postfix", re >= targetE2E*pe, fmt.Sprintf("relay %.0f msg/s, Postfix %.0f: %.2f× of the medians; run by run %s",
			re, pe, re/pe, ratios(relay, pf, e2eRate(n))))
		rc, pc := stats.Median(column(relay, cpuPer1000(n))), stats.Median(column(pf, cpuPer1000(n)))
		verdict(out, "CPU ≤ ⅓ of Postfix's", rc <= targetCPU*pc, fmt.Sprintf("relay %.0f ms per 1000 messages, Postfix %.0f: %.2f× of the medians; run by run %s",
			rc, pc, rc/pc, ratios(relay, pf, cpuPer1000(n))))
	}
	if s, ok := rep.syncs["relay"]; ok {
		v := float64(s.total()) / float64(s.n)
		verdict(out, "≤ 2.2 fsyncs per message", v <= targetSyncs, fmt.Sprintf("relay %.2f sync calls per message under strace, %s", v, callsText(s)))
	}
	fmt.Fprintf(out, "- memory ≤ %d MiB with 100k queued: measured by -queued 100000\n", targetQueuedM)
}
