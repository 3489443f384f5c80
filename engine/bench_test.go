package engine_test

// Benchmarks of Evaluate against the same decision written by hand.
//
//	go test ./engine -run '^$' -bench BenchmarkEvaluate -benchmem
//
// quickstart-N evaluates examples/quickstart/policy.yaml for a message of N
// recipients over the example's static resolver, without tracing (what
// delivery does). handwritten-N makes the same decision with the
// quickstart policy hard-coded in Go: route by local domain and list, MTA-STS
// TXT, MX lookup, sort and shuffle, A/AAAA with the same filters and limits,
// the settings as constants, the same throttle store, into the same
// Decision types. TestHandwrittenMatchesEngine checks that both decide
// exactly alike, so the ratio measures the cost of the policy machinery
// (expression VM, rule lists, environment), not a cheaper decision.
// Results and profiles: bench/README.md, section "Engine".

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/throttle"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

const quickstartPolicy = "../examples/quickstart/policy.yaml"

// benchMessages are the benchmarked messages: one recipient, and ten in six
// groups (direct, equal-preference MX, local, two smarthost domains, a null
// MX).
var benchMessages = []struct {
	name string
	msg  engine.Message
}{
	{"1rcpt", engine.Message{From: "alice@example.org", To: []string{"bob@example.com"}}},
	{"10rcpt", engine.Message{From: "alice@example.org", To: []string{
		"bob@example.com", "carol@example.com", "dan@example.com", "erin@example.com",
		"frank@example.net", "grace@example.net", "heidi@example.org",
		"ivan@outlook.com", "judy@Hotmail.com", "mallory@parked.example",
	}}},
}

func quickstartResolver(t testing.TB) *dns.Static {
	t.Helper()
	r, err := dns.NewStatic("../examples/quickstart/zone.txt", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func quickstartEngine(t testing.TB, r dns.Resolver, rnd func() uint64) *engine.Engine {
	t.Helper()
	e, err := engine.LoadFile(quickstartPolicy, engine.Options{Resolver: r, Rand: rnd})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func BenchmarkEvaluate(b *testing.B) {
	res := quickstartResolver(b)
	eng := quickstartEngine(b, res, nil)
	hw := &handwritten{resolver: res, rand: rand.Uint64, throttles: throttle.NewMemory(throttle.MemoryOptions{}), clock: time.Now}
	ctx := context.Background()
	for _, m := range benchMessages {
		n := len(m.msg.To)
		b.Run("quickstart-"+m.name, func(b *testing.B) {
			b.ReportAllocs()
			iters := 0
			for b.Loop() {
				if _, err := eng.Evaluate(ctx, m.msg); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*n), "ns/rcpt")
		})
		b.Run("handwritten-"+m.name, func(b *testing.B) {
			b.ReportAllocs()
			iters := 0
			for b.Loop() {
				hw.decide(ctx, &m.msg)
				iters++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*n), "ns/rcpt")
		})
		b.Run("quickstart-trace-"+m.name, func(b *testing.B) {
			b.ReportAllocs()
			iters := 0
			for b.Loop() {
				if _, err := eng.Evaluate(ctx, m.msg, engine.WithTrace()); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*n), "ns/rcpt")
		})
	}
}

// TestHandwrittenMatchesEngine: the baseline decides exactly what the
// engine decides (as dry-run JSON), for every benchmarked message and a few
// seeds, so the benchmark compares equal work.
func TestHandwrittenMatchesEngine(t *testing.T) {
	res := quickstartResolver(t)
	ctx := context.Background()
	for _, m := range benchMessages {
		for seed := range uint64(4) {
			eng := quickstartEngine(t, res, seeded(seed))
			got, err := eng.Evaluate(ctx, m.msg)
			if err != nil {
				t.Fatal(err)
			}
			hw := &handwritten{resolver: res, rand: seeded(seed), throttles: throttle.NewMemory(throttle.MemoryOptions{}), clock: time.Now}
			want := hw.decide(ctx, &m.msg)
			var g, w bytes.Buffer
			if err := got.WriteJSON(&g); err != nil {
				t.Fatal(err)
			}
			if err := want.WriteJSON(&w); err != nil {
				t.Fatal(err)
			}
			if g.String() != w.String() {
				t.Errorf("%s, seed %d: engine and handwritten decisions differ:\n%s", m.name, seed, lineDiff(w.String(), g.String()))
			}
		}
	}
}

// handwritten is examples/quickstart/policy.yaml written in Go.
type handwritten struct {
	resolver  dns.Resolver
	rand      func() uint64 // shuffles equal MX preferences, as Options.Rand
	throttles throttle.Store
	clock     func() time.Time
}

var (
	hwMicrosoft = map[string]bool{"outlook.com": true, "hotmail.com": true, "live.com": true, "msn.com": true}
	fiveMin     = engine.Duration(5 * time.Minute)
	hwTimeouts  = engine.Timeouts{Connect: fiveMin, Greeting: fiveMin, EHLO: fiveMin, MailFrom: fiveMin, RcptTo: fiveMin, Data: 2 * fiveMin}
	hwRate      = policies.Rate{Count: 600, Period: time.Minute}
)

const (
	hwHostname   = "mta.example.org"
	hwLimitMX    = 3
	hwLimitRcpt  = 100
	hwMultihomed = 2
)

func hwDomain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

func (hw *handwritten) decide(ctx context.Context, m *engine.Message) *engine.Decision {
	d := &engine.Decision{Policy: quickstartPolicy, Message: engine.MessageInfo{Sender: m.From, Recipients: m.To, Size: m.Size}}
	type key struct{ domain, route string }
	index := map[key]*engine.Group{}
	for _, rcpt := range m.To {
		dom := hwDomain(rcpt)
		route := "mx"
		switch {
		case dom == "example.org":
			route = "local"
		case hwMicrosoft[dom]:
			route = "smarthost"
		}
		g := index[key{dom, route}]
		if g == nil {
			g = &engine.Group{Domain: dom, Hosts: []*engine.Host{}, Throttles: []engine.ThrottleInfo{}, Trace: []policies.TraceEntry{}}
			switch route {
			case "local":
				g.Route = engine.RouteInfo{Name: "local", Type: "local"}
			case "smarthost":
				g.Route = engine.RouteInfo{Name: "smarthost", Type: "relay", Address: "smtp.relay.example.net", Port: 587,
					Protocol: "smtp", Auth: &engine.AuthInfo{Username: "mta", Secret: "<from env SMARTHOST_SECRET>"}}
			default:
				g.Route = engine.RouteInfo{Name: "mx", Type: "mx"}
			}
			index[key{dom, route}] = g
			d.Groups = append(d.Groups, g)
		}
		g.Recipients = append(g.Recipients, rcpt)
	}
	for _, g := range d.Groups {
		// As the engine: each group shuffles with a source of its own,
		// seeded in group order.
		seed := hw.rand()
		gw := *hw
		gw.rand = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Uint64
		gw.group(ctx, m, g)
	}
	return d
}

func (hw *handwritten) group(ctx context.Context, m *engine.Message, g *engine.Group) {
	g.Limits.Recipients = hwLimitRcpt
	if g.Route.Type == "local" {
		g.Outcome = engine.OutcomeLocal
		return
	}
	// The default schedule (queue.*), for a message just queued.
	retry := []time.Duration{2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}
	notify := []time.Duration{24 * time.Hour, 72 * time.Hour}
	age, expire := time.Duration(m.QueueAge)*time.Second, 120*time.Hour
	g.Schedule = &engine.Schedule{RetryIn: engine.Duration(retry[min(m.RetryNum, len(retry)-1)]), Expire: engine.Duration(expire),
		ExpiresIn: engine.Duration(expire - age)}
	if m.NotifyNum < len(notify) {
		g.Schedule.NotifyAt, g.Schedule.NotifyDue = engine.Duration(notify[m.NotifyNum]), age >= notify[m.NotifyNum]
	}
	// Without a trace the engine reports no throttle usage (delivery
	// acquires instead), so neither does the baseline.
	g.Throttles = append(g.Throttles, engine.ThrottleInfo{Name: "per-domain", Key: g.Domain, Concurrency: 20,
		Rate: hwRate, Phase: "recipient"})
	if g.Route.Type == "relay" {
		g.MTASTS.Setting = "disable"
		g.Hosts = append(g.Hosts, hw.host(ctx, m, "smtp.relay.example.net", 0, true))
		hw.settle(g)
		return
	}
	g.Limits.MX = hwLimitMX
	g.MTASTS.Setting = "optional"
	if txt, err := hw.resolver.LookupTXT(ctx, "_mta-sts."+g.Domain); err == nil {
		for _, rec := range txt.Records {
			if strings.HasPrefix(rec, "v=STSv1") {
				g.MTASTS.Record = rec
			}
		}
	}
	res, err := hw.resolver.LookupMX(ctx, g.Domain)
	var mxs []dns.MX
	switch {
	case errors.Is(err, dns.ErrNotFound):
		g.Outcome, g.Error = engine.OutcomeFail, &engine.GroupError{Class: "dns", Message: "domain " + g.Domain + " does not exist (NXDOMAIN)"}
		return
	case errors.Is(err, dns.ErrNoData):
		mxs = []dns.MX{{Host: g.Domain}}
	case err != nil:
		g.Outcome, g.Error = engine.OutcomeDefer, &engine.GroupError{Temporary: true, Class: "dns", Message: "MX lookup for " + g.Domain + " failed: " + err.Error()}
		return
	case res.NullMX:
		g.Outcome, g.Error = engine.OutcomeFail, &engine.GroupError{Class: "dns", Message: g.Domain + " does not accept mail (null MX, RFC 7505)"}
		return
	default:
		mxs = make([]dns.MX, len(res.Records))
		copy(mxs, res.Records)
		sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Preference < mxs[j].Preference })
		for i := 0; i < len(mxs); {
			j := i + 1
			for j < len(mxs) && mxs[j].Preference == mxs[i].Preference {
				j++
			}
			for k := j - 1; k > i; k-- {
				x := i + int(hw.rand()%uint64(k-i+1))
				mxs[k], mxs[x] = mxs[x], mxs[k]
			}
			i = j
		}
	}
	if len(mxs) > hwLimitMX {
		mxs = mxs[:hwLimitMX]
	}
	for _, mx := range mxs {
		h := hw.host(ctx, m, mx.Host, int(mx.Preference), false)
		h.Secure = res.Secure && err == nil
		g.Hosts = append(g.Hosts, h)
	}
	hw.settle(g)
}

func (hw *handwritten) settle(g *engine.Group) {
	for _, h := range g.Hosts {
		if h.Skipped == nil {
			g.Outcome = engine.OutcomeDeliver
			return
		}
	}
	g.Outcome, g.Error = engine.OutcomeFail, &engine.GroupError{Class: "dns", Message: "no host can be tried"}
}

func (hw *handwritten) host(ctx context.Context, m *engine.Message, name string, pref int, relay bool) *engine.Host {
	starttls := policies.TLSRequire
	if m.RetryNum > 2 && m.LastError == "tls" {
		starttls = policies.TLSOptional
	}
	tlsIn := engine.HostTLS{STARTTLS: starttls, DANE: policies.TLSOptional, MinVersion: "1.2", HandshakeTimeout: engine.Duration(3 * time.Minute)}
	tlsIn.Required, tlsIn.Verify = starttls == policies.TLSRequire, "pkix"
	if !tlsIn.Required {
		tlsIn.Verify = "opportunistic"
	}
	// DANE optional and no secure zone in the quickstart: no TLSA lookup.
	tlsIn.DANEState.Reason = "the MX answer is not DNSSEC-secure"
	if relay {
		tlsIn.DANEState.Reason = "the address records of " + name + " are not DNSSEC-secure"
	}
	h := &engine.Host{Name: name, Preference: pref, IPLookup: "ipv4_then_ipv6", EHLOHostname: hwHostname,
		TLS: tlsIn, MessagesPerConnection: 20}
	var addrs []netip.Addr
	for _, lookup := range []func(context.Context, string) (dns.AddrResult, error){hw.resolver.LookupA, hw.resolver.LookupAAAA} {
		res, err := lookup(ctx, name)
		if err != nil {
			continue
		}
		for _, a := range res.Addrs {
			a = a.Unmap()
			if !relay && (a.IsLoopback() || a.IsUnspecified() || a.IsMulticast()) {
				continue
			}
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		s := "no address"
		h.Skipped = &s
		return h
	}
	if len(addrs) > hwMultihomed {
		addrs = addrs[:hwMultihomed]
	}
	h.Addresses = addrs
	for _, a := range addrs {
		h.Connections = append(h.Connections, &engine.Connect{RemoteIP: a, EHLOHostname: hwHostname, Timeouts: hwTimeouts})
	}
	return h
}
