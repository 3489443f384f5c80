package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/postern-mta/postern/bench/internal/postfixproc"
	"github.com/postern-mta/postern/bench/internal/sinkproc"
)

// measurePostfix relays cfg.n messages through a throwaway Postfix instance
// to a fresh sink (testbed.md section 1f, "delivery only"): the messages are
// injected with smtp-source while the smtp transport is deferred, then the
// transport is released and the queue flushed; the time from the release to
// the last "status=sent" line is the delivery time. With a caFile Postfix
// delivers with smtp_tls_security_level = encrypt (see postfixproc.Start).
func measurePostfix(ctx context.Context, cfg config, tools map[string]string, tmp string, run int, sp sinkproc.Spec, caFile string) (sample, error) {
	sink, err := sinkproc.Start(ctx, sp, tmp)
	if err != nil {
		return sample{}, err
	}
	defer sink.Stop()
	dir := fmt.Sprintf("pf%d", run)
	if caFile != "" {
		dir += "-tls"
	}
	pf, err := postfixproc.Start(ctx, postfixproc.Options{Dir: filepath.Join(tmp, dir), Relay: sink.Addr, Tools: tools, Defer: true, CAFile: caFile})
	if err != nil {
		return sample{}, err
	}
	defer pf.Stop()

	// Injection (not timed in the result; printed for context).
	injStart := time.Now()
	src := exec.CommandContext(ctx, tools["smtp-source"], "-s", fmt.Sprint(cfg.parallel), "-m", fmt.Sprint(cfg.n),
		"-l", fmt.Sprint(cfg.size), "-M", "bench.sender.test", "-f", "bench@sender.test", "-t", "rcpt@dest.test", pf.Addr)
	src.SysProcAttr = childAttr()
	if out, err := src.CombinedOutput(); err != nil {
		return sample{}, fmt.Errorf("smtp-source into Postfix: %w: %s", err, out)
	}
	// Wait until every message sits in the deferred queue.
	for {
		d, busy := pf.QueueCounts()
		if d == cfg.n && busy == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return sample{}, fmt.Errorf("postfix queue: %d deferred, %d in incoming/active/maildrop: %w", d, busy, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	inject := time.Since(injStart)
	if c := sink.Counts(); c.Messages != 0 || c.Sessions != 1 {
		return sample{}, fmt.Errorf("the sink saw %d sessions and %d messages during injection", c.Sessions-1, c.Messages)
	}

	// Release the transport (postfix reload takes seconds: not timed; the
	// deferred messages wait for their retry time or a flush), then time
	// from the flush to the last "status=sent".
	if err := pf.Postconf(ctx, "-e", "defer_transports="); err != nil {
		return sample{}, err
	}
	if err := pf.Cmd(ctx, tools["postfix"], "-c", pf.Etc(), "reload"); err != nil {
		return sample{}, err
	}
	time.Sleep(500 * time.Millisecond) // let the new qmgr settle
	if sent, err := pf.SentCount(); err != nil || sent != 0 {
		return sample{}, fmt.Errorf("postfix delivered %d messages before the flush (%v)", sent, err)
	}
	sampler := pf.SampleMem(250 * time.Millisecond)
	start := time.Now()
	if err := pf.Cmd(ctx, tools["postqueue"], "-c", pf.Etc(), "-f"); err != nil {
		return sample{}, err
	}
	for {
		sent, err := pf.SentCount()
		if err != nil {
			return sample{}, err
		}
		if sent >= cfg.n {
			break
		}
		select {
		case <-ctx.Done():
			return sample{}, fmt.Errorf("postfix delivered %d of %d: %w\nlast lines of its log:\n%s", sent, cfg.n, ctx.Err(), pf.LogTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
	mem := sampler.Stop()
	s := sample{elapsed: time.Since(start), rssKB: mem.SumHWMKB, pssKB: mem.PeakPSSKB, cpu: mem.CPU, extra: fmt.Sprintf("(injection %.2fs)", inject.Seconds())}

	// Stopping Postfix closes its cached connections, so that the sink
	// counts every session.
	pf.Stop()
	s.Counts, err = sink.Settle(ctx, cfg.n)
	s.sinkCPU = sink.CPU()
	return s, err
}
