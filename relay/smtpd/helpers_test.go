package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/relay/spool"
)

// memStore is a Store in memory that records what happened to each
// message.
type memStore struct {
	mu        sync.Mutex
	committed []storedMsg
	aborted   int
	n         int

	createErr error // returned by Create
	commitErr error // returned by Commit
	// created, when set, gets every envelope as Create is called.
	created chan *spool.Envelope
	// gate, when set, makes Commit wait for it (or for ctx).
	gate chan struct{}
}

type storedMsg struct {
	id   string
	env  spool.Envelope
	body []byte
}

func (s *memStore) Create(env *spool.Envelope) (Receipt, error) {
	if s.created != nil {
		s.created <- env
	}
	if s.createErr != nil {
		return nil, s.createErr
	}
	return &memReceipt{s: s, env: env}, nil
}

func (s *memStore) messages() []storedMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]storedMsg(nil), s.committed...)
}

func (s *memStore) abortCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

type memReceipt struct {
	s    *memStore
	env  *spool.Envelope
	buf  bytes.Buffer
	done bool
}

func (r *memReceipt) Write(p []byte) (int, error) {
	if r.done {
		return 0, errors.New("memReceipt: write after commit/abort")
	}
	return r.buf.Write(p)
}

func (r *memReceipt) Commit(ctx context.Context) (string, error) {
	if r.done {
		return "", errors.New("memReceipt: commit twice")
	}
	if r.s.gate != nil {
		select {
		case <-r.s.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if r.s.commitErr != nil {
		return "", r.s.commitErr
	}
	r.done = true
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.n++
	id := fmt.Sprintf("TESTID%010d", r.s.n)
	r.s.committed = append(r.s.committed, storedMsg{id: id, env: *r.env, body: bytes.Clone(r.buf.Bytes())})
	return id, nil
}

func (r *memReceipt) Abort() {
	if r.done {
		return
	}
	r.done = true
	r.s.mu.Lock()
	r.s.aborted++
	r.s.mu.Unlock()
}

// testEnv is a started server with its store and log.
type testEnv struct {
	s     *Server
	store *memStore
	log   *testbed.Buffer
	reg   *prometheus.Registry
	addrs map[string]string // listener name -> address
}

// baseConfig is one smtp listener "mta"; loopback may relay.
func baseConfig() Config {
	return Config{
		Hostname:  "relay.test",
		Listeners: []Listener{{Name: "mta"}},
		Networks:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Store:     &memStore{},
	}
}

// start serves cfg, every listener on a fresh 127.0.0.1 port, and shuts
// it down when the test ends.
func start(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	log := &testbed.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	te := &testEnv{s: s, store: cfg.Store.(*memStore), log: log, reg: reg, addrs: map[string]string{}}
	var wg sync.WaitGroup
	for _, l := range cfg.Listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		te.addrs[l.Name] = ln.Addr().String()
		wg.Go(func() {
			if err := s.ServeListener(l.Name, ln); !errors.Is(err, ErrServerClosed) {
				t.Errorf("ServeListener(%s): %v", l.Name, err)
			}
		})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		wg.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", log.String())
		}
	})
	return te
}

func (te *testEnv) addr() string { return te.addrs["mta"] }

// counter reads a metric of the test registry (0 when absent).
func (te *testEnv) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := te.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// client is a raw SMTP client: it sends exactly the bytes a test gives.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dial connects and reads the greeting.
func dial(t *testing.T, addr string) *client {
	t.Helper()
	c := dialNoGreeting(t, addr)
	c.expect("220 ")
	return c
}

func dialNoGreeting(t *testing.T, addr string) *client {
	t.Helper()
	return dialWith(t, &net.Dialer{}, addr)
}

// dialFrom connects from a chosen loopback source address and reads the
// greeting.
func dialFrom(t *testing.T, src, addr string) *client {
	t.Helper()
	c := dialWith(t, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}, addr)
	c.expect("220 ")
	return c
}

func dialWith(t *testing.T, d *net.Dialer, addr string) *client {
	t.Helper()
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	// A failsafe against a hung test, not a synchronisation.
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// reply reads one reply, all its lines joined by "\n".
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading a reply (so far %q): %v", lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect reads a reply whose last line starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r := c.reply()
	last := r[strings.LastIndexByte(r, '\n')+1:]
	if !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("reply %q, want %q...", r, prefix)
	}
	return r
}

// cmd sends a command line and expects a reply starting with prefix.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(prefix)
}

// ehlo returns the EHLO keywords.
func (c *client) ehlo() []string {
	c.t.Helper()
	r := c.cmd("EHLO client.test", "250")
	var kws []string
	for _, l := range strings.Split(r, "\n")[1:] {
		kws = append(kws, l[4:])
	}
	return kws
}

// startTLS upgrades the connection.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.cmd("STARTTLS", "220")
	tc := tls.Client(c.c, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.c = tc
	c.r = bufio.NewReader(tc)
}

// closed reports whether the server closed the connection (after any
// unread replies).
func (c *client) closed() bool {
	c.t.Helper()
	_, err := c.r.ReadByte()
	return err != nil
}

// transaction runs MAIL, RCPT and DATA with body (CRLF-terminated lines,
// without the final dot) and returns the reply to the end of data.
func (c *client) transaction(from, to, body string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250")
	c.cmd("RCPT TO:<"+to+">", "250")
	c.cmd("DATA", "354")
	c.send(body + ".\r\n")
	return c.reply()
}

// pki is a throwaway CA with a certificate for relay.test and 127.0.0.1.
type pki struct {
	ca     *smtpbed.CA
	server *tls.Config
	client *tls.Config
}

func newPKI(t *testing.T) *pki {
	ca := smtpbed.NewCA(t)
	leaf := ca.Issue(t, "relay.test", "127.0.0.1")
	return &pki{
		ca:     ca,
		server: &tls.Config{Certificates: []tls.Certificate{leaf.Cert}},
		client: &tls.Config{RootCAs: ca.Pool, ServerName: "relay.test"},
	}
}

// usersFile writes a users file (bcrypt at the lowest cost: fast tests)
// and loads it.
func usersFile(t *testing.T, userPass ...string) (string, *Users) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(userPass); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(userPass[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		// htpasswd -B writes $2y$; Go writes $2a$: store the former.
		fmt.Fprintf(&b, "%s:%s\n", userPass[i], strings.Replace(string(h), "$2a$", "$2y$", 1))
	}
	path := filepath.Join(t.TempDir(), "relay-users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, u
}

// simpleBody is a minimal well-formed message.
const simpleBody = "From: a@example.test\r\nTo: b@example.org\r\nSubject: hi\r\nMessage-ID: <m1@example.test>\r\n\r\nHello.\r\n"

func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}
