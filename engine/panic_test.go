package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// panickyResolver answers from a static zone, but panics on the question
// types it is told to: an embedder's Resolver with a bug. It does not
// implement dns.Immediate, so the engine asks every question concurrently.
type panickyResolver struct {
	st *dns.Static // not embedded: its Immediate method must not show
	on string      // "AAAA", "TXT", "MX"
}

func (p panickyResolver) LookupMX(ctx context.Context, domain string) (dns.MXResult, error) {
	if p.on == "MX" {
		panic("resolver bug: MX")
	}
	return p.st.LookupMX(ctx, domain)
}

func (p panickyResolver) LookupA(ctx context.Context, host string) (dns.AddrResult, error) {
	return p.st.LookupA(ctx, host)
}

func (p panickyResolver) LookupTLSA(ctx context.Context, name string) (dns.TLSAResult, error) {
	return p.st.LookupTLSA(ctx, name)
}

func (p panickyResolver) LookupAAAA(ctx context.Context, host string) (dns.AddrResult, error) {
	if p.on == "AAAA" {
		panic("resolver bug: AAAA")
	}
	return p.st.LookupAAAA(ctx, host)
}

func (p panickyResolver) LookupTXT(ctx context.Context, name string) (dns.TXTResult, error) {
	if p.on == "TXT" {
		panic("resolver bug: TXT")
	}
	return p.st.LookupTXT(ctx, name)
}

// TestResolverPanicDefersTheGroup: a panic in a lookup running in its own
// goroutine (the address, TLSA and MTA-STS questions) does not take the
// process down: the group is deferred with an internal error, like a panic
// in the evaluating goroutine (the MX question, asked while the MTA-STS one
// runs), and the other groups are decided. Run with -race: no lookup may
// go on writing after its evaluator went back to the pool.
func TestResolverPanicDefersTheGroup(t *testing.T) {
	for _, on := range []string{"AAAA", "TXT", "MX"} {
		t.Run(on, func(t *testing.T) {
			zone := "$TTL 300\n$ORIGIN example.com.\n@ IN SOA ns1 hostmaster 1 3600 600 604800 300\n@ IN MX 10 mx1\nmx1 IN A 192.0.2.25\n"
			st, err := dns.NewStaticFromReader(strings.NewReader(zone), "zone.txt", false)
			if err != nil {
				t.Fatal(err)
			}
			set, err := policies.Parse("policy.yaml", []byte("version: 1\nlocal-domains: [example.org]\n"), policies.Options{Hostname: goldenHostname})
			if err != nil {
				t.Fatal(err)
			}
			e, err := engine.New(set, engine.Options{Resolver: panickyResolver{st, on}})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 { // the evaluator goes back to the pool each time
				d, err := e.Evaluate(context.Background(), engine.Message{From: "a@example.org", To: []string{"b@example.com", "c@example.org"}})
				if err != nil {
					t.Fatal(err)
				}
				g := d.Groups[0]
				if g.Outcome != engine.OutcomeDefer || g.Error == nil || !strings.Contains(g.Error.Message, "resolver bug: "+on) {
					t.Errorf("group %s: outcome %s, error %+v; want deferred with the panic", g.Domain, g.Outcome, g.Error)
				}
				if d.Groups[1].Outcome != engine.OutcomeLocal {
					t.Errorf("the local group: %s", d.Groups[1].Outcome)
				}
			}
		})
	}
}
