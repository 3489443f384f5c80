package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrServerClosed is returned by Serve and ServeListener after Shutdown.
var ErrServerClosed = errors.New("smtpd: server closed")

// hardStopGrace is how long Shutdown waits, after its deadline, for the
// interrupted sessions to answer 421 and abort their receipts before it
// closes what is left.
const hardStopGrace = 5 * time.Second

// refuseTimeout bounds the write of a "too many connections" reply.
const refuseTimeout = 5 * time.Second

// Server is the relay's SMTP listener: one go-smtp server per configured
// listener, sharing users, limits, the Store and the hooks.
type Server struct {
	cfg       Config
	m         *metrics
	users     atomic.Pointer[authHolder]
	listeners []*listener
	authLimit *authLimiter

	// baseCtx is the parent of the hooks' and Commit's contexts; it is
	// cancelled at Shutdown's deadline.
	baseCtx  context.Context
	hardStop context.CancelFunc

	mu       sync.Mutex
	draining bool
	conns    map[*conn]struct{}
	accepts  sync.WaitGroup // accept loops running
	active   inflight       // connections open and DATA transfers running

	drainingFlag atomic.Bool   // draining, for the session's MAIL check
	drained      chan struct{} // closed when Shutdown has closed the listeners
	// interrupted is what a read returns once Shutdown's deadline has
	// passed: go-smtp answers it as is (it is an *smtp.SMTPError), in DATA
	// and in the middle of a BDAT chunk alike.
	interrupted *smtp.SMTPError
}

type authHolder struct{ a Authenticator }

// listener is one configured listener at run time.
type listener struct {
	cfg     Listener
	smtp    *smtp.Server
	tls     atomic.Pointer[tls.Config] // the current certificate configuration
	tlsWrap *tls.Config                // the stable config handed out, reading tls
	handoff *handoff

	mu      sync.Mutex
	ln      net.Listener
	serving bool
	open    int
	perIP   map[netip.Addr]int
}

// New checks cfg and makes a Server; nothing is bound yet (see Listen,
// Serve, ServeListener).
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.settle()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.Listeners)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		m:           m,
		conns:       map[*conn]struct{}{},
		drained:     make(chan struct{}),
		interrupted: ErrShuttingDown.smtpError(cfg.Hostname),
		authLimit:   &authLimiter{max: cfg.MaxAuthFailuresPerIP, now: cfg.Now, m: map[netip.Addr]*authWindow{}},
	}
	s.baseCtx, s.hardStop = context.WithCancel(context.Background())
	s.users.Store(&authHolder{cfg.Users})
	for _, lc := range cfg.Listeners {
		l := &listener{cfg: lc, perIP: map[netip.Addr]int{}}
		l.handoff = &handoff{ch: make(chan net.Conn), done: make(chan struct{})}
		srv := smtp.NewServer(&backend{s: s, l: l})
		srv.Domain = cfg.Hostname
		srv.MaxMessageBytes = cfg.MessageSize
		srv.MaxLineLength = MaxLineLength
		srv.EnableSMTPUTF8 = true
		srv.EnableREQUIRETLS = true
		srv.EnableDSN = true
		srv.ErrorLog = errorLog{cfg.Logger.With("listener", lc.Name)}
		if lc.TLS != nil {
			l.tls.Store(lc.TLS)
			l.tlsWrap = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return l.tls.Load(), nil
			}}
			if lc.Mode != ModeSubmissions {
				srv.TLSConfig = l.tlsWrap // STARTTLS
			}
		}
		l.smtp = srv
		s.listeners = append(s.listeners, l)
	}
	return s, nil
}

func (s *Server) listener(name string) (*listener, error) {
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("smtpd: no listener named %q in the configuration", name)
}

// SetUsers replaces the AUTH users (SIGHUP reload); sessions that have
// already authenticated keep their identity. Nil stops offering AUTH.
func (s *Server) SetUsers(a Authenticator) { s.users.Store(&authHolder{a}) }

func (s *Server) authenticator() Authenticator { return s.users.Load().a }

// SetTLS replaces a listener's certificate configuration (SIGHUP reload);
// new handshakes use it. A listener started without TLS cannot get it (and
// back) without a restart: STARTTLS and AUTH depend on it.
func (s *Server) SetTLS(listener string, cfg *tls.Config) error {
	l, err := s.listener(listener)
	if err != nil {
		return err
	}
	if (cfg == nil) != (l.tlsWrap == nil) {
		return fmt.Errorf("smtpd: listener %q: turning TLS on or off needs a restart", listener)
	}
	if cfg != nil {
		l.tls.Store(cfg)
	}
	return nil
}

// Listen binds the Address of every listener not bound yet, all or
// nothing: on an error, what this call bound is closed again. Call it
// before Serve when the bound addresses are needed first (Addrs).
func (s *Server) Listen() error {
	var errs []error
	var bound []*listener
	for _, l := range s.listeners {
		l.mu.Lock()
		if l.ln == nil {
			ln, err := net.Listen("tcp", l.cfg.Address)
			if err != nil {
				errs = append(errs, fmt.Errorf("smtpd: listener %q: %w", l.cfg.Name, err))
			} else {
				l.ln = ln
				bound = append(bound, l)
			}
		}
		l.mu.Unlock()
	}
	if len(errs) > 0 {
		for _, l := range bound {
			l.mu.Lock()
			_ = l.ln.Close()
			l.ln = nil
			l.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Addrs returns the bound addresses of the listeners, in configuration
// order (the daemon refuses to deliver to them: loop detection).
func (s *Server) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		l.mu.Lock()
		if l.ln != nil {
			out = append(out, l.ln.Addr())
		}
		l.mu.Unlock()
	}
	return out
}

// Serve binds what is not bound (Listen) and accepts on every listener
// not already served by ServeListener. It returns ErrServerClosed once
// Shutdown has closed the listeners (Shutdown itself returns when the
// sessions are done). When ctx is cancelled the server stops at once, as
// at Shutdown's deadline.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	errc := make(chan error, len(s.listeners))
	n := 0
	for _, l := range s.listeners {
		l.mu.Lock()
		ln, serving := l.ln, l.serving
		l.mu.Unlock()
		if serving {
			continue
		}
		n++
		go func() { errc <- s.serve(l, ln) }()
	}
	stop := context.AfterFunc(ctx, func() {
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Shutdown(expired)
	})
	defer stop()
	var first error
	for range n {
		if err := <-errc; err != nil && (first == nil || errors.Is(first, ErrServerClosed)) {
			first = err
		}
	}
	if first == nil {
		first = ErrServerClosed
	}
	return first
}

// ServeListener accepts on ln for the configured listener called name
// (ln replaces its Address), until Shutdown: then it returns
// ErrServerClosed.
func (s *Server) ServeListener(name string, ln net.Listener) error {
	l, err := s.listener(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.ln != nil && l.ln != ln {
		l.mu.Unlock()
		return fmt.Errorf("smtpd: listener %q is already bound to %s", name, l.ln.Addr())
	}
	l.ln = ln
	l.mu.Unlock()
	return s.serve(l, ln)
}

func (s *Server) serve(l *listener, ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	l.mu.Lock()
	if l.serving {
		l.mu.Unlock()
		s.mu.Unlock()
		return fmt.Errorf("smtpd: listener %q is already being served", l.cfg.Name)
	}
	l.serving = true
	l.mu.Unlock()
	s.accepts.Add(1)
	s.mu.Unlock()
	defer s.accepts.Done()

	l.handoff.addr = ln.Addr()
	smtpDone := make(chan struct{})
	go func() {
		defer close(smtpDone)
		_ = l.smtp.Serve(l.handoff) // returns once the handoff is closed
	}()
	err := s.acceptLoop(l, ln)
	_ = l.handoff.Close()
	<-smtpDone
	return err
}

// acceptLoop accepts until the listener is closed, and never blocks on a
// client: the PROXY header and the caps are dealt with in the
// connection's own goroutine.
func (s *Server) acceptLoop(l *listener, ln net.Listener) error {
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			draining := s.draining
			s.mu.Unlock()
			if draining {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("smtpd: listener %q: closed from outside the server: %w", l.cfg.Name, err)
			}
			// EMFILE, ECONNABORTED...: wait a little and go on, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn("accept failed, retrying", "listener", l.cfg.Name, "err", err, "in", delay)
			t := time.NewTimer(delay)
			<-t.C
			continue
		}
		delay = 0
		if !l.acquire() {
			s.active.add()
			go func() {
				defer s.active.done()
				s.refuse(l, raw)
				_ = raw.Close()
			}()
			continue
		}
		c := newConn(s, l, raw)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.active.add()
		go s.prepare(l, c)
	}
}

// refuse answers a connection over a cap (nothing over implicit TLS: the
// client expects a handshake, not a reply).
func (s *Server) refuse(l *listener, raw net.Conn) {
	s.cfg.Logger.Info("too many connections", "listener", l.cfg.Name, "client", raw.RemoteAddr().String())
	if l.cfg.Mode == ModeSubmissions {
		return
	}
	_ = raw.SetWriteDeadline(time.Now().Add(refuseTimeout))
	_, _ = fmt.Fprintf(raw, "421 4.7.0 %s too many connections\r\n", s.cfg.Hostname)
}

// prepare reads the PROXY header when the listener takes them, applies the
// per-IP cap, and hands the connection to go-smtp.
func (s *Server) prepare(l *listener, c *conn) {
	if len(l.cfg.ProxyTrusted) > 0 {
		if !inPrefixes(c.ip, l.cfg.ProxyTrusted) {
			s.cfg.Logger.Info("refused: PROXY protocol peer not trusted", "listener", l.cfg.Name, "peer", c.ip.String())
			_ = c.Close()
			return
		}
		_ = c.Conn.SetReadDeadline(time.Now().Add(s.cfg.ProxyHeaderTimeout))
		br := bufio.NewReaderSize(c.Conn, 512)
		h, err := readProxyHeader(br)
		if err != nil {
			s.cfg.Logger.Info("refused: no valid PROXY protocol header", "listener", l.cfg.Name, "peer", c.ip.String(), "err", err)
			_ = c.Close()
			return
		}
		_ = c.Conn.SetReadDeadline(time.Time{})
		c.r = br
		if !h.Local {
			c.ip = h.Src.Addr().Unmap()
			c.remote = net.TCPAddrFromAddrPort(h.Src)
		}
	}
	if !l.acquireIP(c.ip) {
		s.refuse(l, c.Conn)
		_ = c.Close()
		return
	}
	c.mu.Lock()
	c.holdsIP, c.inGauge = true, true
	c.mu.Unlock()
	s.m.sessions.WithLabelValues(l.cfg.Name).Inc()
	var nc net.Conn = c
	if l.cfg.Mode == ModeSubmissions {
		nc = tls.Server(c, l.tlsWrap)
	}
	select {
	case l.handoff.ch <- nc:
	case <-l.handoff.done:
		_ = nc.Close()
	}
}

// forget is conn.Close's bookkeeping.
func (s *Server) forget(c *conn) {
	c.l.release()
	c.mu.Lock()
	holdsIP, inGauge := c.holdsIP, c.inGauge
	c.mu.Unlock()
	if holdsIP {
		c.l.releaseIP(c.ip)
	}
	if inGauge {
		s.m.sessions.WithLabelValues(c.l.cfg.Name).Dec()
	}
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		s.active.done()
	}
}

// Shutdown stops the server gracefully: the listeners close at once; open
// sessions get 421 4.3.2 at their next MAIL; sessions inside DATA or BDAT
// may finish and get their 250 (after Commit). When ctx ends first, every
// remaining connection is interrupted: a transfer in progress is answered
// 421 4.3.2 and its receipt aborted (never committed), idle sessions get
// 421, and Commit's context is cancelled; Shutdown then returns ctx's
// error (after at most a few seconds more). It returns nil when every
// session ended before ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.draining
	s.draining = true
	s.drainingFlag.Store(true)
	s.mu.Unlock()
	if first {
		for _, l := range s.listeners {
			l.mu.Lock()
			if l.ln != nil {
				_ = l.ln.Close()
			}
			l.mu.Unlock()
			_ = l.handoff.Close()
		}
	}
	s.accepts.Wait()
	if first {
		close(s.drained)
	}
	select {
	case <-s.active.idle():
		s.closeAll()
		return nil
	case <-ctx.Done():
	}
	s.hardStop()
	s.mu.Lock()
	for c := range s.conns {
		c.interrupt()
	}
	s.mu.Unlock()
	t := time.NewTimer(hardStopGrace)
	defer t.Stop()
	select {
	case <-s.active.idle():
	case <-t.C:
		s.cfg.Logger.Warn("shutdown: sessions still busy after the deadline, closing them")
	}
	s.closeAll()
	return ctx.Err()
}

// closeAll closes the go-smtp servers and any connection left.
func (s *Server) closeAll() {
	for _, l := range s.listeners {
		_ = l.smtp.Close()
	}
	s.mu.Lock()
	left := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left {
		_ = c.Close()
	}
}

func (s *Server) isDraining() bool { return s.drainingFlag.Load() }

func (l *listener) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxConnections > 0 && l.open >= l.cfg.MaxConnections {
		return false
	}
	l.open++
	return true
}

func (l *listener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

// acquireIP takes a connection slot of ip's client block (clientBlock).
func (l *listener) acquireIP(ip netip.Addr) bool {
	ip = clientBlock(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxConnectionsPerIP > 0 && l.perIP[ip] >= l.cfg.MaxConnectionsPerIP {
		return false
	}
	l.perIP[ip]++
	return true
}

// releaseIP gives back the slot acquireIP took for ip.
func (l *listener) releaseIP(ip netip.Addr) {
	ip = clientBlock(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] <= 1 {
		delete(l.perIP, ip)
	} else {
		l.perIP[ip]--
	}
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// handoff is the net.Listener go-smtp serves: connections arrive from
// prepare, ready.
type handoff struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

// inflight counts running things; idle is closed while there are none.
type inflight struct {
	mu   sync.Mutex
	n    int
	wait chan struct{}
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.wait = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.wait)
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (f *inflight) idle() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return closedChan
	}
	return f.wait
}

// errorLog sends go-smtp's own messages (connection errors, handshake
// failures, panics) to the logger.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.log(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.log(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) log(msg string) {
	if strings.HasPrefix(msg, "panic") {
		e.l.Error("smtp session panicked", "detail", msg)
		return
	}
	e.l.Debug("smtp connection", "detail", msg)
}
