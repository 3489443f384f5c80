package smtpd

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// swaks runs the swaks SMTP client (a real client, as users run it) and
// returns its transcript; its exit status is not used, the transcript
// says what the server answered ("<-" replies, "<**" error replies; swaks
// writes "<~" and "<~*" under TLS, turned into the former here).
func swaks(t *testing.T, addr string, args ...string) string {
	t.Helper()
	bin := testbed.Require(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{"--server", addr, "--from", "a@example.test", "--to", "b@example.org",
		"--helo", "swaks.test", "--timeout", "20"}, args...)
	out, _ := exec.CommandContext(ctx, bin, argv...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("swaks %q did not finish:\n%s", argv, out)
	}
	return strings.NewReplacer("<~* ", "<** ", "<~  ", "<-  ", " ~> ", " -> ").Replace(string(out))
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("swaks transcript lacks %q:\n%s", w, out)
		}
	}
}

func TestSwaksQueued(t *testing.T) {
	te := start(t, baseConfig())
	out := swaks(t, te.addr(), "--pipeline")
	if !regexp.MustCompile(`(?m)^<-  250 2\.0\.0 Ok: queued as TESTID\d+\r?$`).MatchString(out) {
		t.Fatalf("no 250 queued reply:\n%s", out)
	}
	msgs := te.store.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages stored", len(msgs))
	}
	m := msgs[0]
	if !strings.HasPrefix(string(m.body), "Received: from swaks.test (unknown [127.0.0.1])\r\n\tby relay.test (Postern) with ESMTP\r\n") {
		t.Errorf("stored body does not start with our Received header:\n%s", m.body)
	}
	if m.env.From != "a@example.test" || m.env.Recipients[0].Addr != "b@example.org" || m.env.HELO != "swaks.test" ||
		m.env.MessageID == "" || !strings.Contains(string(m.body), "\r\nMessage-Id: "+m.env.MessageID+"\r\n") {
		t.Errorf("envelope %+v", m.env)
	}
	if !strings.Contains(string(m.body), "\r\nSubject: test ") {
		t.Errorf("swaks' message missing from the body:\n%s", m.body)
	}
}

func TestSwaksRelayDenied(t *testing.T) {
	cfg := baseConfig()
	cfg.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	te := start(t, cfg)
	out := swaks(t, te.addr(), "--local-interface", "127.0.0.5")
	mustContain(t, out, "<** 554 5.7.1 Relay access denied")
	if n := len(te.store.messages()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
	if !strings.Contains(te.log.String(), "client=unknown[127.0.0.5]") {
		t.Errorf("refusal not logged with the client address:\n%s", te.log.String())
	}
}

func TestSwaksAuthAfterSTARTTLS(t *testing.T) {
	cfg, p := authConfig(t) // Networks do not contain 127.0.0.7
	te := start(t, cfg)
	tlsArgs := []string{"--local-interface", "127.0.0.7", "--tls", "--tls-verify", "--tls-ca-path", p.ca.CertFile, "--tls-sni", "relay.test"}

	// Before STARTTLS: STARTTLS offered, AUTH not.
	out := swaks(t, te.addr(), "--local-interface", "127.0.0.7", "--quit-after", "EHLO")
	mustContain(t, out, "<-  250-STARTTLS")
	if strings.Contains(out, "AUTH") {
		t.Errorf("AUTH advertised before STARTTLS:\n%s", out)
	}
	// After STARTTLS, with the right password: queued.
	out = swaks(t, te.addr(), append(tlsArgs, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret")...)
	mustContain(t, out, "<-  250-AUTH PLAIN LOGIN", "<-  235 ", "<-  250 2.0.0 Ok: queued as")
	// LOGIN works too.
	out = swaks(t, te.addr(), append(tlsArgs, "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", "secret")...)
	mustContain(t, out, "<-  235 ", "<-  250 2.0.0 Ok: queued as")
	msgs := te.store.messages()
	if len(msgs) != 2 || msgs[0].env.Auth != "alice" || !strings.HasPrefix(msgs[0].env.TLS, "TLSv1.") {
		t.Fatalf("stored %+v", msgs)
	}
	// A wrong password is refused and counted.
	out = swaks(t, te.addr(), append(tlsArgs, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong")...)
	mustContain(t, out, "<** 535 5.7.8")
	if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "auth"}); got != 1 {
		t.Errorf("rejects_total{auth} = %v, want 1", got)
	}
	if strings.Contains(te.log.String(), "wrong") || strings.Contains(te.log.String(), "secret") {
		t.Errorf("a password reached the log:\n%s", te.log.String())
	}
}

func TestSwaksAuthMaxFailures(t *testing.T) {
	cfg, p := authConfig(t)
	cfg.MaxAuthFailures = 1
	te := start(t, cfg)
	out := swaks(t, te.addr(), "--local-interface", "127.0.0.7", "--tls", "--tls-ca-path", p.ca.CertFile,
		"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong")
	mustContain(t, out, "<** 421 4.7.0 relay.test Too many authentication failures")
	if n := len(te.store.messages()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}
