package engine_test

// Delivery follows the decision: what a dry-run shows is what the
// transport does, host by host and address by address.

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// TestDeliverSourceAsEvaluated: the source address is picked once, by the
// evaluation. Two engines with the same seeded random source, one
// evaluating and one delivering the same messages, give the same source
// for every message; the transport used to pick again, with a draw of its
// own, so delivery bound another address than the dry-run showed about
// half of the time.
func TestDeliverSourceAsEvaluated(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	policy := oneRelayPolicy(sink.Addr, "ip-strategy:\n  source-ips: [127.0.0.2, 127.0.0.3]\nlimits:\n  messages-per-connection: 1\n")
	seeded := func() func() uint64 { return rand.New(rand.NewPCG(7, 9)).Uint64 }
	dry := newDeliverEngine(t, policy, engine.Options{Rand: seeded()})
	live := newDeliverEngine(t, policy, engine.Options{Rand: seeded()})
	msg := engine.Message{From: "alice@sender.test", To: []string{"bob@dest.test"}}
	seen := map[netip.Addr]int{}
	for i := range 20 {
		d, err := dry.Evaluate(context.Background(), msg)
		if err != nil {
			t.Fatal(err)
		}
		c := d.Groups[0].Hosts[0].Connections[0]
		if c.SourceIP == nil {
			t.Fatalf("message %d: the decision has no source address", i)
		}
		res := runDeliver(t, live, msg, deliverBody)
		wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
		if got := res[0].Source.Addr(); got != *c.SourceIP {
			t.Errorf("message %d: delivered from %v, the decision says %v", i, got, *c.SourceIP)
		}
		seen[*c.SourceIP]++
	}
	if len(seen) != 2 {
		t.Errorf("sources used %v: want both of source-ips", seen)
	}
}

// TestDeliverMessagesPerConnectionPerHost: limits.messages-per-connection
// is a host-phase setting and holds for each host. mx1 (1 message per
// connection) is down, mx2 (5) takes three messages over one connection;
// the first host's value used to apply to every host of the plan, so mx2
// got a connection per message.
func TestDeliverMessagesPerConnectionPerHost(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	proxy := startCountingProxy(t, sink.Addr)
	dir := t.TempDir()
	policy := `version: 1
hostname: mta.sender.test
tls:
  starttls: optional
  mta-sts: disable
limits:
  messages-per-connection:
    - if: mx == "mx1.multi.test"
      then: 1
    - else: 5
dns:
  resolver: static
  zone-file: zone.txt
`
	zone := `$TTL 300
$ORIGIN multi.test.
@    IN SOA ns1 hostmaster 1 3600 600 604800 300
@    IN NS  ns1
@    IN MX  10 mx1
@    IN MX  20 mx2
ns1  IN A   192.0.2.53
mx1  IN A   192.0.2.1
mx2  IN A   192.0.2.2
`
	for name, content := range map[string]string{"policy.yaml": policy, "zone.txt": zone} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dialer := redirectDialer{
		netip.MustParseAddr("192.0.2.1"): closedPort(t),
		netip.MustParseAddr("192.0.2.2"): proxy.Addr,
	}
	e, err := engine.LoadFile(filepath.Join(dir, "policy.yaml"), engine.Options{Dialer: dialer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	for i := range 3 {
		res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"bob@multi.test"}}, deliverBody)
		wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
		if res[0].Host != "mx2.multi.test" {
			t.Errorf("message %d delivered by %q, want mx2.multi.test", i, res[0].Host)
		}
	}
	if n := len(sink.WaitMessages(t, 3)); n != 3 {
		t.Errorf("the sink has %d messages, want 3", n)
	}
	if n := proxy.Settled(t); n != 1 {
		t.Errorf("%d connections to mx2, want 1 (messages-per-connection 5)", n)
	}
}

// redirectDialer dials the loopback address given for a remote address
// (the MX addresses of a test zone are documentation addresses).
type redirectDialer map[netip.Addr]netip.AddrPort

// DialContext dials d[remote's address], or fails for an address not in d.
func (d redirectDialer) DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	to, ok := d[remote.Addr()]
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError("no route in the test")}
	}
	return transport.NetDialer{}.DialContext(ctx, network, to, local)
}

// TestDeliverDSNParameters: the message's DSN parameters (RFC 3461) go on
// the wire when the server offers DSN: RET and ENVID on MAIL FROM, NOTIFY
// on every RCPT TO.
func TestDeliverDSNParameters(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, ""), engine.Options{})
	msg := engine.Message{From: "alice@sender.test", To: []string{"bob@dest.test", "carol@dest.test"},
		Ret: transport.ReturnHeaders, EnvID: "q-17", Notify: transport.NotifyFailure | transport.NotifyDelay}
	res := runDeliver(t, e, msg, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	m := sink.WaitMessages(t, 1)
	if len(m) != 1 {
		t.Fatalf("%d messages", len(m))
	}
	if want := "<alice@sender.test> BODY=8BITMIME RET=HDRS ENVID=q-17"; m[0].MailArgs != want {
		t.Errorf("MAIL FROM %q, want %q", m[0].MailArgs, want)
	}
	for _, a := range m[0].RcptArgs {
		if !strings.HasSuffix(a, " NOTIFY=FAILURE,DELAY") {
			t.Errorf("RCPT TO %q has no NOTIFY=FAILURE,DELAY", a)
		}
	}
}
