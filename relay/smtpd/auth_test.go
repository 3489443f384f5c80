package smtpd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/safefile"
	"golang.org/x/crypto/bcrypt"
)

func plain(identity, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(identity + "\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// authConfig: TLS, users alice/secret, and Networks that exclude the test
// clients' 127.0.0.7, so that relaying needs AUTH.
func authConfig(t *testing.T) (Config, *pki) {
	p := newPKI(t)
	cfg := baseConfig()
	cfg.Listeners[0].TLS = p.server
	cfg.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	_, users := usersFile(t, "alice", "secret")
	cfg.Users = users
	return cfg, p
}

func TestAuthOnlyAfterSTARTTLS(t *testing.T) {
	cfg, p := authConfig(t)
	te := start(t, cfg)
	c := dialFrom(t, "127.0.0.7", te.addr())
	c.ehlo()
	c.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "523 5.7.10")
	c.startTLS(p.client)
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b@example.org>", "554 5.7.1") // not yet authenticated
	c.cmd("RSET", "250")
	c.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "235 ")
	r := c.transaction("a@example.test", "b@example.org", simpleBody)
	if !strings.HasPrefix(r, "250 2.0.0 Ok: queued as") {
		t.Fatalf("reply %q", r)
	}
	m := te.store.messages()[0]
	if m.env.Auth != "alice" || !strings.Contains(string(m.body), "with ESMTPSA\r\n") {
		t.Errorf("Auth %q, body %q", m.env.Auth, m.body)
	}
	if log := te.log.String(); strings.Contains(log, "secret") || !strings.Contains(log, "auth=alice") {
		t.Errorf("log shows the password or not the identity:\n%s", log)
	}
}

func TestAuthLogin(t *testing.T) {
	cfg, p := authConfig(t)
	te := start(t, cfg)
	c := dialFrom(t, "127.0.0.7", te.addr())
	c.ehlo()
	c.startTLS(p.client)
	c.ehlo()
	if r := c.cmd("AUTH LOGIN", "334 "); r != "334 "+b64("Username:") {
		t.Fatalf("challenge %q", r)
	}
	if r := c.cmd(b64("alice"), "334 "); r != "334 "+b64("Password:") {
		t.Fatalf("challenge %q", r)
	}
	c.cmd(b64("secret"), "235")
	// With the user name as initial response, on another connection.
	c2 := dialFrom(t, "127.0.0.7", te.addr())
	c2.ehlo()
	c2.startTLS(p.client)
	c2.ehlo()
	c2.cmd("AUTH LOGIN "+b64("alice"), "334 "+b64("Password:"))
	c2.cmd(b64("wrong"), "535 5.7.8")
}

func TestAuthFailuresPerSession(t *testing.T) {
	cfg, p := authConfig(t)
	te := start(t, cfg)
	c := dialFrom(t, "127.0.0.7", te.addr())
	c.ehlo()
	c.startTLS(p.client)
	c.ehlo()
	c.cmd("AUTH PLAIN "+plain("", "alice", "wrong"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plain("bob", "alice", "secret"), "535 5.7.8") // identity must be the user
	c.cmd("AUTH PLAIN "+plain("", "mallory", "secret"), "421 4.7.0 relay.test ")
	if !c.closed() {
		t.Errorf("connection open after the third failure")
	}
	if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "auth"}); got != 3 {
		t.Errorf("rejects_total{auth} = %v, want 3", got)
	}
	if log := te.log.String(); strings.Contains(log, "wrong") || strings.Contains(log, "mallory") {
		t.Errorf("log shows what was tried:\n%s", log)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestAuthFailuresPerIP(t *testing.T) {
	cfg, p := authConfig(t)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clock.now
	cfg.MaxAuthFailuresPerIP = 2
	te := start(t, cfg)
	login := func(src string) *client {
		c := dialFrom(t, src, te.addr())
		c.ehlo()
		c.startTLS(p.client)
		c.ehlo()
		return c
	}
	c := login("127.0.0.7")
	c.cmd("AUTH PLAIN "+plain("", "alice", "x"), "535")
	c.cmd("AUTH PLAIN "+plain("", "alice", "y"), "535")
	c.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "454 4.7.0") // even the right password
	c2 := login("127.0.0.7")
	c2.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "454 4.7.0")
	other := login("127.0.0.8") // another address is not affected
	other.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "235")
	clock.add(AuthFailureWindow)
	c2.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "235")
}

func TestSubmissionRequiresTLSAndAuth(t *testing.T) {
	cfg, p := authConfig(t)
	cfg.Listeners[0].Mode = ModeSubmission
	cfg.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} // grants nothing here
	te := start(t, cfg)
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "530 5.7.0 Must issue a STARTTLS command first")
	c.startTLS(p.client)
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "530 5.7.0 Authentication required")
	c.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "235")
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b@example.org>", "250")
}

func TestSubmissionsImplicitTLS(t *testing.T) {
	cfg, p := authConfig(t)
	cfg.Listeners[0].Mode = ModeSubmissions
	te := start(t, cfg)
	tc, err := tls.Dial("tcp", te.addr(), p.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	c := &client{t: t, c: tc}
	c.r = bufio.NewReader(tc)
	c.expect("220 relay.test ")
	kws := c.ehlo()
	if !slices.Contains(kws, "AUTH PLAIN LOGIN") || slices.Contains(kws, "STARTTLS") {
		t.Errorf("EHLO %q", kws)
	}
	c.cmd("MAIL FROM:<a@example.test>", "530 5.7.0 Authentication required")
	c.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "235")
	if r := c.transaction("a@example.test", "b@example.org", simpleBody); !strings.HasPrefix(r, "250 ") {
		t.Fatal(r)
	}
}

func TestSetUsersAndSetTLS(t *testing.T) {
	cfg, p := authConfig(t)
	te := start(t, cfg)
	_, newUsers := usersFile(t, "bob", "hunter2")
	te.s.SetUsers(newUsers)
	leaf2 := p.ca.Issue(t, "relay2.test")
	if err := te.s.SetTLS("mta", &tls.Config{Certificates: []tls.Certificate{leaf2.Cert}}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, te.addr())
	c.ehlo()
	c.startTLS(&tls.Config{RootCAs: p.ca.Pool, ServerName: "relay2.test"}) // the new certificate
	c.ehlo()
	c.cmd("AUTH PLAIN "+plain("", "alice", "secret"), "535")
	c.cmd("AUTH PLAIN "+plain("", "bob", "hunter2"), "235")
	if err := te.s.SetTLS("mta", nil); err == nil {
		t.Errorf("SetTLS(nil) on a TLS listener accepted")
	}
	if err := te.s.SetTLS("nope", p.server); err == nil {
		t.Errorf("SetTLS of an unknown listener accepted")
	}
}

func TestLoadUsers(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	y := strings.Replace(string(h), "$2a$", "$2y$", 1)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("# users\n\nalice:"+y+"\n  bob:"+string(h)+"  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(good)
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 2 || !u.Verify("alice", "pw") || !u.Verify("bob", "pw") || u.Verify("alice", "PW") || u.Verify("carol", "pw") {
		t.Errorf("Verify results wrong")
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("alice:"+y+"\nno-colon\nbob:plaintext\nalice:"+y+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadUsers(bad)
	for _, want := range []string{bad + ":2: want user:bcrypt-hash", bad + `:3: user "bob": not a bcrypt hash`, bad + `:4: user "alice" listed twice`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	if _, err := LoadUsers(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("missing file accepted")
	}
}

// TestLoadUsersBounded: the policy names the users file, so LoadUsers
// refuses a FIFO at once (instead of hanging the daemon on its open or
// read) and a file larger than MaxUsersFile.
func TestLoadUsersBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "users.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadUsers(fifo); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("a FIFO: %v, want ErrNotRegular", err)
	}
	big := filepath.Join(dir, "users.big")
	line := "# " + strings.Repeat("x", 1000) + "\n"
	if err := os.WriteFile(big, []byte(strings.Repeat(line, MaxUsersFile/len(line)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadUsers(big); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("a file over MaxUsersFile: %v, want ErrTooLarge", err)
	}
}

// TestAuthFailuresPerIPv6Block: the AUTH failures of one IPv6 /84 count
// together, whatever its addresses; the next block is another client.
func TestAuthFailuresPerIPv6Block(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := &authLimiter{max: 2, now: clock.now, m: map[netip.Addr]*authWindow{}}
	l.fail(netip.MustParseAddr("2001:db8:1:2:3:4000::1"))
	l.fail(netip.MustParseAddr("2001:db8:1:2:3:4abc:dead:beef"))
	if !l.blocked(netip.MustParseAddr("2001:db8:1:2:3:4fff::2")) {
		t.Error("a third address of the same /84 is not blocked after 2 failures in it")
	}
	if l.blocked(netip.MustParseAddr("2001:db8:1:2:3:5000::1")) {
		t.Error("the next /84 is blocked")
	}
	if l.blocked(netip.MustParseAddr("192.0.2.1")) {
		t.Error("an IPv4 client is blocked")
	}
}
