package blackbox_test

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/postfixbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

var (
	postfixSent = regexp.MustCompile(`status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-Z]{16})\)`)
	// smtp-source -N puts a sequence number before the recipient.
	numberedRcpt = regexp.MustCompile(`^<(\d+)bob@dest\.test>`)
)

// TestBehindPostfix: a real Postfix whose relayhost is the relay, the
// relay delivering to smtp-sink. smtp-source injects M messages into
// Postfix, each to a recipient with its own sequence number (-N). Every
// number arrives at the sink exactly once; Postfix logs "status=sent (250
// 2.0.0 Ok: queued as ID)" for every message, and every such ID is in
// the relay's log as msg=queued id=ID, so the two logs correlate.
func TestBehindPostfix(t *testing.T) {
	source := testbed.Require(t, "smtp-source")
	m := 2000
	if long() {
		m = 10000
	}
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	// Postfix opens up to 20 connections to its relayhost and keeps idle
	// ones in its connection cache: the relay's listener allows more
	// from one address than its default 20, as a Postfix-facing relay
	// should (see examples/relay).
	policy := strings.Replace(sinkPolicy("127.0.0.1", int(sink.Addr.Port()), ""),
		"{name: mta, address: LISTEN}", "{name: postfix, address: LISTEN, max-connections-per-ip: 100}", 1)
	r := newRelay(t, relayOptions{Policy: policy, Text: true})
	r.Start()
	pf := postfixbed.Start(t, postfixbed.Options{Relay: r.Addr})

	start := time.Now()
	out, err := exec.Command(source, "-s", "10", "-m", fmt.Sprint(m), "-N", "-l", "1000",
		"-f", "alice@sender.test", "-t", "bob@dest.test", pf.SMTPD).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	injected := time.Since(start)
	pf.WaitLog(t, 120*time.Second, func(log string) error {
		if n := len(postfixSent.FindAllString(log, -1)); n < m {
			return fmt.Errorf("%d of %d messages relayed", n, m)
		}
		return nil
	})
	relayed := time.Since(start)
	r.WaitLog(60*time.Second, "every message delivered to the sink", func(recs []logRecord) bool {
		return len(find(recs, "delivery", "status", "sent")) >= m
	})
	delivered := time.Since(start)

	// Postfix's log and the relay's log name the same IDs.
	pfIDs := map[string]int{}
	for _, mm := range postfixSent.FindAllStringSubmatch(pf.Log(t), -1) {
		pfIDs[mm[1]]++
	}
	if len(pfIDs) != m {
		t.Errorf("Postfix logged %d distinct queue IDs of the relay, want %d", len(pfIDs), m)
	}
	queued := map[string]bool{}
	relayLog := r.Log()
	for _, rec := range find(parseLog(relayLog), "queued") {
		queued[rec["id"]] = true
	}
	missingInLog := 0
	for id, n := range pfIDs {
		if n != 1 {
			t.Errorf("Postfix logged %s %d times", id, n)
		}
		if !queued[id] || !strings.Contains(relayLog, "msg=queued id="+id+" ") {
			missingInLog++
			if missingInLog <= 10 {
				t.Errorf("Postfix was told %s, which is not in the relay's log as msg=queued id=%s", id, id)
			}
		}
	}

	// Every sequence number reached the sink once.
	seen := map[string]int{}
	for _, d := range sink.Messages(t) {
		if len(d.RcptArgs) != 1 {
			t.Errorf("a message reached the sink with recipients %q", d.RcptArgs)
			continue
		}
		mm := numberedRcpt.FindStringSubmatch(d.RcptArgs[0])
		if mm == nil {
			t.Errorf("unexpected recipient %q at the sink", d.RcptArgs[0])
			continue
		}
		seen[mm[1]]++
	}
	dups := 0
	for n, c := range seen {
		if c > 1 {
			dups += c - 1
			t.Errorf("recipient number %s arrived %d times", n, c)
		}
	}
	if len(seen) != m {
		t.Errorf("%d distinct recipient numbers at the sink, want %d", len(seen), m)
	}
	t.Logf("behind Postfix: M=%d injected in %v, relayed by Postfix in %v, delivered by the relay in %v; %d distinct at the sink, %d duplicates",
		m, injected.Round(time.Millisecond), relayed.Round(time.Millisecond), delivered.Round(time.Millisecond), len(seen), dups)
}
