package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postern-mta/postern/bench/internal/postfixproc"
	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/sinkproc"
	"github.com/postern-mta/postern/internal/procgroup"
	"github.com/postern-mta/postern/relay/control"
)

// startOpts say how to start one instance of a system.
type startOpts struct {
	dir      string // a fresh directory of its own: configuration, spool or queue, log
	dest     string // the next hop of all mail, "127.0.0.1:PORT"
	deferred bool   // Postfix: defer_transports = smtp (the relay needs nothing: its destination is down)
	cgroup   *cgroup
	wrap     []string // argv put in front (strace)
	maxQueue int      // the relay's relay.queue.max-messages
}

// instance is one running system.
type instance interface {
	// smtpAddr is where it receives mail.
	smtpAddr() string
	// pids are its processes now (memory sampling, CPU without cgroups).
	pids() []int
	// queued waits until n messages are queued and deferred, and none is
	// still being received or worked on.
	queued(ctx context.Context, n int) error
	// prepareRelease does the untimed part of a release (Postfix's reload).
	prepareRelease(ctx context.Context) error
	// release delivers what is queued, now that the destination is up.
	release(ctx context.Context) error
	// stop stops it and waits until every process is gone.
	stop()
}

// system is one of the two contenders.
type system struct {
	name  string
	start func(ctx context.Context, b *bench, o startOpts) (instance, error)
}

var (
	relaySystem   = system{"relay", startRelay}
	postfixSystem = system{"postfix", startPostfix}
)

// relayPolicy is the relay's policy: one listener for the load, every
// message to one relay route, no TLS, connections reused up to 1000
// messages (as the engine's benchmarks), no start-up spread, a queue
// large enough for the run. destination-concurrency keeps its default,
// 20: Postfix's default_destination_concurrency_limit too.
const relayPolicy = `version: 1
hostname: relay.test
relay:
  listeners:
    - {name: mta, address: "%s", max-connections: 1000, max-connections-per-ip: 1000}
  queue: {startup-spread: 0s, max-messages: %d}
%srouting:
  route: sink
  routes:
    sink: {type: relay, address: %s, port: %s}
tls: {starttls: disable}
limits: {messages-per-connection: 1000}
`

// relayInst is a running `postern relay`.
type relayInst struct {
	cmd             *exec.Cmd // postern, or the wrapper (strace) around it
	pid             int       // postern's own pid
	done            chan struct{}
	listen, metrics string
	spool           string
	log             *os.File
	stopped         bool
	gone            int // messages a flush found gone (delivered meanwhile)
}

func startRelay(ctx context.Context, b *bench, o startOpts) (instance, error) {
	listenPort, err := sinkproc.FreePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := sinkproc.FreePort()
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(o.dest)
	if err != nil {
		return nil, err
	}
	r := &relayInst{listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(listenPort)),
		metrics: net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)), spool: filepath.Join(o.dir, "spool"), done: make(chan struct{})}
	retry := "" // queue.retry: the default, whose first delay (2m) is the down period of a dead destination
	if b.cfg.relayRetry != "" {
		retry = "queue: {retry: [" + b.cfg.relayRetry + "]}\n"
	}
	policy := filepath.Join(o.dir, "policy.yaml")
	if err := os.WriteFile(policy, fmt.Appendf(nil, relayPolicy, r.listen, max(o.maxQueue, 100000), retry, host, port), 0o644); err != nil {
		return nil, err
	}
	// The log goes to a file on the same disk, as Postfix's maillog_file.
	if r.log, err = os.Create(filepath.Join(o.dir, "relay.log")); err != nil {
		return nil, err
	}
	argv := append(append([]string{}, o.wrap...), b.postern, "relay", "-c", policy, "--spool", r.spool,
		"--listen", r.listen, "--metrics", r.metrics, "--log-format", "json")
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if fd := o.cgroup.FD(); fd > 0 {
		r.cmd.SysProcAttr.UseCgroupFD, r.cmd.SysProcAttr.CgroupFD = true, fd
	}
	if err := r.cmd.Start(); err != nil {
		r.log.Close()
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	if len(o.wrap) == 0 {
		r.pid = r.cmd.Process.Pid
	}
	for _, addr := range []string{r.listen, r.metrics} {
		if err := sinkproc.WaitDial(ctx, addr, r.done, 30*time.Second); err != nil {
			r.stop()
			return nil, fmt.Errorf("postern relay: %w; its log:\n%s", err, r.logTail())
		}
	}
	if len(o.wrap) > 0 { // postern is the wrapper's child
		for _, c := range procstat.ChildrenOf(r.cmd.Process.Pid) {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(comm)) == "postern" {
				r.pid = c
			}
		}
		if r.pid == 0 {
			r.stop()
			return nil, fmt.Errorf("postern relay: no postern process under %s", o.wrap[0])
		}
	}
	return r, nil
}

func (r *relayInst) smtpAddr() string { return r.listen }

func (r *relayInst) pids() []int { return []int{r.pid} }

// metricsNow scrapes the relay's /metrics.
func (r *relayInst) metricsNow(ctx context.Context) (metricSet, error) {
	return scrape(ctx, "http://"+r.metrics+"/metrics")
}

// queued waits for n messages received and queued, and every one of them
// scheduled for later: none ready or in flight.
func (r *relayInst) queued(ctx context.Context, n int) error {
	for {
		m, err := r.metricsNow(ctx)
		if err != nil {
			return err
		}
		got := int(m.sum("postern_relay_messages_received_total", "result", "queued"))
		refused := int(m.sum("postern_relay_messages_received_total", "result", "rejected") + m.sum("postern_relay_messages_received_total", "result", "tempfail"))
		if refused > 0 {
			return fmt.Errorf("postern relay refused %d messages (rejected or tempfail); its log:\n%s", refused, r.logTail())
		}
		if got >= n && m.sum("postern_relay_queue_ready") == 0 && m.sum("postern_relay_queue_active") == 0 &&
			int(m.sum("postern_relay_queue_items")) == n {
			if got != n {
				return fmt.Errorf("postern relay queued %d messages, want %d", got, n)
			}
			return nil
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("postern relay: %d of %d messages queued, %v scheduled, %v ready, %v in flight: %w", got, n,
				m.sum("postern_relay_queue_items"), m.sum("postern_relay_queue_ready"), m.sum("postern_relay_queue_active"), err)
		}
	}
}

// waitScheduled waits until n items are scheduled for later and none is
// ready or in flight: after a restart, the scanned messages deferred
// again.
func waitScheduled(ctx context.Context, r *relayInst, n int) error {
	for {
		m, err := r.metricsNow(ctx)
		if err != nil {
			return err
		}
		items, ready, active := m.sum("postern_relay_queue_items"), m.sum("postern_relay_queue_ready"), m.sum("postern_relay_queue_active")
		if int(items) == n && ready == 0 && active == 0 {
			return nil
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("postern relay: %v of %d scheduled, %v ready, %v in flight: %w", items, n, ready, active, err)
		}
	}
}

func (r *relayInst) prepareRelease(context.Context) error { return nil }

// release is `postern queue flush --all`: every message due now, and the
// destination no longer down. A flush that races with deliveries (the
// down period ended meanwhile) names the messages that left the spool
// under it, one "no such file or directory" each: those are delivered,
// not lost, and only counted in gone.
func (r *relayInst) release(ctx context.Context) error {
	c := control.Dial(filepath.Join(r.spool, "control.sock"))
	defer c.Close()
	_, err := c.Flush(ctx, control.Filter{All: true})
	if err == nil {
		return nil
	}
	for l := range strings.SplitSeq(strings.TrimSpace(err.Error()), "\n") {
		if !strings.HasSuffix(l, "no such file or directory") {
			return err
		}
		r.gone++
	}
	return nil
}

// stop is SIGTERM to postern (not to a wrapper, which waits for it), and
// SIGKILL to the process group when it has not ended after 40 s (its
// shutdown-timeout is 30 s). Without postern's pid (a wrapper that did
// not start it) the process group is stopped at once.
func (r *relayInst) stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	grace := 40 * time.Second
	if r.pid > 0 {
		_ = syscall.Kill(r.pid, syscall.SIGTERM)
	} else {
		grace = 0
	}
	select {
	case <-r.done:
	case <-time.After(grace):
		procgroup.Stop(r.cmd.Process.Pid, r.done, 5*time.Second)
	}
	_ = r.log.Close()
}

// logTail is the end of the relay's log, for error messages.
func (r *relayInst) logTail() string {
	b, _ := os.ReadFile(r.log.Name())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// postfixInst is a running throwaway Postfix.
type postfixInst struct {
	*postfixproc.Instance
	tools map[string]string
}

func startPostfix(ctx context.Context, b *bench, o startOpts) (instance, error) {
	p, err := postfixproc.Start(ctx, postfixproc.Options{Dir: o.dir, Relay: o.dest, Tools: b.tools, Defer: o.deferred,
		Wrap: o.wrap, CgroupFD: o.cgroup.FD()})
	if err != nil {
		return nil, err
	}
	return &postfixInst{p, b.tools}, nil
}

func (p *postfixInst) smtpAddr() string { return p.Addr }

func (p *postfixInst) pids() []int { return p.PIDs() }

// queued waits until n messages sit in the deferred queue and none in
// maildrop, incoming or active.
func (p *postfixInst) queued(ctx context.Context, n int) error {
	for {
		d, busy := p.QueueCounts()
		if d == n && busy == 0 {
			return nil
		}
		if d > n {
			return fmt.Errorf("postfix: %d messages deferred, want %d", d, n)
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("postfix queue: %d of %d deferred, %d in incoming/active/maildrop: %w", d, n, busy, err)
		}
	}
}

// prepareRelease removes defer_transports and reloads (which takes
// seconds and is not timed); the deferred messages then wait for their
// retry time or a flush.
func (p *postfixInst) prepareRelease(ctx context.Context) error {
	if err := p.Postconf(ctx, "-e", "defer_transports="); err != nil {
		return err
	}
	if err := p.Cmd(ctx, p.tools["postfix"], "-c", p.Etc(), "reload"); err != nil {
		return err
	}
	// Let the new qmgr settle (as bench/e2e does); a flush sent to the old
	// one could be lost in the restart.
	return pause(ctx, 500*time.Millisecond)
}

// release is postqueue -f.
func (p *postfixInst) release(ctx context.Context) error {
	return p.Cmd(ctx, p.tools["postqueue"], "-c", p.Etc(), "-f")
}

func (p *postfixInst) stop() { p.Stop() }

// pause waits d, or returns the context's error.
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
