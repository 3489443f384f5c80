package engine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/postern-mta/postern/engine"
)

// TestGroupsByDomainAndRoute: recipients are grouped by (domain, route) in
// the order their domains first appear, each group keeping its recipients
// in message order, with few groups and with many (the engine searches a
// few groups and indexes many).
func TestGroupsByDomainAndRoute(t *testing.T) {
	e := staticEngine(t, "version: 1\n", "", false)
	for _, n := range []int{3, 8, 9, 40} {
		t.Run(fmt.Sprint(n, " domains"), func(t *testing.T) {
			var to []string
			for round := range 3 {
				for i := range n {
					to = append(to, fmt.Sprintf("u%d@d%d.example", round, i))
				}
			}
			d, err := e.Evaluate(context.Background(), engine.Message{From: "a@example.org", To: to}, engine.WithoutDNS())
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Groups) != n {
				t.Fatalf("%d groups, want %d", len(d.Groups), n)
			}
			for i, g := range d.Groups {
				want := []string{fmt.Sprintf("u0@d%d.example", i), fmt.Sprintf("u1@d%d.example", i), fmt.Sprintf("u2@d%d.example", i)}
				if g.Domain != fmt.Sprintf("d%d.example", i) || !slices.Equal(g.Recipients, want) {
					t.Errorf("group %d: %s %q, want d%d.example %q", i, g.Domain, g.Recipients, i, want)
				}
			}
		})
	}
}
