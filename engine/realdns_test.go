package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/testbed/dnsbed"
)

// TestRealResolver runs Evaluate against real DNS servers: Knot serving a
// signed and an unsigned zone, and Unbound validating on top of it, through
// the policy's own `resolver: custom` (the network client and its cache).
func TestRealResolver(t *testing.T) {
	bed := dnsbed.Start(t, dnsbed.Options{Records: map[string][]string{
		// A domain of the unsigned zone that uses the signed zone's MX host.
		dnsbed.Insecure: {"shared IN MX 10 mx1.example.test."},
	}})
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(`version: 1
hostname: mta.test
tls:
  dane: optional
dns:
  resolver: custom
  servers: [udp://%s]
  dnssec: true
`, bed.Unbound)), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := LoadFile(policy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := Message{From: "a@sender.test", To: []string{"x@example.test", "y@shared.insecure.test", "z@bogus.test", "w@nope.example.test"}}
	dec, err := eng.Evaluate(ctx, msg, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	find := func(g *Group, name, typ string) DNSQuery {
		t.Helper()
		for _, l := range g.Lookups {
			if l.Name == name && l.Type == typ {
				return l
			}
		}
		t.Fatalf("no %s lookup of %s in group %s: %+v", typ, name, g.Domain, g.Lookups)
		return DNSQuery{}
	}
	if len(dec.Groups) != 4 {
		t.Fatalf("%d groups", len(dec.Groups))
	}
	signed, shared, bogus, nx := dec.Groups[0], dec.Groups[1], dec.Groups[2], dec.Groups[3]

	mx := find(signed, "example.test", "MX")
	answer := append([]string(nil), mx.Answer...)
	sort.Strings(answer) // resolvers rotate RRsets
	if !mx.Secure || mx.Cached || strings.Join(answer, ",") != "10 mx1.example.test,20 mx2.example.test" {
		t.Errorf("signed MX lookup: %+v", mx)
	}
	if len(signed.Hosts) == 0 || !signed.Hosts[0].Secure {
		t.Errorf("signed zone hosts not marked DNSSEC-secure: %+v", signed.Hosts)
	}
	// The test bed's MX hosts live on loopback: never connected to.
	if signed.Outcome != OutcomeFail || signed.Hosts[0].Skipped == nil || !strings.Contains(*signed.Hosts[0].Skipped, "never connected to") {
		t.Errorf("loopback-only hosts: outcome %s, hosts %+v", signed.Outcome, signed.Hosts[0])
	}

	smx := find(shared, "shared.insecure.test", "MX")
	if smx.Secure {
		t.Errorf("unsigned zone's MX marked secure: %+v", smx)
	}
	// The groups were resolved at the same time; both asked for
	// mx1.example.test. Another message to the second domain finds it in
	// the cache.
	if a := find(shared, "mx1.example.test", "A"); a.Error != "" || len(a.Answer) == 0 {
		t.Errorf("lookup of mx1.example.test A for the second group: %+v", a)
	}
	again, err := eng.Evaluate(ctx, Message{From: "a@sender.test", To: []string{"y@shared.insecure.test"}}, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	if a := find(again.Groups[0], "mx1.example.test", "A"); !a.Cached || a.TTL == "" {
		t.Errorf("later lookup of mx1.example.test A not from the cache: %+v", a)
	}
	if bogus.Outcome != OutcomeDefer || bogus.Error.Class != "dns" || !strings.Contains(bogus.Error.Message, "bogus") {
		t.Errorf("bogus zone: %s %+v", bogus.Outcome, bogus.Error)
	}
	if nx.Outcome != OutcomeFail || !strings.Contains(nx.Error.Message, "does not exist") {
		t.Errorf("NXDOMAIN: %s %+v", nx.Outcome, nx.Error)
	}

	// A second evaluation is answered from the cache, still secure.
	dec2, err := eng.Evaluate(ctx, Message{From: "a@sender.test", To: []string{"x@example.test"}}, WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	if mx2 := find(dec2.Groups[0], "example.test", "MX"); !mx2.Cached || !mx2.Secure {
		t.Errorf("second MX lookup: %+v", mx2)
	}
}
