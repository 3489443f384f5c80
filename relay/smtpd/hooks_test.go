package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
)

func TestStoreFailuresNeverAck(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		createErr, commitErr error
		want, reason         string
	}{
		{"commit I/O error", nil, errors.New("fsync: input/output error"), "451 4.3.0", ""},
		{"commit ENOSPC", nil, fmt.Errorf("spool: write tmp/X: %w", syscall.ENOSPC), "452 4.3.1", "disk"},
		{"commit ErrNoSpace", nil, fmt.Errorf("spool: %w", ErrNoSpace), "452 4.3.1", "disk"},
		{"create EDQUOT", &net.OpError{Op: "write", Err: syscall.EDQUOT}, nil, "452 4.3.1", "disk"},
		{"create queue full", ErrQueueFull, nil, "452 4.3.1", "queue_full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			store := &memStore{createErr: tc.createErr, commitErr: tc.commitErr}
			cfg.Store = store
			te := start(t, cfg)
			c := dial(t, te.addr())
			c.ehlo()
			r := c.transaction("a@example.test", "b@example.org", simpleBody)
			if !strings.HasPrefix(r, tc.want+" ") {
				t.Fatalf("reply %q, want %s", r, tc.want)
			}
			if strings.Contains(r, "fsync") || strings.Contains(r, "spool") {
				t.Errorf("reply shows the internal error: %q", r)
			}
			if n := len(store.messages()); n != 0 {
				t.Errorf("%d committed", n)
			}
			if tc.createErr == nil && store.abortCount() != 1 {
				t.Errorf("receipt aborted %d times, want 1", store.abortCount())
			}
			if !strings.Contains(te.log.String(), "level=ERROR msg=\"message not queued: store failed\"") {
				t.Errorf("store failure not logged at error level:\n%s", te.log.String())
			}
			if got := te.counter(t, "postern_relay_messages_received_total", map[string]string{"result": "tempfail"}); got != 1 {
				t.Errorf("messages_received_total{tempfail} = %v", got)
			}
			if tc.reason != "" {
				if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": tc.reason}); got != 1 {
					t.Errorf("rejects_total{%s} = %v", tc.reason, got)
				}
			}
			// The session goes on.
			c.cmd("NOOP", "250")
		})
	}
}

func TestAdmitErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		want   string
		closes bool
	}{
		{ErrQueueFull, "452 4.3.1", false},
		{fmt.Errorf("free space below 5%%: %w", ErrNoSpace), "452 4.3.1", false},
		{ErrShuttingDown, "421 4.3.2 relay.test ", true},
		{errors.New("something odd"), "451 4.3.0", false},
	} {
		t.Run(tc.want, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Admit = func(context.Context) error { return tc.err }
			te := start(t, cfg)
			c := dial(t, te.addr())
			c.ehlo()
			c.cmd("MAIL FROM:<a@example.test>", tc.want)
			if tc.closes {
				if !c.closed() {
					t.Errorf("connection left open after 421")
				}
			} else {
				c.cmd("NOOP", "250") // still open
			}
		})
	}
	cfg := baseConfig()
	admitted := 0
	cfg.Admit = func(context.Context) error { admitted++; return nil }
	te := start(t, cfg)
	c := dial(t, te.addr())
	c.ehlo()
	c.transaction("a@example.test", "b@example.org", simpleBody)
	if admitted != 1 || len(te.store.messages()) != 1 {
		t.Errorf("Admit called %d times, %d stored", admitted, len(te.store.messages()))
	}
}

func TestRelayDeniedOutsideNetworks(t *testing.T) {
	cfg := baseConfig()
	cfg.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	te := start(t, cfg)
	c := dialFrom(t, "127.0.0.5", te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b@example.org>", "554 5.7.1 Relay access denied")
	if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "relay_denied"}); got != 1 {
		t.Errorf("rejects_total{relay_denied} = %v", got)
	}
	// And from inside: allowed.
	c2 := dial(t, te.addr())
	c2.ehlo()
	c2.cmd("MAIL FROM:<a@example.test>", "250")
	c2.cmd("RCPT TO:<b@example.org>", "250")
}

func TestPermitOverridesDefault(t *testing.T) {
	cfg := baseConfig()
	cfg.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	var seen []PermitInput
	cfg.Permit = func(_ context.Context, in PermitInput) (bool, error) {
		seen = append(seen, in)
		switch in.RcptDomain {
		case "denied.example":
			return false, nil // a rule "then: false"
		case "allowed.example":
			return true, nil // a rule "then: true"
		case "broken.example":
			return true, errors.New("rule failed") // never allows
		}
		return in.Default, nil // no rule matched
	}
	te := start(t, cfg)
	inside := dial(t, te.addr())
	inside.ehlo()
	inside.cmd("MAIL FROM:<a@example.test>", "250")
	inside.cmd("RCPT TO:<b@Denied.Example>", "554 5.7.1")
	inside.cmd("RCPT TO:<b@other.example>", "250")
	inside.cmd("RCPT TO:<b@broken.example>", "451 4.3.0")
	outside := dialFrom(t, "127.0.0.6", te.addr())
	outside.ehlo()
	outside.cmd("MAIL FROM:<a@example.test>", "250")
	outside.cmd("RCPT TO:<b@other.example>", "554 5.7.1")
	outside.cmd("RCPT TO:<b@allowed.example>", "250")
	want := PermitInput{ClientIP: netip.MustParseAddr("127.0.0.1"), Sender: "a@example.test", Rcpt: "b@Denied.Example",
		RcptDomain: "denied.example", Listener: "mta", Default: true}
	if len(seen) != 5 || seen[0] != want || seen[3].Default || seen[3].ClientIP != netip.MustParseAddr("127.0.0.6") {
		t.Errorf("Permit saw %+v", seen)
	}
}
