package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/relay/smtpd"
	"github.com/postern-mta/postern/relay/spool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// intake adapts the spool to the listener: a committed message is
// counted and scheduled at once.
type intake struct{ d *Daemon }

// Create starts a message in the spool.
func (in intake) Create(env *spool.Envelope) (smtpd.Receipt, error) {
	r, err := in.d.sp.Create(env)
	if err != nil {
		return nil, classify(err)
	}
	return &receipt{r: r, d: in.d, env: env}, nil
}

// receipt is one message being received.
type receipt struct {
	r   *spool.Receipt
	d   *Daemon
	env *spool.Envelope
}

func (r *receipt) Write(p []byte) (int, error) {
	n, err := r.r.Write(p)
	return n, classify(err)
}

// Commit makes the message durable (the spool's ack rule), then schedules
// it: the 250 goes out only after the fsyncs.
func (r *receipt) Commit(ctx context.Context) (string, error) {
	id, err := r.r.Commit(ctx)
	if err != nil {
		return "", classify(err)
	}
	r.d.queued.Add(1)
	env := *r.env
	env.Arrival = r.r.Arrival()
	if err := r.d.q.schedule(context.Background(), id, &env, &spool.State{}, r.d.clock.Now()); err != nil {
		// Queued all the same: the next start schedules it.
		r.d.log.Error("cannot schedule a received message; it is scheduled at the next start", "id", id, "err", err)
	}
	return id, nil
}

func (r *receipt) Abort() { r.r.Abort() }

// ID is the queue ID the spool gave the message, for the Received
// header's id clause.
func (r *receipt) ID() string { return r.r.ID() }

// classify maps a full disk to the listener's 452 4.3.1.
func classify(err error) error {
	if err != nil && errors.Is(err, spool.ErrNoSpace) {
		return fmt.Errorf("%w: %w", smtpd.ErrNoSpace, err)
	}
	return err
}

// admit decides at MAIL whether a message may come in: not while
// draining, not beyond queue.max-messages, not below the free-space
// floor.
func (d *Daemon) admit(ctx context.Context) error {
	if d.draining.Load() {
		return smtpd.ErrShuttingDown
	}
	q := d.eng.Policy().Relay().Queue
	if q.MaxMessages > 0 && d.queued.Load() >= int64(q.MaxMessages) {
		return smtpd.ErrQueueFull
	}
	if !d.spaceOK() {
		return smtpd.ErrNoSpace
	}
	return nil
}

// spaceOK reports whether the spool's file system is above the
// free-space floor.
func (d *Daemon) spaceOK() bool {
	free, total, err := d.sp.DiskSpace()
	if err != nil {
		return false
	}
	floor := d.eng.Policy().Relay().Queue.MinFreeSpace.Min(int64(total))
	return int64(free) > floor
}

// ready is /readyz: accepting mail.
func (d *Daemon) ready() (bool, string) {
	switch {
	case d.draining.Load():
		return false, "draining"
	case !d.spaceOK():
		return false, "spool below its free-space floor"
	}
	return true, "ok"
}

// serverConfig is the listener's configuration from the policy.
func (d *Daemon) serverConfig(rc *policies.Relay) (smtpd.Config, error) {
	cfg := smtpd.Config{
		Hostname: rc.Hostname, Networks: rc.Networks,
		Mechanisms: rc.Auth.Mechanisms, MaxAuthFailures: rc.Auth.MaxFailures,
		MessageSize: rc.Limits.MessageSize, Recipients: rc.Limits.Recipients, Hops: rc.Limits.Hops,
		BareNewline: smtpd.BareNewline(rc.Limits.BareNewline), CommandTimeout: rc.Limits.CommandTimeout,
		Store: intake{d}, Admit: d.admit, Permit: d.permit, Logger: d.log, Registerer: registerer(d.opts.Registry),
		Now: d.clock.Now, LookupPTR: d.clientPTR,
	}
	users, err := loadUsers(rc)
	if err != nil {
		return cfg, err
	}
	if users != nil {
		cfg.Users = users
	}
	listeners, err := d.listeners(rc)
	if err != nil {
		return cfg, err
	}
	for _, l := range listeners {
		sl := smtpd.Listener{Name: l.Name, Address: l.Address.String(), Mode: smtpd.Mode(l.Mode),
			MaxConnections: l.MaxConnections, MaxConnectionsPerIP: l.MaxConnectionsPerIP}
		if l.ProxyProtocol != nil {
			sl.ProxyTrusted = l.ProxyProtocol.Trusted
		}
		if sl.TLS, err = listenerTLS(l); err != nil {
			return cfg, err
		}
		cfg.Listeners = append(cfg.Listeners, sl)
	}
	return cfg, nil
}

// listeners are the policy's listeners, with the addresses of --listen
// when given; the open-relay guard runs again on those addresses, so that
// --listen 0.0.0.0:25 cannot open what the policy kept on loopback.
func (d *Daemon) listeners(rc *policies.Relay) ([]policies.Listener, error) {
	if len(d.opts.Listen) == 0 {
		return rc.Listeners, nil
	}
	if len(d.opts.Listen) != len(rc.Listeners) {
		return nil, fmt.Errorf("relay: %d --listen addresses for %d listeners: give one per listener, in the policy's order", len(d.opts.Listen), len(rc.Listeners))
	}
	ls := slices.Clone(rc.Listeners)
	for i, a := range d.opts.Listen {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return nil, fmt.Errorf("relay: --listen %q: want IP:PORT or [IPv6]:PORT: %w", a, err)
		}
		ls[i].Address = ap
	}
	if err := rc.CheckListeners(ls); err != nil {
		return nil, err
	}
	return ls, nil
}

// Run serves the listeners, delivers the queue and serves the HTTP
// endpoints (when metricsAddr is set) until ctx ends; then it stops
// gracefully: intake first (a cut-off DATA is never acknowledged), then
// deliveries, within queue.shutdown-timeout. Everything acknowledged is
// on disk at every moment; the state is synced before Run returns.
func (d *Daemon) Run(ctx context.Context, metricsAddr string) error {
	rc := d.eng.Policy().Relay()
	srv := d.srv
	var err error
	d.log.Info("postern relay started", "listeners", addrList(srv.Addrs()), "spool", d.sp.Dir(),
		"messages", d.queued.Load(), "policy", d.opts.Policy, "policy_hash", d.hash())

	var hs *http.Server
	if metricsAddr != "" {
		hs, err = d.startHTTP(metricsAddr)
		if err != nil {
			_ = srv.Shutdown(ctx)
			return err
		}
	}

	ctlCtx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		if err := d.ctl.Serve(ctlCtx, d.adm); err != nil && ctlCtx.Err() == nil {
			d.log.Error("control socket stopped", "err", err)
		}
	}()
	var ctlOnce sync.Once
	stopControl := func() {
		ctlOnce.Do(func() {
			stopCtl()
			<-ctlDone
		})
	}
	defer stopControl()

	work, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	loopDone := make(chan struct{})
	go func() { defer close(loopDone); d.deliverLoop(work) }()
	syncCtx, stopSync := context.WithCancel(context.Background())
	defer stopSync()
	syncDone := make(chan struct{})
	go func() { defer close(syncDone); d.syncLoop(syncCtx, rc.Queue.StateSyncInterval) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(work) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil && !errors.Is(err, smtpd.ErrServerClosed) {
			runErr = err
		}
	}

	// Graceful stop: not ready, no new mail, DATA in progress may finish.
	d.draining.Store(true)
	timeout := rc.Queue.ShutdownTimeout
	deadline, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(deadline); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("listener shutdown", "err", err)
	}
	d.sc.Close()
	<-loopDone
	waited := make(chan struct{})
	go func() { d.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-deadline.Done():
		// Deliveries still running get their context cancelled: the
		// engine returns temporary results, which are recorded.
		stopWork()
		<-waited
	}
	stopSync()
	<-syncDone
	if hs != nil {
		_ = hs.Close()
	}
	if err := d.sp.Sync(); err != nil {
		d.log.Error("final spool sync failed", "err", err)
	}
	stopControl()
	d.log.Info("postern relay stopped", "messages", d.queued.Load())
	d.closeAll()
	return runErr
}

// startHTTP serves /metrics, /healthz and /readyz on addr.
func (d *Daemon) startHTTP(addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	if d.opts.Registry != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(d.opts.Registry, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := d.ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay: metrics listener: %w", err)
	}
	d.httpAddr.Store(ln.Addr().String())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return hs, nil
}

// addrList joins addresses for the start-up line.
func addrList(as []net.Addr) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// ListenAddrs are the addresses the listeners are bound to.
func (d *Daemon) ListenAddrs() []net.Addr {
	return d.srv.Addrs()
}

// HTTPAddr is the address of the /metrics endpoint, "" when none.
func (d *Daemon) HTTPAddr() string {
	s, _ := d.httpAddr.Load().(string)
	return s
}

// permit evaluates relay.permit for one RCPT; without a deciding rule the
// listener's default (networks, AUTH) stands.
func (d *Daemon) permit(ctx context.Context, in smtpd.PermitInput) (bool, error) {
	allowed, decided, err := d.eng.Permit(ctx, policies.Session{Listener: in.Listener, ClientIP: in.ClientIP, TLS: in.TLS,
		AuthenticatedAs: in.AuthenticatedAs, Sender: in.Sender, Rcpt: in.Rcpt})
	if err != nil {
		return false, err
	}
	if !decided {
		return in.Default, nil
	}
	return allowed, nil
}

// registerer is reg as a prometheus.Registerer, nil when reg is nil.
func registerer(reg *prometheus.Registry) prometheus.Registerer {
	if reg == nil {
		return nil
	}
	return reg
}
