// Command relay is the benchmark of `postern relay` against Postfix: the
// same load, through each in turn, into a fresh Postfix smtp-sink, with
// each system's queue on the same file system.
//
// The load is Postfix's smtp-source (SMTP, RFC 5321, without PIPELINING):
// -c sessions, each sending its share of -n messages of -size bytes over
// one connection (-d), one recipient each. smtp-source is the fair client:
// neither system has seen it before, and it is the same program for both.
//
// Per system and run it measures, each phase with a fresh spool or queue:
//
//   - intake: the destination is down (the relay's route points at a port
//     where nothing listens; Postfix has defer_transports = smtp), so
//     every message is only received, committed and deferred: the time
//     until smtp-source has its -n "250" replies;
//   - delivery only: then the sink comes up on that port and the queue is
//     released (the relay: `queue flush --all` through its control socket;
//     Postfix: defer_transports removed, `postfix reload`, then `postqueue
//     -f`), timed from the flush until the sink has counted -n messages;
//   - end to end: the sink is up from the start; the time from the first
//     message sent until the sink has counted -n messages, with the CPU
//     time of the whole system (the relay's process; the Postfix master and
//     every process it started, also those that exited), counted by a
//     cgroup v2 made for the phase (cpu.stat; without cgroup v2:
//     /proc/PID/stat of the processes alive at the boundaries), its peak
//     memory (the relay's VmHWM; for Postfix the largest sums of its
//     processes' RSS and PSS at one instant, sampled every 250 ms), and
//     the cache flushes and write requests the spool's block device
//     completed (/sys/block/DEV/stat).
//
// Separately, and never timed, each system runs -strace-n messages end to
// end under strace -f --seccomp-bpf -y (fsync, fdatasync, sync_file_range,
// syncfs): the sync calls per message, by call and by the file synced.
// With -queued N it queues N messages into the relay with the destination
// down, in steps of -step, samples the relay's memory after each step,
// then restarts it on the full spool and samples it again.
//
//	go run ./bench/relay [-n 20000] [-c 20] [-size 2048] [-runs 1] [-strace-n 5000] [-only relay|postfix]
//	go run ./bench/relay -queued 100000 [-step 10000]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	n, conns, size, runs int
	straceN              int    // messages of the strace'd runs; 0: none
	queued, step         int    // -queued mode
	dir                  string // where the spools and queues go
	postern              string // the postern binary; "": built from this module
	only                 string // relay or postfix; "": both
	relayRetry           string // the relay's queue.retry; "": its default
	timeout              time.Duration
	background           time.Duration // how long the disk's idle background is sampled before each end-to-end phase
	quiet                bool          // no per-phase lines (the test)
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.IntVar(&c.n, "n", 20000, "messages per measurement")
	fs.IntVar(&c.conns, "c", 20, "concurrent SMTP sessions of smtp-source (-s), each kept open for its messages (-d)")
	fs.IntVar(&c.size, "size", 2048, "message size in bytes (smtp-source -l)")
	fs.IntVar(&c.runs, "runs", 1, "runs of every measurement; the order of the systems alternates from run to run")
	fs.IntVar(&c.straceN, "strace-n", 5000, "messages of the untimed strace run of each system that counts sync calls (0: skip it)")
	fs.IntVar(&c.queued, "queued", 0, "instead: queue this many messages into the relay with the destination down and sample its memory every -step")
	fs.IntVar(&c.step, "step", 10000, "-queued: messages between two memory samples")
	fs.StringVar(&c.dir, "dir", "", "directory for the spools and queues (default: the system's temporary directory); it decides the disk")
	fs.StringVar(&c.postern, "postern", "", "the postern binary to measure (default: built from this module into the temporary directory)")
	fs.StringVar(&c.only, "only", "", "measure only relay or postfix")
	fs.StringVar(&c.relayRetry, "relay-retry", "", "the relay's queue.retry, e.g. 5s (default: the policy's default, 2m first): its first delay is how long a dead destination stays down")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Minute, "bound on each measurement")
	fs.DurationVar(&c.background, "background", time.Second, "how long the disk's counters are read with the system idle before each end-to-end phase, for the background column (0: not)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.n < 1 || c.conns < 1 || c.size < 1 || c.runs < 1 || c.step < 1 || c.straceN < 0 || c.queued < 0:
		return c, fmt.Errorf("-n, -c, -size, -runs and -step must be positive, -strace-n and -queued not negative")
	case c.only != "" && c.only != "relay" && c.only != "postfix":
		return c, fmt.Errorf("-only %q: want relay or postfix", c.only)
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/relay:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.queued > 0 {
		err = runQueued(ctx, cfg, os.Stdout)
	} else {
		_, err = run(ctx, cfg, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/relay:", err)
		stop()
		os.Exit(1)
	}
}
