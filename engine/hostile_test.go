package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/transport/dns"
)

// TestRefusedTarget: the addresses an MX host's DNS may never send
// delivery to, in every form, and the private ranges only on request.
func TestRefusedTarget(t *testing.T) {
	for _, tt := range []struct {
		addr          string
		never, refuse string // reason always; reason with refuse-private ("" = allowed)
	}{
		{"192.0.2.25", "", ""},
		{"2001:db8::25", "", ""},
		{"8.8.8.8", "", ""},
		{"0.0.0.0", "unspecified", "unspecified"},
		{"0.1.2.3", "unspecified", "unspecified"},
		{"127.0.0.1", "loopback", "loopback"},
		{"127.255.255.254", "loopback", "loopback"},
		{"169.254.169.254", "link-local", "link-local"}, // cloud metadata services live here
		{"224.0.0.1", "multicast", "multicast"},
		{"239.255.255.250", "multicast", "multicast"},
		{"255.255.255.255", "reserved or broadcast", "reserved or broadcast"},
		{"240.0.0.1", "reserved or broadcast", "reserved or broadcast"},
		{"::", "unspecified", "unspecified"},
		{"::1", "loopback", "loopback"},
		{"fe80::1", "link-local", "link-local"},
		{"febf::1", "link-local", "link-local"},
		{"ff02::1", "multicast", "multicast"},
		{"::ffff:127.0.0.1", "loopback, embedded in IPv6", "loopback, embedded in IPv6"},
		{"::ffff:169.254.1.1", "link-local, embedded in IPv6", "link-local, embedded in IPv6"},
		{"::127.0.0.1", "loopback, embedded in IPv6", "loopback, embedded in IPv6"},            // IPv4-compatible
		{"64:ff9b::7f00:1", "loopback, embedded in IPv6", "loopback, embedded in IPv6"},        // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", "link-local, embedded in IPv6", "link-local, embedded in IPv6"}, // NAT64 of 169.254.169.254
		{"64:ff9b::c000:219", "", ""},                                                          // NAT64 of 192.0.2.25
		{"::ffff:192.0.2.25", "", ""},
		{"10.1.2.3", "", "private"},
		{"172.16.0.1", "", "private"},
		{"172.31.255.255", "", "private"},
		{"172.32.0.1", "", ""},
		{"192.168.1.1", "", "private"},
		{"100.64.0.1", "", "private"},
		{"fd00::1", "", "private"},
		{"fec0::1", "", "private"},
		{"::ffff:10.0.0.1", "", "private, embedded in IPv6"},
		{"64:ff9b::a00:1", "", "private, embedded in IPv6"},
		{"64:ff9b:1::a00:1", "", "private"}, // local-use NAT64
	} {
		a := netip.MustParseAddr(tt.addr)
		if got := refusedTarget(a, false); got != tt.never {
			t.Errorf("%s: %q, want %q", tt.addr, got, tt.never)
		}
		if got := refusedTarget(a, true); got != tt.refuse {
			t.Errorf("%s with refuse-private: %q, want %q", tt.addr, got, tt.refuse)
		}
	}
}

// TestThrottleKeyUnambiguous: values containing the separator must not
// make two different tuples share a counter.
func TestThrottleKeyUnambiguous(t *testing.T) {
	keys := []string{"sender", "rcpt_domain"}
	a := throttleKey(keys, &expr.Env{Sender: "a|b", RcptDomain: "c"})
	b := throttleKey(keys, &expr.Env{Sender: "a", RcptDomain: "b|c"})
	c := throttleKey(keys, &expr.Env{Sender: `a\`, RcptDomain: "|c"})
	if a == b || a == c || b == c {
		t.Errorf("collision: %q %q %q", a, b, c)
	}
	if got := throttleKey(keys, &expr.Env{Sender: "alice@example.org", RcptDomain: "example.com"}); got != "alice@example.org|example.com" {
		t.Errorf("ordinary key %q", got)
	}
	if got := throttleKey(nil, &expr.Env{}); got != "*" {
		t.Errorf("global key %q", got)
	}
}

// loadPolicy writes files (name -> content) to a directory and loads
// policy.yaml from it.
func loadPolicy(t *testing.T, files map[string]string, opts Options) *Engine {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e, err := LoadFile(filepath.Join(dir, "policy.yaml"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

const targetsZone = `$TTL 300
$ORIGIN targets.test.
@        IN SOA ns1 hostmaster 1 3600 600 604800 300
@        IN NS  ns1
ns1      IN A   192.0.2.53
@        IN MX  10 mx1
@        IN MX  20 mx2
@        IN MX  30 mx3
mx1      IN A   169.254.169.254
mx1      IN AAAA 64:ff9b::7f00:1
mx2      IN A   127.0.0.1
mx2      IN A   10.0.0.7
mx2      IN A   192.0.2.30
mx3      IN AAAA ::ffff:192.168.1.1
relay    IN A   127.0.0.2
`

// TestConnectTargets: a dry-run shows which addresses of an MX host are
// dropped and why, and a host with nothing left is skipped; relays may be
// on loopback; ip-strategy.refuse-private drops private ones too.
func TestConnectTargets(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		policy := "version: 1\nhostname: mta.test\nip-strategy:\n  lookup: ipv4_then_ipv6\n  refuse-private: " +
			map[bool]string{false: "false", true: "true"}[refuse] + "\nlimits:\n  multihomed: 5\n" +
			"routing:\n  route:\n    - if: rcpt_domain == \"relayed.test\"\n      then: lo\n    - else: mx\n" +
			"  routes:\n    lo: {type: relay, address: relay.targets.test}\n" +
			"dns:\n  resolver: static\n  zone-file: zone.txt\n"
		e := loadPolicy(t, map[string]string{"policy.yaml": policy, "zone.txt": targetsZone}, Options{})
		dec, err := e.Evaluate(context.Background(), Message{From: "a@example.org", To: []string{"b@targets.test", "c@relayed.test"}}, WithTrace())
		if err != nil {
			t.Fatal(err)
		}
		mx, relay := dec.Groups[0], dec.Groups[1]
		h1, h2, h3 := mx.Hosts[0], mx.Hosts[1], mx.Hosts[2]
		if h1.Skipped == nil || !strings.Contains(*h1.Skipped, "169.254.169.254 (link-local), 64:ff9b::7f00:1 (loopback, embedded in IPv6)") {
			t.Errorf("refuse=%v mx1: %+v %v", refuse, h1.Skipped, h1.Dropped)
		}
		wantAddrs, wantDropped := "10.0.0.7,192.0.2.30", "127.0.0.1 (loopback)"
		if refuse {
			wantAddrs, wantDropped = "192.0.2.30", "127.0.0.1 (loopback),10.0.0.7 (private)"
		}
		if h2.Skipped != nil || joinAddrs(h2.Addresses) != wantAddrs || strings.Join(h2.Dropped, ",") != wantDropped {
			t.Errorf("refuse=%v mx2: addresses %v dropped %v skipped %v", refuse, h2.Addresses, h2.Dropped, h2.Skipped)
		}
		if refuse != (h3.Skipped != nil) {
			t.Errorf("refuse=%v mx3 (::ffff:192.168.1.1): skipped %v, addresses %v", refuse, h3.Skipped, h3.Addresses)
		}
		if mx.Outcome != OutcomeDeliver {
			t.Errorf("outcome %s", mx.Outcome)
		}
		if relay.Outcome != OutcomeDeliver || joinAddrs(relay.Hosts[0].Addresses) != "127.0.0.2" {
			t.Errorf("relay on loopback: %s %+v", relay.Outcome, relay.Hosts[0])
		}
	}
}

// TestAddressLiterals: b@[192.0.2.7] is not a DNS question (it used to
// bounce as NXDOMAIN): the literal is the one host, still subject to the
// rules about where MX delivery may connect and to the route.
func TestAddressLiterals(t *testing.T) {
	policy := "version: 1\nhostname: mta.test\ntls:\n  dane:\n    - if: rcpt_domain == \"[192.0.2.8]\"\n      then: require\n    - else: optional\n" +
		"dns:\n  resolver: static\n  zone-file: zone.txt\n"
	e := loadPolicy(t, map[string]string{"policy.yaml": policy, "zone.txt": targetsZone}, Options{})
	to := []string{"b@[192.0.2.7]", "c@[192.0.2.7]", "d@[IPv6:2001:DB8::7]", "e@[127.0.0.1]", "f@[192.0.2.8]", "g@[tag:x]"}
	dec, err := e.Evaluate(context.Background(), Message{From: "a@example.org", To: to}, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	if len(dec.Groups) != 5 {
		t.Fatalf("%d groups: %+v", len(dec.Groups), dec.Groups)
	}
	v4, v6, lo, dane, general := dec.Groups[0], dec.Groups[1], dec.Groups[2], dec.Groups[3], dec.Groups[4]
	if v4.Domain != "[192.0.2.7]" || len(v4.Recipients) != 2 || v4.Outcome != OutcomeDeliver || len(v4.Lookups) != 0 ||
		v4.Hosts[0].Name != "192.0.2.7" || joinAddrs(v4.Hosts[0].Addresses) != "192.0.2.7" {
		t.Errorf("IPv4 literal: %+v hosts %+v lookups %+v", v4, v4.Hosts, v4.Lookups)
	}
	if v6.Domain != "[IPv6:2001:db8::7]" || v6.Outcome != OutcomeDeliver || joinAddrs(v6.Hosts[0].Addresses) != "2001:db8::7" {
		t.Errorf("IPv6 literal: %+v %+v", v6, v6.Hosts)
	}
	if lo.Outcome != OutcomeFail || !strings.Contains(lo.Error.Message, "127.0.0.1 (loopback)") {
		t.Errorf("loopback literal: %s %+v", lo.Outcome, lo.Error)
	}
	if dane.Outcome != OutcomeFail || !strings.Contains(dane.Error.Message, "an address literal has no name to hold TLSA records") {
		t.Errorf("DANE require on a literal: %s %+v", dane.Outcome, dane.Error)
	}
	if general.Outcome != OutcomeFail || general.Error.Class != ClassInvalidAddress || !strings.Contains(general.Error.Message, "general address literals are not supported") {
		t.Errorf("general literal: %s %+v", general.Outcome, general.Error)
	}
}

// TestAddressesCanonical: one parser for every address. A quoted local
// part with a space is valid; a trailing dot and upper case in the domain
// are normalised (the recipients group together); a sender that does not
// parse fails every recipient.
func TestAddressesCanonical(t *testing.T) {
	policy := "version: 1\nhostname: mta.test\ndns:\n  resolver: static\n  zone-file: zone.txt\n"
	e := loadPolicy(t, map[string]string{"policy.yaml": policy, "zone.txt": targetsZone}, Options{})
	dec, err := e.Evaluate(context.Background(), Message{From: "A@Example.ORG.", To: []string{`"a b"@targets.test`, "B@TARGETS.test.", "c@x\r\nRSET"}}, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	if len(dec.Groups) != 2 {
		t.Fatalf("%d groups", len(dec.Groups))
	}
	g, bad := dec.Groups[0], dec.Groups[1]
	if g.Domain != "targets.test" || strings.Join(g.Recipients, ",") != `"a b"@targets.test,B@TARGETS.test.` ||
		strings.Join(g.wire, ",") != `"a b"@targets.test,B@targets.test` {
		t.Errorf("group %q %q %q", g.Domain, g.Recipients, g.wire)
	}
	if bad.Outcome != OutcomeFail || bad.Error.Class != ClassInvalidAddress || !strings.Contains(bad.Error.Message, `control character U+000D (CR)`) {
		t.Errorf("CR in an address: %s %+v", bad.Outcome, bad.Error)
	}
	dec, err = e.Evaluate(context.Background(), Message{From: "a b@example.org", To: []string{"b@targets.test", "c@targets.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(dec.Groups) != 1 || dec.Groups[0].Outcome != OutcomeFail || len(dec.Groups[0].Recipients) != 2 ||
		!strings.HasPrefix(dec.Groups[0].Error.Message, `sender: invalid address "a b@example.org"`) {
		t.Errorf("bad sender: %+v", dec.Groups[0])
	}
	res, err := e.Deliver(context.Background(), Message{From: "a b@example.org", To: []string{"b@targets.test", "c@targets.test"}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.StatusText() != "permanent" || r.Enhanced.String() != "5.1.7" || r.Err.Enhanced.String() != "5.1.7" || r.Address.IsValid() {
			t.Errorf("bad sender, delivery: %s %s %q %v", r.StatusText(), r.Enhanced, r.Text, r.Address)
		}
	}
}

// hostileDNS is an in-process DNS server on loopback (UDP and TCP on one
// port) that answers MX questions from mx, holds every question for a name
// in held until Release (then answers SERVFAIL), and never answers a
// question for a name in silent (it holds it until the test ends). It
// counts the questions held at once and the TCP connections.
type hostileDNS struct {
	addr     string
	mx       map[string][]string
	held     func(name string) bool
	silent   func(name string) bool
	inFlight atomic.Int32
	peak     atomic.Int32
	tcp      atomic.Int32
	release  chan struct{}
	end      chan struct{}
	once     sync.Once
}

// Release answers the held questions (SERVFAIL) and every later one.
func (h *hostileDNS) Release() { h.once.Do(func() { close(h.release) }) }

func startHostileDNS(t *testing.T, mx map[string][]string, held, silent func(string) bool) *hostileDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileDNS{addr: pc.LocalAddr().String(), mx: mx, held: held, silent: silent,
		release: make(chan struct{}), end: make(chan struct{})}
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		if w.RemoteAddr().Network() == "tcp" {
			h.tcp.Add(1)
		}
		q := req.Question[0]
		name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
		m := new(mdns.Msg)
		m.SetReply(req)
		switch {
		case h.silent(name):
			<-h.end
			return
		case h.held(name):
			n := h.inFlight.Add(1)
			for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
			}
			select {
			case <-h.release:
			case <-h.end:
			}
			h.inFlight.Add(-1)
			m.Rcode = mdns.RcodeServerFailure
		case q.Qtype == mdns.TypeMX && h.mx[name] != nil:
			for i, host := range h.mx[name] {
				m.Answer = append(m.Answer, &mdns.MX{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeMX, Class: mdns.ClassINET, Ttl: 300},
					Preference: uint16(10 * (i + 1)), Mx: host + "."})
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	udp := &mdns.Server{PacketConn: pc, Handler: handler}
	tcp := &mdns.Server{Listener: l, Handler: handler}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() {
		close(h.end)
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	})
	return h
}

// TestDNSConcurrentAndBudgeted: a domain whose five MX names never answer
// used to hold one evaluation for 220 s: ten address lookups one after the
// other, each retried over TCP after its timeout. The address lookups of
// every host are now asked at once, and the whole evaluation's DNS has a
// budget. (That a UDP timeout is not retried over TCP is tested in
// transport/dns.)
func TestDNSConcurrentAndBudgeted(t *testing.T) {
	srv := startHostileDNS(t, map[string][]string{"slow.test": {"mx1.slow.test", "mx2.slow.test", "mx3.slow.test", "mx4.slow.test", "mx5.slow.test"}},
		func(name string) bool { return strings.HasSuffix(name, ".slow.test") },
		func(name string) bool { return name == "dead.test" })
	policy := "version: 1\nhostname: mta.test\ntls:\n  mta-sts: disable\ndns:\n  resolver: custom\n  servers: [udp://" + srv.addr + "]\n" +
		"  timeout: 30s\n  attempts: 1\n  concurrency: 16\n  tcp-on-error: true\n  budget: 3s\n"
	e := loadPolicy(t, map[string]string{"policy.yaml": policy}, Options{})

	// The server holds every address question until all ten are in
	// flight at once: only concurrent lookups get there (one after the
	// other, the first would wait for its 30 s timeout).
	type evaluation struct {
		d   *Decision
		err error
	}
	done := make(chan evaluation, 1)
	go func() {
		d, err := e.Evaluate(context.Background(), Message{From: "a@example.org", To: []string{"b@slow.test"}}, WithTrace())
		done <- evaluation{d, err}
	}()
	for deadline := time.Now().Add(20 * time.Second); srv.peak.Load() < 10 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if p := srv.peak.Load(); p < 10 {
		t.Errorf("at most %d address questions in flight at once, want all 10 (5 hosts, A and AAAA)", p)
	}
	srv.Release()
	ev := <-done
	if ev.err != nil {
		t.Fatal(ev.err)
	}
	g := ev.d.Groups[0]
	if g.Outcome != OutcomeDefer || len(g.Hosts) != 5 {
		t.Fatalf("outcome %s, %d hosts, error %+v", g.Outcome, len(g.Hosts), g.Error)
	}
	for _, h := range g.Hosts {
		if h.Skipped == nil || !h.SkipTemporary {
			t.Errorf("%s: %+v", h.Name, h.Skipped)
		}
	}

	// The budget: with a long per-question timeout, a server that never
	// answers costs the evaluation its DNS budget, no more.
	policy = strings.Replace(policy, "attempts: 1", "attempts: 2", 1)
	e = loadPolicy(t, map[string]string{"policy.yaml": policy}, Options{})
	start := time.Now()
	dec, err := e.Evaluate(context.Background(), Message{From: "a@example.org", To: []string{"b@dead.test", "c@slow.test"}}, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	// A generous bound: without the budget this takes a minute (two
	// 30 s attempts); with it, about 3 s.
	if el := time.Since(start); el > 25*time.Second {
		t.Errorf("evaluation took %v with a 3s DNS budget", el)
	}
	for _, g := range dec.Groups {
		if g.Outcome != OutcomeDefer || g.Error == nil || !g.Error.Temporary {
			t.Fatalf("%s: %s %+v", g.Domain, g.Outcome, g.Error)
		}
	}
	if msg := dec.Groups[0].Error.Message; !strings.Contains(msg, "the DNS budget of the evaluation (dns.budget) is used up: 3s") {
		t.Errorf("dead.test: %s", msg)
	}
}

// TestStaleNegativeDefers: during a resolver outage, an expired NXDOMAIN
// in the cache used to be served as fresh for up to an hour, and the
// group failed permanently. A stale negative answer now defers.
func TestStaleNegativeDefers(t *testing.T) {
	var failing atomic.Bool
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		if failing.Load() {
			m.Rcode = mdns.RcodeServerFailure
		} else {
			m.Rcode = mdns.RcodeNameError
			m.Ns = []mdns.RR{&mdns.SOA{Hdr: mdns.RR_Header{Name: "gone.test.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 60},
				Ns: "ns.gone.test.", Mbox: "h.gone.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 60}}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	client, err := dns.NewClient(dns.Config{Kind: dns.KindCustom, Servers: []string{"udp://" + pc.LocalAddr().String()}, Timeout: 2 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	cache := dns.NewCache(client, dns.CacheConfig{Now: clock, NoPrefetch: true})
	t.Cleanup(cache.Close)
	e := loadPolicy(t, map[string]string{"policy.yaml": "version: 1\nhostname: mta.test\ntls:\n  mta-sts: disable\n"}, Options{Resolver: cache, Clock: clock})
	msg := Message{From: "a@example.org", To: []string{"b@gone.test"}}

	dec, err := e.Evaluate(context.Background(), msg, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	if g := dec.Groups[0]; g.Outcome != OutcomeFail || !strings.Contains(g.Error.Message, "does not exist") {
		t.Fatalf("fresh NXDOMAIN: %s %+v", g.Outcome, g.Error)
	}

	failing.Store(true)
	mu.Lock()
	now = now.Add(2 * time.Minute) // the NXDOMAIN (60 s) has expired
	mu.Unlock()
	dec, err = e.Evaluate(context.Background(), msg, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	g := dec.Groups[0]
	if g.Outcome != OutcomeDefer || g.Error.Class != "dns" || !g.Error.Temporary {
		t.Fatalf("stale NXDOMAIN during an outage: %s %+v", g.Outcome, g.Error)
	}
	if l := g.Lookups[0]; !l.Stale || !strings.Contains(l.Error, "expired") {
		t.Errorf("lookup %+v: want it marked stale", l)
	}
}

// TestExpressionBudgetInEngine: an expression that runs out of budget
// takes its documented fallback — strictest TLS, a deferred route — and is
// logged; a delivery's deadline interrupts an evaluation that would
// otherwise run for a long time.
func TestExpressionBudgetInEngine(t *testing.T) {
	const loop = `let x = 1..2000; all(x, all(x, all(x, # > 0)))`
	policy := "version: 1\nhostname: mta.test\n" +
		"tls:\n  starttls:\n    - if: '" + loop + "'\n      then: disable\n    - else: optional\n" +
		"routing:\n  route:\n    - if: 'let x = 1..2000; rcpt_domain == \"loop.test\" && all(x, all(x, all(x, # > 0)))'\n      then: local\n    - else: mx\n" +
		"dns:\n  resolver: static\n  zone-file: zone.txt\n"
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))
	e := loadPolicy(t, map[string]string{"policy.yaml": policy, "zone.txt": targetsZone}, Options{Logger: logger})
	dec, err := e.Evaluate(context.Background(), Message{From: "a@example.org", To: []string{"b@targets.test", "c@loop.test"}}, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	mx, loopG := dec.Groups[0], dec.Groups[1]
	for _, h := range mx.Hosts {
		if h.TLS.STARTTLS != "require" {
			t.Errorf("%s: starttls %s after a budget failure, want require", h.Name, h.TLS.STARTTLS)
		}
	}
	if loopG.Outcome != OutcomeDefer || loopG.Error.Class != ClassPolicy || !strings.Contains(loopG.Error.Message, "evaluation budget exceeded") {
		t.Errorf("route: %s %+v", loopG.Outcome, loopG.Error)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !regexp.MustCompile(`msg="policy expression failed" setting=tls.starttls at=\S+/policy.yaml:5:\d+ budget=true`).MatchString(out) ||
		!regexp.MustCompile(`msg="policy expression failed" setting=routing.route at=\S+/policy.yaml:10:\d+ budget=true`).MatchString(out) {
		t.Errorf("log:\n%s", out)
	}

	// With the budget at its ceiling the loop would run for minutes; the
	// delivery's deadline stops it.
	policy = strings.Replace(policy, "version: 1\n", "version: 1\nlimits:\n  expressions:\n    max-steps: 100000000\n", 1)
	e = loadPolicy(t, map[string]string{"policy.yaml": policy, "zone.txt": targetsZone}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := e.Deliver(ctx, Message{From: "a@example.org", To: []string{"c@loop.test"}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.StatusText() != "temporary" || r.Class != ClassPolicy || !strings.Contains(r.Text, "evaluation interrupted") ||
		!errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Errorf("result %s %s %q", r.StatusText(), r.Class, r.Text)
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// joinAddrs joins addresses with commas.
func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
