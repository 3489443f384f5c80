package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
)

// TestWithDomainSeed: with WithDomainSeed a domain's equal-preference MX
// hosts come in the same order whatever happens to the message's other
// groups; with WithRand (group-order seeding) an edit that splits another
// domain's group in two reshuffles them for some seeds.
func TestWithDomainSeed(t *testing.T) {
	zone := "$ORIGIN example.\n$TTL 300\n"
	for _, h := range []string{"a", "b", "c", "d", "e", "f"} {
		zone += "shuffled 300 IN MX 10 " + h + ".shuffled.example.\n" + h + ".shuffled 300 IN A 192.0.2.1\n"
	}
	zone += "other 300 IN MX 10 mx.other.example.\nmx.other 300 IN A 192.0.2.2\n"
	all := staticEngine(t, "version: 1\n", zone, false)
	split := staticEngine(t, "version: 1\nrouting:\n  route:\n    - if: rcpt == \"x1@other.example\"\n      then: local\n    - else: mx\n", zone, false)
	order := func(e *engine.Engine, opt engine.EvalOption) string {
		d, err := e.Evaluate(context.Background(), engine.Message{From: "a@example.org", To: []string{"x1@other.example", "x2@other.example", "y@shuffled.example"}}, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range d.Groups {
			if g.Domain == "shuffled.example" {
				var names []string
				for _, h := range g.Hosts {
					names = append(names, h.Name)
				}
				return strings.Join(names, " ")
			}
		}
		t.Fatal("no group for shuffled.example")
		return ""
	}
	reshuffled := false
	orders := map[string]bool{}
	for n := uint64(0); n < 20; n++ {
		a, b := order(all, engine.WithDomainSeed(n)), order(split, engine.WithDomainSeed(n))
		if a != b {
			t.Errorf("seed %d: %s with other.example in one group, %s with it split", n, a, b)
		}
		orders[a] = true
		if order(all, engine.WithRand(seededRand(n))) != order(split, engine.WithRand(seededRand(n))) {
			reshuffled = true
		}
	}
	if len(orders) < 2 {
		t.Errorf("20 domain seeds gave one order (%v): the hosts are not shuffled", orders)
	}
	if !reshuffled {
		t.Error("group-order seeding never reshuffled: the test does not show what WithDomainSeed fixes")
	}
}

func seededRand(n uint64) func() uint64 { return seeded(n) }
