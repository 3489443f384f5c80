package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/sinkproc"
)

// result is one run of one system.
type result struct {
	// intake: the destination down; drain: then released.
	intake, drain       time.Duration
	intakeCPU, drainCPU cpuTime
	intakePeak          procstat.Peak
	drained             sinkproc.Counts // what the sink of the drain saw
	// e2e: the destination up from the start.
	e2e        time.Duration
	e2eCPU     cpuTime
	e2ePeak    procstat.Peak
	delivered  sinkproc.Counts // what the sink of the e2e phase saw
	disk       *diskStat       // the spool's device over the e2e window; nil: unknown
	diskBG     *diskStat       // the same device over as long a window before it, idle
	spoolSyncs float64         // the relay: its spool fsyncs over the e2e window (metrics); -1 for Postfix
	note       string          // anything odd seen
	oneProcess bool            // the system is one process: its VmHWM is its peak
}

// syncs are the sync calls of an untimed strace'd run, by system call
// and by what they synced.
type syncs struct {
	n      int
	calls  map[string]int // by system call
	byPath map[string]int // by file class (pathClass)
}

// total is every sync call.
func (s syncs) total() int {
	t := 0
	for _, c := range s.calls {
		t += c
	}
	return t
}

// syncCalls are the calls strace counts: every way a process asks for
// its writes to reach the disk.
var syncCalls = []string{"fsync", "fdatasync", "sync_file_range", "syncfs"}

// load runs smtp-source: n messages over the configured sessions, each
// kept open for all its messages (-d). It fails on any warning: a
// rejected or deferred message is one.
func (b *bench) load(ctx context.Context, addr string, n int) error {
	args := []string{"-d", "-s", strconv.Itoa(b.cfg.conns), "-m", strconv.Itoa(n), "-l", strconv.Itoa(b.cfg.size),
		"-M", "bench.sender.test", "-f", "bench@sender.test", "-t", "rcpt@dest.test", addr}
	cmd := exec.CommandContext(ctx, b.tools["smtp-source"], args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		return fmt.Errorf("smtp-source %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// meter reads the CPU time an instance used so far: its cgroup's, or the
// sum over its processes alive now (which misses those that ended).
type meter struct {
	cg   *cgroup
	pids func() []int
}

func (m meter) now() (cpuTime, error) {
	if m.cg != nil {
		return m.cg.usage()
	}
	var c cpuTime
	for _, pid := range m.pids() {
		if f := procstat.StatFields(pid); len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			c.user += time.Duration(u) * 10 * time.Millisecond // USER_HZ = 100
			c.sys += time.Duration(s) * 10 * time.Millisecond
		}
	}
	return c, nil
}

// waitSink waits until the sink counted n messages; it polls the sink's
// counters every 10 ms, which bounds the error of the time measured.
func waitSink(ctx context.Context, s *sinkproc.Sink, n int) error {
	for {
		if c := s.Counts(); c.Messages >= n {
			return nil
		}
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("the sink counted %d of %d messages: %w", s.Counts().Messages, n, err)
		}
	}
}

// freeAddr is a loopback address where nothing listens (a moment ago).
func freeAddr() (string, error) {
	p, err := sinkproc.FreePort()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), err
}

// measure runs both phases of one system.
func (b *bench) measure(ctx context.Context, sys system) (result, error) {
	res := result{spoolSyncs: -1, oneProcess: sys.name == relaySystem.name}
	mctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	err := b.measureIntake(mctx, sys, &res)
	cancel()
	if err != nil {
		return res, fmt.Errorf("%s, intake and delivery only: %w", sys.name, err)
	}
	mctx, cancel = context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	if err := b.measureE2E(mctx, sys, &res); err != nil {
		return res, fmt.Errorf("%s, end to end: %w", sys.name, err)
	}
	return res, nil
}

// measureIntake queues n messages with the destination down, then brings
// the destination up and releases them.
func (b *bench) measureIntake(ctx context.Context, sys system, res *result) error {
	n := b.cfg.n
	dir, err := b.dirFor(sys.name + "-intake")
	if err != nil {
		return err
	}
	dest, err := freeAddr()
	if err != nil {
		return err
	}
	cg, err := b.cg.make(filepath.Base(dir))
	if err != nil {
		return err
	}
	defer cg.remove()
	inst, err := sys.start(ctx, b, startOpts{dir: dir, dest: dest, deferred: true, cgroup: cg, maxQueue: n})
	if err != nil {
		return err
	}
	defer inst.stop()
	m := meter{cg, inst.pids}
	sampler := procstat.Sample(250*time.Millisecond, inst.pids)
	defer sampler.Stop()

	c0, err := m.now()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.load(ctx, inst.smtpAddr(), n); err != nil {
		return err
	}
	res.intake = time.Since(t0)
	if err := inst.queued(ctx, n); err != nil {
		return err
	}
	c1, err := m.now()
	if err != nil {
		return err
	}
	res.intakeCPU = c1.sub(c0)

	sinkDir, err := b.dirFor(sys.name + "-intake-sink")
	if err != nil {
		return err
	}
	sink, err := sinkproc.StartOn(ctx, sinkproc.SmtpSink(b.tools["smtp-sink"]), sinkDir, dest)
	if err != nil {
		return err
	}
	defer sink.Stop()
	if c := sink.Counts(); c.Messages != 0 {
		return fmt.Errorf("the sink counted %d messages before the release", c.Messages)
	}
	if err := inst.prepareRelease(ctx); err != nil {
		return err
	}
	c2, err := m.now()
	if err != nil {
		return err
	}
	t2 := time.Now()
	if err := inst.release(ctx); err != nil {
		return err
	}
	if r, ok := inst.(*relayInst); ok {
		// A flush should end the destination's down period (it is up
		// now); when it does not, delivery waits for the period to end
		// and the figure measures that wait.
		ms, err := r.metricsNow(ctx)
		if err != nil {
			return err
		}
		if down := ms.sum("postern_relay_destinations_down"); down > 0 {
			res.note = fmt.Sprintf("after the flush %v destination(s) still down: delivery waits for the down period", down)
		}
		if r.gone > 0 {
			res.note += fmt.Sprintf("; the flush failed for %d messages delivered meanwhile (no such file)", r.gone)
		}
	}
	if err := waitSink(ctx, sink, n); err != nil {
		return err
	}
	res.drain = time.Since(t2)
	c3, err := m.now()
	if err != nil {
		return err
	}
	res.drainCPU = c3.sub(c2)
	res.intakePeak = sampler.Stop()
	// Stopping the system closes its cached connections, so that the
	// sink counts every session.
	inst.stop()
	res.drained, err = sink.Settle(ctx, n)
	return err
}

// measureE2E sends n messages through the system with the sink up from
// the start.
func (b *bench) measureE2E(ctx context.Context, sys system, res *result) error {
	n := b.cfg.n
	sinkDir, err := b.dirFor(sys.name + "-e2e-sink")
	if err != nil {
		return err
	}
	sink, err := sinkproc.Start(ctx, sinkproc.SmtpSink(b.tools["smtp-sink"]), sinkDir)
	if err != nil {
		return err
	}
	defer sink.Stop()
	dir, err := b.dirFor(sys.name + "-e2e")
	if err != nil {
		return err
	}
	cg, err := b.cg.make(filepath.Base(dir))
	if err != nil {
		return err
	}
	defer cg.remove()
	inst, err := sys.start(ctx, b, startOpts{dir: dir, dest: sink.Addr, cgroup: cg, maxQueue: n})
	if err != nil {
		return err
	}
	defer inst.stop()
	m := meter{cg, inst.pids}
	sampler := procstat.Sample(250*time.Millisecond, inst.pids)
	defer sampler.Stop()
	relay, _ := inst.(*relayInst)
	spoolSyncs := func() (float64, error) {
		ms, err := relay.metricsNow(ctx)
		return ms.sum("postern_relay_spool_fsync_seconds"), err
	}

	// The device's background (other users of the disk) over a second with
	// the system idle, scaled to the measured window below.
	var bg0, bg1 diskStat
	var bgWindow time.Duration
	if b.disk != nil && b.cfg.background > 0 {
		if bg0, err = b.disk.read(); err != nil {
			return err
		}
		start := time.Now()
		if err := pause(ctx, b.cfg.background); err != nil {
			return err
		}
		if bg1, err = b.disk.read(); err != nil {
			return err
		}
		bgWindow = time.Since(start)
	}
	var syncs0 float64
	if relay != nil {
		if syncs0, err = spoolSyncs(); err != nil {
			return err
		}
	}
	var d0 diskStat
	if b.disk != nil {
		if d0, err = b.disk.read(); err != nil {
			return err
		}
	}
	c0, err := m.now()
	if err != nil {
		return err
	}
	t0 := time.Now()
	loaded := make(chan error, 1)
	go func() { loaded <- b.load(ctx, inst.smtpAddr(), n) }()
	if err := waitSink(ctx, sink, n); err != nil {
		if lerr := <-loaded; lerr != nil {
			return lerr
		}
		return err
	}
	res.e2e = time.Since(t0)
	c1, err := m.now()
	if err != nil {
		return err
	}
	res.e2eCPU = c1.sub(c0)
	if b.disk != nil {
		d1, err := b.disk.read()
		if err != nil {
			return err
		}
		d := d1.sub(d0)
		res.disk, res.diskBG = &d, &diskStat{}
		if bgWindow > 0 {
			scale := res.e2e.Seconds() / bgWindow.Seconds()
			bg := bg1.sub(bg0)
			res.diskBG = &diskStat{writes: int64(float64(bg.writes) * scale), flushes: int64(float64(bg.flushes) * scale)}
		}
	}
	if err := <-loaded; err != nil {
		return err
	}
	if relay != nil {
		s1, err := spoolSyncs()
		if err != nil {
			return err
		}
		res.spoolSyncs = s1 - syncs0
	}
	res.e2ePeak = sampler.Stop()
	inst.stop()
	res.delivered, err = sink.Settle(ctx, n)
	return err
}

// measureSyncs runs n messages end to end with the system under strace
// and returns its sync calls. Never timed: strace slows the calls it
// stops at (only those: --seccomp-bpf).
func (b *bench) measureSyncs(ctx context.Context, sys system, n int) (syncs, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	sinkDir, err := b.dirFor(sys.name + "-strace-sink")
	if err != nil {
		return syncs{}, err
	}
	sink, err := sinkproc.Start(ctx, sinkproc.SmtpSink(b.tools["smtp-sink"]), sinkDir)
	if err != nil {
		return syncs{}, err
	}
	defer sink.Stop()
	dir, err := b.dirFor(sys.name + "-strace")
	if err != nil {
		return syncs{}, err
	}
	trace := filepath.Join(dir, "strace.txt")
	wrap := []string{b.tools["strace"], "-f", "--seccomp-bpf", "-y", "-o", trace, "-e", "trace=" + strings.Join(syncCalls, ",")}
	inst, err := sys.start(ctx, b, startOpts{dir: dir, dest: sink.Addr, wrap: wrap, maxQueue: n})
	if err != nil {
		return syncs{}, err
	}
	defer inst.stop()
	if err := b.load(ctx, inst.smtpAddr(), n); err != nil {
		return syncs{}, err
	}
	if err := waitSink(ctx, sink, n); err != nil {
		return syncs{}, err
	}
	inst.stop() // strace ends when the last traced process does
	if _, err := sink.Settle(ctx, n); err != nil {
		return syncs{}, err
	}
	f, err := os.Open(trace)
	if err != nil {
		return syncs{}, fmt.Errorf("strace output: %w", err)
	}
	defer f.Close()
	s := syncs{n: n}
	s.calls, s.byPath, err = parseStrace(f, dir)
	return s, err
}

// straceCall matches the start of a traced call in strace -f -y output:
// "PID name(FD</path>" (a call that another one interrupts is continued
// on a later "<... name resumed>" line, not counted again).
var straceCall = regexp.MustCompile(`^(?:\d+ +)?(\w+)\((\d+)<([^>]*)>`)

// parseStrace counts the calls in strace -f -y output, by system call and
// by the class of the file they synced (pathClass, relative to base).
func parseStrace(r io.Reader, base string) (calls, byPath map[string]int, err error) {
	calls, byPath = map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := straceCall.FindStringSubmatch(sc.Text())
		if m == nil || !slices.Contains(syncCalls, m[1]) {
			continue
		}
		calls[m[1]]++
		byPath[m[1]+" "+pathClass(m[3], base)]++
	}
	return calls, byPath, sc.Err()
}

// pathClass names a synced file by its place under base, keeping two
// levels and starring the rest: spool/tmp/06H3AI58MTCQIBEJ is
// spool/tmp/*, spool/msg/AB is spool/msg/*, Postfix's
// spool/incoming/4Xy... is spool/incoming/*.
func pathClass(p, base string) string {
	rel, err := filepath.Rel(base, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	parts := strings.Split(rel, string(filepath.Separator))
	for i := 2; i < len(parts); i++ {
		parts[i] = "*"
	}
	return strings.Join(parts, "/")
}
