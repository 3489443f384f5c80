package transport_test

// Deliver's promises: cancellation, panics, the Settings callbacks, the
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
	p.Timeouts.Data = time.Minute
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

type panicSettings struct{ where string }

func (p panicSettings) PrepareHost(context.Context, *transport.Host) error {
	if p.where == "host" {
		panic("boom in PrepareHost")
	}
	return nil
}

func (p panicSettings) ConnectionSettings(context.Context, *transport.Host, netip.Addr, netip.Addr) (transport.ConnSettings, error) {
	if p.where == "conn" {
		panic("boom in ConnectionSettings")
	}
	return transport.ConnSettings{}, nil
}

func TestPanicBecomesTemporary(t *testing.T) {
	s := newFakeServer(t, script{})
	for _, where := range []string{"host", "conn"} {
		p := planFor(s.Addr)
		p.Settings = panicSettings{where}
		res := deliver(t, newClient(t, nil), p, newMsg(body, "a@example.test", "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
		if !strings.Contains(res[0].Text, "boom") {
			t.Errorf("text %q", res[0].Text)
		}
	}
}

// recordingSettings fills in addresses lazily and picks the EHLO name per
// connection.
type recordingSettings struct {
	mu    sync.Mutex
	addr  netip.AddrPort
	calls []string
}

func (r *recordingSettings) PrepareHost(_ context.Context, h *transport.Host) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "host "+h.Name)
	switch h.Name {
	case "broken.example.test":
		return &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 7, 5}, Class: transport.ClassDANE, Message: "TLSA lookup SERVFAIL"}
	case "mx.example.test":
		h.Addresses = []netip.Addr{r.addr.Addr()}
		h.Port = int(r.addr.Port())
	}
	return nil
}

func (r *recordingSettings) ConnectionSettings(_ context.Context, h *transport.Host, remote, local netip.Addr) (transport.ConnSettings, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("conn %s %v %v", h.Name, remote, local))
	return transport.ConnSettings{EHLOName: "ehlo-for-" + remote.String(), Timeouts: transport.Timeouts{Data: time.Second}}, nil
}

func TestSettingsCallbacks(t *testing.T) {
	s := newFakeServer(t, script{})
	rs := &recordingSettings{addr: s.Addr}
	p := &transport.Plan{Settings: rs, Timeouts: testTimeouts, Hosts: []transport.Host{
		{Name: "broken.example.test"}, {Name: "mx.example.test"}, {Name: "never.example.test"},
	}}
	res := deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	want := "host broken.example.test|host mx.example.test|conn mx.example.test 127.0.0.1 invalid IP"
	if got := strings.Join(rs.calls, "|"); got != want {
		t.Errorf("calls\n got %s\nwant %s", got, want)
	}
	if h := s.Messages()[0].Helo; h != "ehlo-for-127.0.0.1" {
		t.Errorf("EHLO %q", h)
	}
	// A PrepareHost error is the host's failure, with its class.
	p.Hosts = p.Hosts[:1]
	res = deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusTemporary, transport.ClassDANE)
	var te *transport.Error
	if !errors.As(error(res[0].Err), &te) || !te.Temporary() || te.Host != "broken.example.test" {
		t.Errorf("err %#v", res[0].Err)
	}
}

func TestSourceIPSpread(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	p := planFor(s.Addr)
	p.Hosts[0].SourceIPs = []netip.Addr{
		netip.MustParseAddr("127.0.0.21"), netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.22"),
	}
	seen := map[netip.Addr]int{}
	for range 6 {
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		seen[res[0].Source.Addr()]++
	}
	if seen[netip.MustParseAddr("127.0.0.21")] != 3 || seen[netip.MustParseAddr("127.0.0.22")] != 3 {
		t.Errorf("sources %v", seen)
	}
	// An injected Rand decides.
	c2 := &transport.Client{Rand: func(n int) int { return n - 1 }}
	defer c2.Close()
	res := deliver(t, c2, p, newMsg(body, "b@example.test"))
	if res[0].Source.Addr() != netip.MustParseAddr("127.0.0.22") {
		t.Errorf("source %v", res[0].Source)
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
