package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// Two policies that decide every message of concurrencyMessages
// differently, so each decision can be attributed to exactly one of them:
// A delivers example.com to its MX hosts, B through a relay; the EHLO
// names, TLS settings, limits and throttles differ too, so a decision that
// mixed the two (a group from each, a host evaluated with the other
// policy's settings) equals neither.
const (
	concurrencyPolicyA = `version: 1
hostname: mta-a.example.org
local-domains: [example.org]
tls:
  starttls:
    - if: mx endsWith ".example.net"
      then: require
    - else: optional
limits:
  mx: 2
  throttles:
    - name: per-domain
      key: [rcpt_domain]
      concurrency: 10
`
	concurrencyPolicyB = `version: 1
hostname: mta-b.example.org
local-domains: [example.org, example.com]
routing:
  route:
    - if: rcpt_domain == "example.com"
      then: smarthost
    - if: is_local_domain(rcpt_domain)
      then: local
    - else: mx
  routes:
    smarthost:
      type: relay
      address: smtp.relay.example.net
      port: 587
tls:
  starttls: require
  min-version: "1.3"
limits:
  mx: 3
  throttles:
    - name: per-mx
      key: [mx]
      rate: 10/1s
`
	concurrencyZone = `$TTL 300
$ORIGIN example.com.
@     IN SOA ns1 hostmaster 1 3600 600 604800 300
@     IN MX  10 mx1
@     IN MX  20 mx2
mx1   IN A    192.0.2.25
mx1   IN AAAA 2001:db8::25
mx2   IN A    192.0.2.26
$ORIGIN example.net.
@     IN SOA ns1 hostmaster 1 3600 600 604800 300
@     IN MX  10 mx-a
@     IN MX  10 mx-b
@     IN MX  10 mx-c
mx-a  IN A   198.51.100.10
mx-b  IN A   198.51.100.11
mx-c  IN A   198.51.100.12
smtp.relay IN A 198.51.100.25
$ORIGIN parked.example.
@     IN SOA ns1 hostmaster 1 3600 600 604800 300
@     IN MX  0 .
`
)

var concurrencyMessages = []engine.Message{
	{From: "alice@example.org", To: []string{"bob@example.com"}},
	{From: "alice@example.org", To: []string{"bob@example.net", "carol@example.com", "dave@example.org"}},
	{From: "", To: []string{"info@parked.example", "x@example.net"}},
	{From: "alice@example.org", To: []string{"a@example.net", "b@example.net", "c@example.com"}, RetryNum: 3, LastError: "tls"},
	{From: "news@example.org", To: []string{"dave@example.org"}, Meta: map[string]string{"stream": "bulk"}},
}

// TestConcurrentEvaluateReload runs many evaluations at once while the
// policy is reloaded midway. Every decision must equal, entirely, the one
// computed serially for policy A or for policy B; an evaluation that starts
// after Reload returned must see B, and a goroutine that has seen B never
// sees A again. Run it with -race.
func TestConcurrentEvaluateReload(t *testing.T) {
	goroutines, perG := 32, 200
	if testing.Short() {
		goroutines, perG = 8, 50
	}
	res, err := dns.NewStaticFromReader(bytes.NewReader([]byte(concurrencyZone)), "zone.txt", false)
	if err != nil {
		t.Fatal(err)
	}
	load := func(name, text string) *policies.Set {
		s, err := policies.Parse(name, []byte(text), policies.Options{Hostname: goldenHostname})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return s
	}
	setA, setB := load("a.yaml", concurrencyPolicyA), load("b.yaml", concurrencyPolicyB)

	// Decide every message serially under each policy, each with a fresh
	// engine, with the seed the concurrent run uses for that message.
	serial := func(set *policies.Set) []string {
		e, err := engine.New(set, engine.Options{Resolver: res})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(concurrencyMessages))
		for i, m := range concurrencyMessages {
			out[i] = decideJSON(t, e, m, uint64(i))
		}
		return out
	}
	wantA, wantB := serial(setA), serial(setB)
	for i := range wantA {
		if wantA[i] == wantB[i] {
			t.Fatalf("message %d: both policies decide alike; the test cannot attribute its decisions", i)
		}
	}

	e, err := engine.New(setA, engine.Options{Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	var (
		done     atomic.Int64 // evaluations finished; at half, Reload(B)
		reloaded atomic.Bool  // Reload(B) has returned
		sawA     atomic.Int64
		sawB     atomic.Int64
		wg       sync.WaitGroup // the evaluating goroutines
		reloader sync.WaitGroup
		errs     = make(chan error, goroutines+1)
		halfway  = make(chan struct{})
	)
	half := int64(goroutines * perG / 2)
	workersDone := make(chan struct{})
	reloader.Add(1)
	go func() {
		defer reloader.Done()
		select {
		case <-halfway:
		case <-workersDone: // a goroutine gave up early: no reload
			return
		}
		if err := e.Reload(setB); err != nil {
			errs <- err
			return
		}
		reloaded.Store(true)
	}()
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seenB := false
			for n := range perG {
				i := (g + n) % len(concurrencyMessages)
				after := reloaded.Load() // Reload returned before this evaluation started
				got := decideJSON(t, e, concurrencyMessages[i], uint64(i))
				if done.Add(1) == half {
					close(halfway)
				}
				switch got {
				case wantA[i]:
					sawA.Add(1)
					if after {
						errs <- fmt.Errorf("goroutine %d, evaluation %d (message %d): policy A after Reload(B) returned", g, n, i)
						return
					}
					if seenB {
						errs <- fmt.Errorf("goroutine %d, evaluation %d (message %d): policy A after this goroutine saw B", g, n, i)
						return
					}
				case wantB[i]:
					sawB.Add(1)
					seenB = true
				default:
					errs <- fmt.Errorf("goroutine %d, evaluation %d (message %d): decision matches neither policy:\n%s\nwant A:\n%s\nwant B:\n%s",
						g, n, i, got, wantA[i], wantB[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(workersDone)
	reloader.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if sawA.Load() == 0 || sawB.Load() == 0 {
		t.Errorf("decisions: %d by policy A, %d by policy B; want both (Reload did not happen midway)", sawA.Load(), sawB.Load())
	}
	t.Logf("%d decisions by policy A, %d by policy B", sawA.Load(), sawB.Load())
}

// decideJSON evaluates m with tracing and seed, and returns the dry-run JSON.
func decideJSON(t testing.TB, e *engine.Engine, m engine.Message, seed uint64) string {
	d, err := e.Evaluate(context.Background(), m, engine.WithTrace(), engine.WithRand(seeded(seed)))
	if err != nil {
		t.Error(err)
		return ""
	}
	var b bytes.Buffer
	if err := d.WriteJSON(&b); err != nil {
		t.Error(err)
	}
	return b.String()
}
