package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/relay/control"
	"github.com/postern-mta/postern/relay/sched"
	"github.com/postern-mta/postern/relay/smtpd"
	"github.com/postern-mta/postern/relay/spool"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a [Daemon].
type Options struct {
	// Policy is the policy file; its relay: block configures the daemon.
	Policy string
	// Spool is the spool directory (created when missing).
	Spool string
	// Listen, when set, replaces the addresses of the policy's listeners:
	// one address per listener, in order ("postern relay --listen").
	Listen []string
	// Logger receives the daemon's log (Postfix-shaped lines with the
	// queue ID); nil discards it.
	Logger *slog.Logger
	// Registry receives the relay's and the engine's metrics; nil means
	// none.
	Registry *prometheus.Registry
	// Engine are the engine's options (Resolver, Dialer, RootCAs ... for
	// tests and special set-ups); Logger, Metrics, SelfNames and
	// SelfAddresses are set by the daemon.
	Engine engine.Options
	// Clock drives the scheduler; nil means the system clock.
	Clock sched.Clock
	// Jitter returns uniform numbers in [0, 1) for retry jitter and the
	// start-up spread, safe for concurrent use; nil means math/rand/v2.
	Jitter func() float64
}

// Daemon is a running relay: listeners, spool, scheduler and engine.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	eng   *engine.Engine
	sp    *spool.Spool
	sc    *sched.Scheduler
	q     *queue
	m     *relayMetrics
	clock sched.Clock

	srv        *smtpd.Server
	adm        *admin
	ctl        *control.Listener
	closers    []io.Closer  // the control socket and the admin's read-only spool, closed first
	policyHash atomic.Value // string
	httpAddr   atomic.Value // string
	draining   atomic.Bool
	queued     atomic.Int64 // messages in the spool
	limits     sync.Map     // destination -> int (destination-concurrency, as last evaluated)

	wg sync.WaitGroup // dispatches in flight
}

// New loads the policy, takes the spool (one daemon per spool) and
// rebuilds the schedule from it. Nothing listens or delivers until Run.
func New(opts Options) (*Daemon, error) {
	d := &Daemon{opts: opts, log: opts.Logger, clock: opts.Clock}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.clock == nil {
		d.clock = sched.SystemClock()
	}
	jitter := opts.Jitter
	if jitter == nil {
		jitter = uniform
	}

	eo := opts.Engine
	eo.Logger = d.log
	if opts.Registry != nil {
		em, err := metrics.New(opts.Registry, metrics.Options{})
		if err != nil {
			return nil, fmt.Errorf("relay: engine metrics: %w", err)
		}
		eo.Metrics = em
	}
	set, err := policies.LoadFile(opts.Policy, policies.Options{Hostname: eo.Hostname})
	if err != nil {
		return nil, err
	}
	rc := set.Relay()
	// The listeners are bound first: the engine refuses to deliver to
	// their addresses (loop protection), which are known only once bound.
	cfg, err := d.serverConfig(rc)
	if err != nil {
		return nil, err
	}
	if d.srv, err = smtpd.New(cfg); err != nil {
		return nil, err
	}
	if err := d.srv.Listen(); err != nil {
		return nil, err
	}
	eo.SelfNames = append(eo.SelfNames, rc.Hostname)
	for _, a := range d.srv.Addrs() {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			eo.SelfAddresses = append(eo.SelfAddresses, ap)
		}
	}
	d.eng, err = engine.New(set, eo)
	if err != nil {
		stopServer(d.srv)
		return nil, err
	}
	d.policyHash.Store(policyHash(opts.Policy))

	d.sc = sched.New(sched.Options{Workers: rc.Queue.Workers, Clock: d.clock, DestinationLimit: d.destLimit})
	census := func() queueCensus {
		if d.q == nil { // not yet built: nothing queued
			return queueCensus{}
		}
		return d.q.census()
	}
	d.m, err = newMetrics(opts.Registry, d.sc.Stats, census, d.freeBytes)
	if err != nil {
		_ = d.eng.Close()
		return nil, fmt.Errorf("relay: metrics: %w", err)
	}
	d.sp, err = spool.Open(opts.Spool, spool.Options{Logger: d.log, Now: d.clock.Now, OnFsync: d.m.observeFsync})
	if err != nil {
		_ = d.eng.Close()
		return nil, err
	}
	d.m.reload(true, d.hash())
	d.q = &queue{sp: d.sp, sc: d.sc, eng: d.eng, clock: d.clock, log: d.log, m: d.m, jitter: jitter, dsn: d.dsnSettings,
		setLimit: func(dest string, n int) { d.limits.Store(dest, n) }, added: func() { d.queued.Add(1) }, removed: func() { d.queued.Add(-1) },
		down: newDownStore(d.sp.Dir(), d.clock.Now(), d.log)}
	if err := d.recover(); err != nil {
		d.closeAll()
		return nil, err
	}
	// The admin socket is bound now, served by Run: `postern queue`
	// reaches a daemon as soon as New has returned.
	var roCloser io.Closer
	if d.adm, roCloser, err = newAdmin(d); err != nil {
		d.closeAll()
		return nil, err
	}
	d.closers = append(d.closers, roCloser)
	if d.ctl, err = control.Listen(filepath.Join(d.sp.Dir(), "control.sock")); err != nil {
		d.closeAll()
		return nil, err
	}
	d.closers = append(d.closers, d.ctl)
	return d, nil
}

// recover schedules every queued message found in the spool. Messages
// already due are spread over queue.startup-spread, so a restart after
// an outage does not send them all at once.
func (d *Daemon) recover() error {
	ctx := context.Background()
	now := d.clock.Now()
	spread := d.eng.Policy().Relay().Queue.StartupSpread
	// The destinations that were down when the daemon stopped are down
	// still, until their period ends: their messages are scheduled for
	// then (queue.schedule), when one probe goes.
	down := d.q.down.entries()
	for dest, e := range down {
		d.sc.MarkDown(dest, e.Until, e.Reason)
	}
	notBefore := func(dest string) time.Time { return down[dest].Until }
	// Scan hands the messages over from one goroutine; working out their
	// destinations (a policy evaluation each) is spread over one worker
	// per CPU, so that it overlaps the scan's reads instead of following
	// them.
	work := make(chan spool.Entry, 256)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for e := range work {
				due := sched.StartupDue(now, now, spread, d.q.jitter)
				if err := d.q.scheduleFrom(ctx, e.ID, e.Envelope, e.State, due, notBefore); err != nil {
					d.log.Error("cannot schedule a queued message; it stays in the spool", "id", e.ID, "err", err)
				}
			}
		})
	}
	stats, err := d.sp.Scan(func(e spool.Entry) error {
		d.queued.Add(1)
		work <- e
		return nil
	})
	close(work)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("relay: scanning the spool: %w", err)
	}
	d.log.Info("spool scanned", "spool", d.sp.Dir(), "messages", stats.Messages, "corrupt", stats.Corrupt,
		"orphan_states", stats.OrphanStates)
	return nil
}

// destLimit is queue.destination-concurrency for a destination, as last
// evaluated when it was scheduled (called under the scheduler's lock).
func (d *Daemon) destLimit(dest string) int {
	if v, ok := d.limits.Load(dest); ok {
		return v.(int)
	}
	return defaultDestinationConcurrency
}

// defaultDestinationConcurrency is queue.destination-concurrency's
// default.
const defaultDestinationConcurrency = 20

// dsnSettings are the DSN settings of the policy in force.
func (d *Daemon) dsnSettings() dsnSettings {
	rc := d.eng.Policy().Relay()
	return dsnSettings{hostname: rc.Hostname, from: rc.DSN.From, returnLimit: rc.DSN.ReturnLimit}
}

// freeBytes is the spool's free space, for the metrics.
func (d *Daemon) freeBytes() (uint64, bool) {
	f, err := d.sp.FreeBytes()
	return f, err == nil
}

func (d *Daemon) hash() string {
	h, _ := d.policyHash.Load().(string)
	return h
}

// policyHash is the first 12 hex digits of the policy file's SHA-256.
func policyHash(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// deliverLoop hands dispatches to workers until ctx ends or the
// scheduler is closed; the scheduler bounds the dispatches in flight.
func (d *Daemon) deliverLoop(ctx context.Context) {
	for {
		dp, err := d.sc.Next(ctx)
		if err != nil {
			if !errors.Is(err, sched.ErrClosed) && ctx.Err() == nil {
				d.log.Error("scheduler stopped", "err", err)
			}
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.q.deliver(ctx, dp)
		}()
	}
}

// syncLoop makes the spool's state updates durable every interval.
func (d *Daemon) syncLoop(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.sp.Sync(); err != nil {
				d.log.Error("spool sync failed", "err", err)
			}
		}
	}
}

// closeAll releases the control socket, the listeners, the engine and
// the spool.
func (d *Daemon) closeAll() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		_ = d.closers[i].Close()
	}
	d.closers = nil
	if d.srv != nil {
		stopServer(d.srv)
	}
	if d.sp != nil {
		_ = d.sp.Close()
	}
	if d.eng != nil {
		_ = d.eng.Close()
	}
}

// stopServer closes the listeners and every session at once.
func stopServer(s *smtpd.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Shutdown(ctx)
}
