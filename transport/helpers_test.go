package transport_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/transport"
)

// marker is in body: finding it on a wire shows the message went there.
const marker = "MARKER-7f3a9c-SECRET-BODY"

// body is the message most tests send.
var body = "From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\n" + marker + "\r\n"

// testTimeouts keep a broken test from hanging for minutes.
var testTimeouts = transport.Timeouts{
	Connect: 2 * time.Second, Greeting: 2 * time.Second, EHLO: 2 * time.Second, MailFrom: 2 * time.Second,
	RcptTo: 2 * time.Second, Data: 2 * time.Second,
}

// shortTimeouts make every phase time out after 200ms.
var shortTimeouts = transport.Timeouts{
	Connect: 200 * time.Millisecond, Greeting: 200 * time.Millisecond, EHLO: 200 * time.Millisecond,
	MailFrom: 200 * time.Millisecond, RcptTo: 200 * time.Millisecond, Data: 200 * time.Millisecond,
}

// target is a target at addr with the test EHLO name and timeouts.
func target(addr netip.Addr) transport.Target {
	return transport.Target{Addr: addr, EHLOName: "client.example.org", Timeouts: testTimeouts}
}

// hostAt is a host named name whose only address is addr.
func hostAt(name string, addr netip.AddrPort, mods ...func(*transport.Host)) transport.Host {
	h := transport.Host{Name: name, Targets: []transport.Target{target(addr.Addr())}, Port: int(addr.Port()),
		HandshakeTimeout: 2 * time.Second}
	for _, m := range mods {
		m(&h)
	}
	return h
}

// planFor is a plan with one host per address, all named mx.example.test.
func planFor(addrs ...netip.AddrPort) *transport.Plan {
	p := &transport.Plan{}
	for i, a := range addrs {
		p.Hosts = append(p.Hosts, hostAt("mx.example.test", a, func(h *transport.Host) { h.Preference = 10 * (i + 1) }))
	}
	return p
}

// setMPC sets every host's messages per connection.
func setMPC(p *transport.Plan, n int) {
	for i := range p.Hosts {
		p.Hosts[i].MessagesPerConnection = n
	}
}

// eachTarget applies f to every target of p.
func eachTarget(p *transport.Plan, f func(*transport.Target)) {
	for i := range p.Hosts {
		for j := range p.Hosts[i].Targets {
			f(&p.Hosts[i].Targets[j])
		}
	}
}

// setShortTimeouts makes every phase of every connection of p, the TLS
// handshake included, time out after 200ms.
func setShortTimeouts(p *transport.Plan) {
	eachTarget(p, func(t *transport.Target) { t.Timeouts = shortTimeouts })
	for i := range p.Hosts {
		p.Hosts[i].HandshakeTimeout = 200 * time.Millisecond
	}
}

// with applies mods to every host of p.
func with(p *transport.Plan, mods ...func(*transport.Host)) *transport.Plan {
	for i := range p.Hosts {
		for _, m := range mods {
			m(&p.Hosts[i])
		}
	}
	return p
}

func requireTLS(h *transport.Host)   { h.StartTLS = transport.StartTLSRequire }
func disableTLS(h *transport.Host)   { h.StartTLS = transport.StartTLSDisable }
func allowInvalid(h *transport.Host) { h.AllowInvalidCerts = true }

// newMsg makes a message from sender@example.org.
func newMsg(body string, rcpts ...string) *transport.Message {
	m := &transport.Message{From: "sender@example.org", Body: strings.NewReader(body), Size: int64(len(body))}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, transport.Recipient{Address: r})
	}
	return m
}

// newClient makes a client that trusts roots (nil: system) and is closed
// when the test ends.
func newClient(t testing.TB, roots *x509.CertPool) *transport.Client {
	c := &transport.Client{RootCAs: roots}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deliver runs Deliver with a 20s safety net and checks the
// one-result-per-recipient promise.
func deliver(t testing.TB, c *transport.Client, p *transport.Plan, m *transport.Message) []transport.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := c.Deliver(ctx, p, m)
	if err := transport.CheckResults(m.Recipients, res); err != nil {
		t.Fatalf("CheckResults: %v\nresults: %s", err, dump(res))
	}
	return res
}

func dump(res []transport.Result) string {
	var b strings.Builder
	for _, r := range res {
		b.WriteString("\n  ")
		b.WriteString(r.Recipient + " " + r.Status.String() + " " + r.Text)
		if r.Err != nil {
			b.WriteString(" [" + r.Err.Error() + "]")
		}
		b.WriteString(" class=" + string(r.Class) + " tls=" + r.TLS.String())
		for _, w := range r.Warnings {
			b.WriteString(" warning=" + w.String())
		}
	}
	return b.String()
}

// wantStatus fails unless the results have these statuses, in order.
func wantStatus(t testing.TB, res []transport.Result, want ...transport.Status) {
	t.Helper()
	for i, r := range res {
		if i < len(want) && r.Status != want[i] {
			t.Errorf("result %d (%s): status %v, want %v%s", i, r.Recipient, r.Status, want[i], dump(res))
		}
	}
}

// wantAll fails unless every result has status st and class cl.
func wantAll(t testing.TB, res []transport.Result, st transport.Status, cl transport.Class) {
	t.Helper()
	for i, r := range res {
		if r.Status != st || r.Class != cl {
			t.Errorf("result %d (%s): %v/%s, want %v/%s%s", i, r.Recipient, r.Status, r.Class, st, cl, dump(res))
		}
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t testing.TB) netip.AddrPort {
	s := newFakeServer(t, script{})
	a := s.Addr
	s.ln.Close()
	return a
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
