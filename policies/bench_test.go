package policies

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/expr"
)

// evalAll evaluates every setting of s the way delivery does for one
// recipient that has one MX host with one address.
func evalAll(s *Set, m *expr.VM, env *expr.Env) {
	_, _ = s.Route.Eval(m, env, nil)
	_, _ = s.TLS.MTASTS.Eval(m, env, nil)
	_, _ = s.TLS.MTASTSTimeout.Eval(m, env, nil)
	_, _ = s.Limits.MX.Eval(m, env, nil)
	_, _ = s.Limits.Recipients.Eval(m, env, nil)
	for _, t := range s.Limits.Throttles {
		if t.Match != nil {
			_, _ = t.Match.Bool(m, env)
		}
	}
	// host phase
	_, _ = s.Hostname.Eval(m, env, nil)
	_, _ = s.TLS.DANE.Eval(m, env, nil)
	_, _ = s.TLS.STARTTLS.Eval(m, env, nil)
	_, _ = s.TLS.AllowInvalidCerts.Eval(m, env, nil)
	_, _ = s.TLS.MinVersion.Eval(m, env, nil)
	_, _ = s.TLS.HandshakeTimeout.Eval(m, env, nil)
	_, _ = s.IPStrategy.Lookup.Eval(m, env, nil)
	_, _ = s.IPStrategy.SourceIPs.Eval(m, env, nil)
	_, _ = s.Limits.Multihomed.Eval(m, env, nil)
	_, _ = s.Limits.MessagesPerConnection.Eval(m, env, nil)
	// connection phase
	_, _ = s.IPStrategy.EHLOHostname.Eval(m, env, nil)
	t := &s.Limits.Timeouts
	for _, v := range []*Value[time.Duration]{t.Connect, t.Greeting, t.EHLO, t.MailFrom, t.RcptTo, t.Data} {
		_, _ = v.Eval(m, env, nil)
	}
}

// BenchmarkEvalQuickstart evaluates every setting of the quickstart policy
// for one recipient (one op = one recipient, one host, one address).
func BenchmarkEvalQuickstart(b *testing.B) {
	s, err := LoadFile("../examples/quickstart/policy.yaml", Options{Hostname: "mta.test"})
	if err != nil {
		b.Fatal(err)
	}
	var m expr.VM
	env := &expr.Env{Funcs: s.Library().Funcs(expr.Hooks{}), Sender: "alice@example.org", SenderDomain: "example.org",
		Rcpt: "bob@example.com", RcptDomain: "example.com", Recipients: []string{"bob@example.com"}, Size: 2048,
		Route: "mx", RouteType: "mx", MX: "mx1.example.com", MXPreference: 10, RemoteIP: "192.0.2.25"}
	b.ReportAllocs()
	for b.Loop() {
		evalAll(s, &m, env)
	}
}

// BenchmarkCompile200Rules loads a policy with 200 routing rules.
func BenchmarkCompile200Rules(b *testing.B) {
	var p strings.Builder
	p.WriteString("version: 1\nlists:\n  big: [a.example, b.example]\nrouting:\n  route:\n")
	for i := range 199 {
		fmt.Fprintf(&p, "    - if: rcpt_domain == \"d%d.example\" || (in_list(\"big\", sender_domain) && size > %d)\n      then: r%d\n", i, i*1000, i%5)
	}
	p.WriteString("    - else: mx\n  routes:\n")
	for i := range 5 {
		fmt.Fprintf(&p, "    r%d:\n      type: relay\n      address: relay%d.example\n", i, i)
	}
	data := []byte(p.String())
	if _, err := Parse("p.yaml", data, Options{Hostname: "mta.test"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("p.yaml", data, Options{Hostname: "mta.test"}); err != nil {
			b.Fatal(err)
		}
	}
}
