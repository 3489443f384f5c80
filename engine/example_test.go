package engine_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// Load a policy file and decide a message: one line per group. The
// quickstart policy answers DNS from its own zone file (dns: resolver:
// static), so this runs offline.
func ExampleLoadFile() {
	eng, err := engine.LoadFile("../examples/quickstart/policy.yaml", engine.Options{})
	if err != nil {
		log.Fatal(err) // a policies.ErrorList: every problem with its position
	}
	dec, err := eng.Evaluate(context.Background(), engine.Message{
		From: "alice@example.org",
		To:   []string{"bob@example.com", "carol@example.org", "dave@outlook.com", "info@parked.example"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range dec.Groups {
		fmt.Printf("%s via %s: %s", g.Domain, g.Route.Name, g.Outcome)
		if g.Error != nil {
			fmt.Printf(" (%s: %s)", g.Error.Class, g.Error.Message)
		}
		for _, h := range g.Hosts {
			fmt.Printf(" -> %s %v starttls %s", h.Name, h.Addresses, h.TLS.STARTTLS)
		}
		fmt.Println()
	}
	// Output:
	// example.com via mx: deliver -> mx1.example.com [192.0.2.25 2001:db8::25] starttls require -> mx2.example.com [192.0.2.26 2001:db8::26] starttls require
	// example.org via local: local
	// outlook.com via smarthost: deliver -> smtp.relay.example.net [198.51.100.25 2001:db8:5100::25] starttls require
	// parked.example via mx: fail (dns: parked.example does not accept mail (null MX, RFC 7505))
}

// Build an engine from a policy compiled in memory, with the seams an MTA
// provides: its own resolver (here a static zone) and its own answer to
// is_local_domain. The hosts come in MX order, each with the TLS settings
// its host-phase rules chose.
func ExampleNew() {
	set, err := policies.Parse("policy.yaml", []byte(`
version: 1
hostname: mta.example.org
tls:
  starttls:
    - if: mx endsWith ".legacy.example"
      then: optional
    - else: require
`), policies.Options{})
	if err != nil {
		log.Fatal(err)
	}
	zone := `
$ORIGIN example.com.
@    300 IN MX 10 mx1
@    300 IN MX 20 old.legacy.example.
mx1  300 IN A  192.0.2.25
old.legacy.example. 300 IN A 203.0.113.37
`
	resolver, err := dns.NewStaticFromReader(strings.NewReader(zone), "zone", false)
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.New(set, engine.Options{
		Resolver:      resolver,
		IsLocalDomain: func(domain string) bool { return domain == "example.org" },
	})
	if err != nil {
		log.Fatal(err)
	}
	dec, err := eng.Evaluate(context.Background(), engine.Message{
		From: "alice@example.org", To: []string{"bob@example.com", "postmaster@example.org"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range dec.Groups {
		fmt.Printf("%s: %s\n", strings.Join(g.Recipients, ", "), g.Outcome)
		for i, h := range g.Hosts {
			fmt.Printf("  %d. %s (preference %d) %v starttls %s\n", i+1, h.Name, h.Preference, h.Addresses, h.TLS.STARTTLS)
		}
	}
	// Output:
	// bob@example.com: deliver
	//   1. mx1.example.com (preference 10) [192.0.2.25] starttls require
	//   2. old.legacy.example (preference 20) [203.0.113.37] starttls optional
	// postmaster@example.org: local
}

// WithTrace records every rule evaluated, matched or not, with its position:
// why a setting has its value. WithoutDNS stops before any lookup, so only
// the recipient-phase settings are decided.
func ExampleWithTrace() {
	eng, err := engine.LoadFile("../examples/quickstart/policy.yaml", engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	dec, err := eng.Evaluate(context.Background(),
		engine.Message{From: "alice@example.org", To: []string{"bob@hotmail.com"}},
		engine.WithTrace(), engine.WithoutDNS())
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range dec.Groups[0].Trace {
		if e.Setting != "routing.route" {
			continue
		}
		switch e.Kind {
		case policies.KindRule:
			fmt.Printf("%s rule %d at %s: if %s => matched %v\n", e.Setting, e.Rule, e.At, e.If, e.Matched)
		default:
			fmt.Printf("%s %s at %s => %s\n", e.Setting, e.Kind, e.At, e.Value)
		}
	}
	fmt.Println("route:", dec.Groups[0].Route.Name)
	// Output:
	// routing.route rule 1 at ../examples/quickstart/policy.yaml:25:7: if is_local_domain(rcpt_domain) => matched false
	// routing.route rule 2 at ../examples/quickstart/policy.yaml:27:7: if in_list("microsoft", rcpt_domain) => matched true
	// route: smarthost
}
