package engine_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
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
