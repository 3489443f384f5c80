package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/dns"
)

// staticEngine returns an engine for the policy text (named "policy.yaml"
// in positions) answering DNS from the zone text.
func staticEngine(t testing.TB, policy, zone string, secure bool) *engine.Engine {
	t.Helper()
	res, err := dns.NewStaticFromReader(bytes.NewReader([]byte(zone)), "zone.txt", secure)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policies.Parse("policy.yaml", []byte(policy), policies.Options{Hostname: goldenHostname})
	if err != nil {
		t.Fatalf("policy does not load:\n%v", err)
	}
	e, err := engine.New(set, engine.Options{Resolver: res, Rand: seeded(1)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// evaluate decides msg with tracing and a fixed seed.
func evaluate(t testing.TB, e *engine.Engine, from string, to ...string) *engine.Decision {
	t.Helper()
	d, err := e.Evaluate(context.Background(), engine.Message{From: from, To: to}, engine.WithTrace(), engine.WithRand(seeded(1)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// groupOf returns the group holding rcpt.
func groupOf(t testing.TB, d *engine.Decision, rcpt string) *engine.Group {
	t.Helper()
	for _, g := range d.Groups {
		for _, r := range g.Recipients {
			if r == rcpt {
				return g
			}
		}
	}
	t.Fatalf("no group holds %s", rcpt)
	return nil
}

// deliverZone answers every lookup of the delivery tests: relay names that
// resolve to loopback (allowed for relays), and a null-MX domain.
const deliverZone = `$TTL 300
$ORIGIN relay.test.
@          IN SOA ns1 hostmaster 1 3600 600 604800 300
@          IN NS  ns1
ns1        IN A   192.0.2.53
smtp       IN A   127.0.0.1
two        IN A   127.0.0.2
two        IN A   127.0.0.3
$ORIGIN nullmx.test.
@          IN SOA ns1.relay.test. hostmaster.relay.test. 1 3600 600 604800 300
@          IN NS  ns1.relay.test.
@          IN MX  0 .
`

// deliverBody has CRLF line ends, a line that is a lone dot, lines starting
// with dots, a bare LF and 8-bit text: everything dot-stuffing and line-end
// normalisation must get right.
const deliverBody = "From: Alice <alice@sender.test>\r\n" +
	"To: undisclosed-recipients:;\r\n" +
	"Subject: engine delivery test\r\n" +
	"Message-ID: <deliver-test@sender.test>\r\n" +
	"\r\n" +
	"first line\r\n" +
	".\r\n" +
	"..two dots\r\n" +
	".leading dot\r\n" +
	"bare LF\n" +
	"caf\xc3\xa9\r\n" +
	"last line\r\n"

// sinkBody is deliverBody as smtp-sink dumps it: LF line ends, dots
// unstuffed.
var sinkBody = strings.ReplaceAll(deliverBody, "\r\n", "\n")

// writeDeliverPolicy writes policy (with "dns: static zone.txt" appended)
// and the zone into a temporary directory and returns the policy's path.
func writeDeliverPolicy(t testing.TB, policy string) string {
	t.Helper()
	dir := t.TempDir()
	policy = "version: 1\nhostname: mta.sender.test\n" + policy +
		"dns:\n  resolver: static\n  zone-file: zone.txt\n"
	for name, content := range map[string]string{"policy.yaml": policy, "zone.txt": deliverZone} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "policy.yaml")
}

// newDeliverEngine loads policy (see writeDeliverPolicy) into an engine
// that is closed when the test ends.
func newDeliverEngine(t testing.TB, policy string, opts engine.Options) *engine.Engine {
	t.Helper()
	e, err := engine.LoadFile(writeDeliverPolicy(t, policy), opts)
	if err != nil {
		t.Fatalf("load policy:\n%s\n%v", policy, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// deliver runs e.Deliver with a bounded context and checks the results'
// shape with checkDeliverResults.
func runDeliver(t testing.TB, e *engine.Engine, msg engine.Message, body string) []engine.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.Deliver(ctx, msg, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	checkDeliverResults(t, msg.To, res)
	return res
}

// checkDeliverResults asserts the engine's promise: exactly one result per
// entry of to, in order (a recipient listed twice gets two); the results of
// delivery attempts pass transport.CheckResults; local ones carry no
// status, code or error.
func checkDeliverResults(t testing.TB, to []string, res []engine.Result) {
	t.Helper()
	if len(res) != len(to) {
		t.Fatalf("%d results for %d recipients:\n%s", len(res), len(to), formatResults(res))
	}
	var (
		rcpts []transport.Recipient
		tres  []transport.Result
	)
	for i, r := range res {
		if r.Recipient != to[i] {
			t.Errorf("result %d is for %q, want %q", i, r.Recipient, to[i])
		}
		if r.Local {
			if r.Status != transport.StatusUnknown || r.Err != nil || r.Code != 0 || r.Route == "" ||
				r.StatusText() != "local" || r.Address.IsValid() {
				t.Errorf("local result %d is not a bare hand-back: %+v", i, r)
			}
			continue
		}
		rcpts = append(rcpts, transport.Recipient{Address: to[i]})
		tres = append(tres, r.Result)
	}
	if err := transport.CheckResults(rcpts, tres); err != nil {
		t.Errorf("CheckResults: %v\n%s", err, formatResults(res))
	}
}

// formatResults lists res one line per result, for failure messages.
func formatResults(res []engine.Result) string {
	var b strings.Builder
	for i, r := range res {
		fmt.Fprintf(&b, "  %d %s %s route=%s code=%d %s %q class=%s host=%s addr=%v src=%v tls=%v retry=%v\n",
			i, r.Recipient, r.StatusText(), r.Route, r.Code, r.Enhanced, r.Text, r.Class, r.Host, r.Address,
			r.Source, r.TLS, r.RetryAfter)
	}
	return b.String()
}

// wantResult checks the status and class of res[i], the result of a
// delivery attempt (a local result fails it: see wantLocal).
func wantResult(t testing.TB, res []engine.Result, i int, status transport.Status, class transport.Class) {
	t.Helper()
	if res[i].Local || res[i].Status != status || res[i].Class != class {
		t.Errorf("result %d (%s): %s class %s, want %s class %s\n%s", i, res[i].Recipient,
			res[i].StatusText(), res[i].Class, status, class, formatResults(res))
	}
}

// wantLocal checks that res[i] was handed back to the embedder: local,
// through route.
func wantLocal(t testing.TB, res []engine.Result, i int, route string) {
	t.Helper()
	if !res[i].Local || res[i].StatusText() != "local" || res[i].Route != route {
		t.Errorf("result %d (%s): %s route %s, want local route %s\n%s", i, res[i].Recipient,
			res[i].StatusText(), res[i].Route, route, formatResults(res))
	}
}

// relayRoute is a relay route to addr, plus extra YAML keys.
func relayRoute(name string, addr netip.AddrPort, extra ...string) string {
	s := fmt.Sprintf("    %s:\n      type: relay\n      address: %s\n      port: %d\n", name, addr.Addr(), addr.Port())
	for _, e := range extra {
		s += "      " + e + "\n"
	}
	return s
}

// oneRelayPolicy routes every recipient to addr, then appends extra.
func oneRelayPolicy(addr netip.AddrPort, extra string, routeKeys ...string) string {
	return "routing:\n  route: sink\n  routes:\n" + relayRoute("sink", addr, routeKeys...) + extra
}

// rcptArgs returns the RCPT TO arguments the sink saw, sorted.
func rcptArgs(m smtpbed.Dumped) []string {
	out := slices.Clone(m.RcptArgs)
	slices.Sort(out)
	return out
}

// crlfBody is deliverBody as a receiver that keeps CRLF sees it: the bare
// LF became CRLF, dots unstuffed.
var crlfBody = strings.ReplaceAll(sinkBody, "\n", "\r\n")

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) netip.AddrPort { return testbed.ClosedPort(t) }

// startCountingProxy puts a connection-counting proxy in front of target.
func startCountingProxy(t testing.TB, target netip.AddrPort) *testbed.Proxy {
	return testbed.StartProxy(t, target)
}

// peakDialer dials like the transport's default and records the largest
// number of connections open at the same time.
type peakDialer struct {
	open, peak atomic.Int32
}

// DialContext dials with [transport.NetDialer] and counts the connection
// open until it is closed.
func (d *peakDialer) DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	c, err := transport.NetDialer{}.DialContext(ctx, network, remote, local)
	if err != nil {
		return nil, err
	}
	n := d.open.Add(1)
	for p := d.peak.Load(); n > p && !d.peak.CompareAndSwap(p, n); p = d.peak.Load() {
	}
	return &countedConn{Conn: c, d: d}, nil
}

// countedConn is a connection of a peakDialer: closing it (once) takes it
// off the dialer's count.
type countedConn struct {
	net.Conn
	d    *peakDialer
	once sync.Once
}

// Close closes the connection and, the first time, takes it off the count.
func (c *countedConn) Close() error {
	c.once.Do(func() { c.d.open.Add(-1) })
	return c.Conn.Close()
}
