package transport_test

// Deliver's promises: cancellation, panics, the hooks, the
// source address.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

func TestContextCancel(t *testing.T) {
	s := newFakeServer(t, script{hang: map[string]bool{"DATA": true}})
	c := newClient(t, nil)
	p := planFor(s.Addr)
	eachTarget(p, func(t *transport.Target) { t.Timeouts.Data = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	m := newMsg(body, "a@example.test", "b@example.test")
	start := time.Now()
	res := c.Deliver(ctx, p, m)
	if err := transport.CheckResults(m.Recipients, res); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("cancel took %v", el)
	}
	wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
	if !errors.Is(res[0].Err, context.DeadlineExceeded) {
		t.Errorf("err %v does not wrap the context error", res[0].Err)
	}
	// Already cancelled: no connection at all.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	res = c.Deliver(ctx, p, m)
	if err := transport.CheckResults(m.Recipients, res); err != nil {
		t.Fatal(err)
	}
	wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
}

// panicHooks panics when delivery reaches a target.
type panicHooks struct{}

func (panicHooks) BeforeConnect(context.Context, int, int) error { panic("boom in BeforeConnect") }

func TestPanicBecomesTemporary(t *testing.T) {
	s := newFakeServer(t, script{})
	p := planFor(s.Addr)
	p.Hooks = panicHooks{}
	res := deliver(t, newClient(t, nil), p, newMsg(body, "a@example.test", "b@example.test"))
	wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
	if !strings.Contains(res[0].Text, "boom") {
		t.Errorf("text %q", res[0].Text)
	}
}

// recordingHooks records the targets delivery reaches, and refuses those
// of the host named refuse.
type recordingHooks struct {
	mu     sync.Mutex
	plan   *transport.Plan
	refuse string
	calls  []string
}

func (r *recordingHooks) BeforeConnect(_ context.Context, host, target int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := &r.plan.Hosts[host]
	r.calls = append(r.calls, fmt.Sprintf("%s %v", h.Name, h.Targets[target].Addr))
	if h.Name == r.refuse {
		return &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 7, 0}, Class: transport.ClassConcurrency, Message: "throttle full"}
	}
	return nil
}

// TestHooks: BeforeConnect is called for each target tried, in order, and
// not for hosts after the one that took the message; its error skips the
// target with its class. Each target's own settings apply to its
// connection.
func TestHooks(t *testing.T) {
	s := newFakeServer(t, script{})
	p := planFor(closedPort(t), s.Addr, s.Addr)
	p.Hosts[0].Name, p.Hosts[1].Name, p.Hosts[2].Name = "throttled.example.test", "mx.example.test", "never.example.test"
	p.Hosts[0].Targets[0].Addr = netip.MustParseAddr("127.0.0.1")
	p.Hosts[1].Targets[0].EHLOName = "ehlo-for-mx"
	rh := &recordingHooks{plan: p, refuse: "throttled.example.test"}
	p.Hooks = rh
	res := deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	want := "throttled.example.test 127.0.0.1|mx.example.test 127.0.0.1"
	if got := strings.Join(rh.calls, "|"); got != want {
		t.Errorf("calls\n got %s\nwant %s", got, want)
	}
	if h := s.Messages()[0].Helo; h != "ehlo-for-mx" {
		t.Errorf("EHLO %q", h)
	}
	// The hook's error is the target's failure, with its class.
	p.Hosts = p.Hosts[:1]
	res = deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusTemporary, transport.ClassConcurrency)
	var te *transport.Error
	if !errors.As(error(res[0].Err), &te) || !te.Temporary() || te.Host != "throttled.example.test" {
		t.Errorf("err %#v", res[0].Err)
	}
}

// TestTargetSource: the transport binds the source address the plan
// gives each target (the engine chose it), and the kernel's choice when
// none.
func TestTargetSource(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	p := planFor(s.Addr)
	for _, src := range []string{"127.0.0.21", "127.0.0.22", ""} {
		want := netip.MustParseAddr("127.0.0.1")
		if src != "" {
			want = netip.MustParseAddr(src)
		}
		eachTarget(p, func(t *transport.Target) {
			t.Source = netip.Addr{}
			if src != "" {
				t.Source = want
			}
		})
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		if res[0].Source.Addr() != want {
			t.Errorf("source %v, want %v", res[0].Source, want)
		}
	}
}

func TestVerifierPanic(t *testing.T) {
	ca := smtpbed.NewCA(t)
	tcfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	s := newFakeServer(t, script{tls: tcfg})
	p := with(planFor(s.Addr), func(h *transport.Host) {
		h.Verifier = transport.VerifierFunc(func(tls.ConnectionState) error { panic("verifier bug") })
	})
	res := deliver(t, newClient(t, ca.Pool), p, newMsg(body, "a@example.test", "b@example.test"))
	wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
	if len(s.Messages()) != 0 {
		t.Error("delivered")
	}
}

// holdingHooks refuses every target with an error that wraps ErrHold.
type holdingHooks struct{ calls int }

func (h *holdingHooks) BeforeConnect(context.Context, int, int) error {
	h.calls++
	return &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 7, 0}, Class: transport.ClassRate,
		Message: "throttle full", Err: transport.ErrHold}
}

// TestHooksHold: an error wrapping ErrHold stops the delivery where it is:
// no other address nor host is tried (a full per-MX throttle must not
// push mail to a backup MX), and every recipient gets that error.
func TestHooksHold(t *testing.T) {
	s := newFakeServer(t, script{})
	p := planFor(s.Addr, s.Addr)
	hh := &holdingHooks{}
	p.Hooks = hh
	res := deliver(t, newClient(t, nil), p, newMsg(body, "a@example.test", "b@example.test"))
	wantAll(t, res, transport.StatusTemporary, transport.ClassRate)
	if hh.calls != 1 || s.Conns() != 0 {
		t.Errorf("BeforeConnect called %d times, %d connections; want 1 and 0", hh.calls, s.Conns())
	}
	if !errors.Is(res[0].Err, transport.ErrHold) || res[0].Text != "throttle full" {
		t.Errorf("result %+v", res[0])
	}
}
