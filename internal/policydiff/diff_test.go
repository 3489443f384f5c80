package policydiff

import (
	"context"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/corpus"
)

// TestEnvelopeChanges: each changed fact once per recipient, the same
// change at several hosts or addresses listed in At, each side's rule
// found in its own trace; an unchanged recipient has no entry.
func TestEnvelopeChanges(t *testing.T) {
	old, next := benchEngines(t)
	d := &Differ{Old: old, New: next, Seed: 1}
	env := corpus.Envelope{ID: "Q1", From: "news@example.org", To: []string{"a@d10.example", "b@d11.example"}}
	changes, changed, err := d.Envelope(context.Background(), 7, env)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		var at []string
		for _, p := range c.At {
			at = append(at, p.String())
		}
		line := c.Recipient + " " + c.Field + " [" + strings.Join(at, "; ") + "] " + c.Old + " -> " + c.New
		if c.OldRule != nil {
			line += " old " + c.OldRule.At.String()
		}
		if c.NewRule != nil {
			line += " new " + c.NewRule.At.String()
		}
		if c.Line != 7 || c.ID != "Q1" || (c.OldRule != nil && c.OldRule.Context != "") {
			t.Errorf("change %+v: want line 7, id Q1, rules without context", c)
		}
		got = append(got, line)
	}
	// Hosts in the order the new decision tries them (seeded shuffle).
	want := []string{
		"a@d10.example tls.starttls [mx2.d10.example; mx1.d10.example] optional -> require old p.yaml:3:13 new p.yaml:4:7",
		"a@d10.example tls [mx2.d10.example; mx1.d10.example] opportunistic -> required, verify pkix old p.yaml:3:13 new p.yaml:4:7",
		"a@d10.example source-ip [mx2.d10.example 198.51.100.11; mx1.d10.example 192.0.2.11] 192.0.2.200 -> 192.0.2.201 old p.yaml:5:15 new p.yaml:9:7",
		"b@d11.example source-ip [mx2.d11.example 198.51.100.12; mx1.d11.example 192.0.2.12] 192.0.2.200 -> 192.0.2.201 old p.yaml:5:15 new p.yaml:9:7",
	}
	if changed != 2 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%d changed, changes:\n%s\nwant:\n%s", changed, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The same policy on both sides: nothing.
	same := &Differ{Old: old, New: old, Seed: 1}
	if changes, changed, err := same.Envelope(context.Background(), 7, env); err != nil || changed != 0 || len(changes) != 0 {
		t.Errorf("a policy against itself: %d changed, %v, %v", changed, changes, err)
	}
}
