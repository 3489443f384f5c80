package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/postern-mta/postern/relay/spool"
)

// midData starts a transfer and returns once the store has the receipt
// (the header section is in, the body is streaming). go-smtp hands DATA
// content over in reads of the size the reader asks for (32 KiB here), so
// more than that is sent.
func midData(t *testing.T, c *client, store *memStore, bdat bool) {
	t.Helper()
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b@example.org>", "250")
	part := "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("b", 78)+"\r\n", 500)
	if bdat {
		c.send(fmt.Sprintf("BDAT %d\r\n%s", len(part), part))
		c.expect("250")
	} else {
		c.cmd("DATA", "354")
		c.send(part)
	}
	<-store.created
}

func shutdownAsync(s *Server, ctx context.Context) chan error {
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	return done
}

func TestShutdownDeadlineCutsDataOff(t *testing.T) {
	for _, bdat := range []bool{false, true} {
		t.Run(fmt.Sprint("bdat=", bdat), func(t *testing.T) {
			cfg := baseConfig()
			store := &memStore{created: make(chan *spool.Envelope, 1)}
			cfg.Store = store
			te := start(t, cfg)
			c := dial(t, te.addr())
			midData(t, c, store, bdat)
			ctx, cancel := context.WithCancel(context.Background())
			done := shutdownAsync(te.s, ctx)
			<-te.s.drained
			cancel() // the deadline passes with the transfer unfinished
			if bdat {
				// Between chunks go-smtp is reading the next command: it
				// answers the interrupted read with its own 421 4.4.0.
				c.expect("421 ")
			} else {
				c.expect("421 4.3.2 relay.test ")
			}
			if !c.closed() {
				t.Errorf("connection open after the 421")
			}
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Shutdown returned %v, want the context's error", err)
			}
			if n, a := len(store.messages()), store.abortCount(); n != 0 || a != 1 {
				t.Errorf("%d committed, %d aborted; want 0 and 1", n, a)
			}
		})
	}
}

func TestShutdownLetsDataFinish(t *testing.T) {
	cfg := baseConfig()
	store := &memStore{created: make(chan *spool.Envelope, 1)}
	cfg.Store = store
	te := start(t, cfg)
	c := dial(t, te.addr())
	midData(t, c, store, false)
	done := shutdownAsync(te.s, context.Background())
	<-te.s.drained
	// New connections are refused now.
	if nc, err := net.Dial("tcp", te.addr()); err == nil {
		nc.Close()
		t.Errorf("listener still accepting after Shutdown began")
	}
	c.send("last line\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	c.cmd("MAIL FROM:<a@example.test>", "421 4.3.2 relay.test ")
	if !c.closed() {
		t.Errorf("connection open after 421")
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v, want nil (every session ended in time)", err)
	}
	if n := len(store.messages()); n != 1 {
		t.Errorf("%d committed, want 1", n)
	}
}

func TestShutdownRefusesMail(t *testing.T) {
	p := newPKI(t)
	cfg := baseConfig()
	cfg.Listeners[0].TLS = p.server
	te := start(t, cfg)
	plainC := dial(t, te.addr())
	plainC.ehlo()
	tlsC := dial(t, te.addr())
	tlsC.ehlo()
	tlsC.startTLS(p.client)
	tlsC.ehlo()
	done := shutdownAsync(te.s, context.Background())
	<-te.s.drained
	for _, c := range []*client{plainC, tlsC} {
		c.cmd("MAIL FROM:<a@example.test>", "421 4.3.2 relay.test ")
		if !c.closed() {
			t.Errorf("connection open after 421")
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if got := te.counter(t, "postern_relay_sessions", nil); got != 0 {
		t.Errorf("sessions gauge %v after shutdown", got)
	}
}

func TestShutdownDeadlineCancelsCommit(t *testing.T) {
	cfg := baseConfig()
	store := &memStore{gate: make(chan struct{}), created: make(chan *spool.Envelope, 1)}
	cfg.Store = store
	te := start(t, cfg)
	c := dial(t, te.addr())
	midData(t, c, store, false)
	c.send(".\r\n") // the transfer is complete; Commit waits on the gate
	ctx, cancel := context.WithCancel(context.Background())
	done := shutdownAsync(te.s, ctx)
	<-te.s.drained
	cancel()
	r := c.reply()
	if !strings.HasPrefix(r, "4") {
		t.Errorf("reply %q, want a 4xx: the commit did not finish", r)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: %v", err)
	}
	if n := len(store.messages()); n != 0 || store.abortCount() != 1 {
		t.Errorf("%d committed, %d aborted", n, store.abortCount())
	}
}

func TestServeBindsAndReportsAddrs(t *testing.T) {
	cfg := baseConfig()
	cfg.Listeners = []Listener{{Name: "a", Address: "127.0.0.1:0"}, {Name: "b", Address: "127.0.0.1:0", Mode: ModeSMTP}}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs[0].String() == addrs[1].String() {
		t.Fatalf("Addrs %v", addrs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	for _, a := range addrs {
		c := dial(t, a.String())
		c.cmd("QUIT", "221")
	}
	cancel() // a cancelled Serve context stops the server
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if err := s.ServeListener("a", nil); err == nil {
		t.Errorf("ServeListener after shutdown: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	p := newPKI(t)
	for name, mod := range map[string]func(*Config){
		"no hostname":          func(c *Config) { c.Hostname = "" },
		"no store":             func(c *Config) { c.Store = nil },
		"no listeners":         func(c *Config) { c.Listeners = nil },
		"duplicate names":      func(c *Config) { c.Listeners = append(c.Listeners, Listener{Name: "mta"}) },
		"submission no TLS":    func(c *Config) { c.Listeners[0].Mode = ModeSubmission },
		"submission no users":  func(c *Config) { c.Listeners[0].Mode = ModeSubmissions; c.Listeners[0].TLS = p.server },
		"unknown mode":         func(c *Config) { c.Listeners[0].Mode = "lmtp" },
		"unknown mechanism":    func(c *Config) { c.Mechanisms = []string{"cram-md5"} },
		"bad bare newline":     func(c *Config) { c.BareNewline = "ignore" },
		"negative limit":       func(c *Config) { c.Hops = -1 },
		"invalid proxy prefix": func(c *Config) { c.Listeners[0].ProxyTrusted = make([]netip.Prefix, 1) },
	} {
		cfg := baseConfig()
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestListenAllOrNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := baseConfig()
	cfg.Listeners = []Listener{{Name: "free", Address: "127.0.0.1:0"}, {Name: "busy", Address: busy.Addr().String()}}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil || !strings.Contains(err.Error(), `listener "busy"`) {
		t.Fatalf("Listen: %v, want the busy listener named", err)
	}
	if a := s.Addrs(); len(a) != 0 {
		t.Errorf("Addrs after a failed Listen: %v", a)
	}
}
