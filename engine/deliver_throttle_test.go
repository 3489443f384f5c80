package engine_test

// Throttles in Engine.Deliver beyond the basic cases of deliver_test.go:
// several throttles on one group, keys with the recipient, and throttles
// counted per connection.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// inFlight starts delivering msg in the background and returns a channel
// with its results.
func inFlight(e *engine.Engine, msg engine.Message) <-chan []engine.Result {
	ch := make(chan []engine.Result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, _ := e.Deliver(ctx, msg, strings.NewReader(deliverBody))
		ch <- res
	}()
	return ch
}

// TestDeliverDeferredTakesNoToken: a group deferred by a full concurrency
// throttle did not start, so it must not use up a token of a rate throttle
// listed before it. With rate 2/1h and concurrency 1, two deliveries in
// sequence must both pass, whatever was deferred in between.
func TestDeliverDeferredTakesNoToken(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "2"}})
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	policy := oneRelayPolicy(sink.Addr, `limits:
  throttles:
    - name: hourly
      key: [rcpt_domain]
      rate: 2/1h
    - name: one-at-a-time
      key: [rcpt_domain]
      concurrency: 1
`)
	e := newDeliverEngine(t, policy, engine.Options{Clock: func() time.Time { return now }})
	first := inFlight(e, engine.Message{From: "alice@sender.test", To: []string{"u@a.test"}})
	waitInUse(t, e, "one-at-a-time", "u@a.test")
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"v@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassConcurrency)
	res = <-first
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"v@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone) // the second of two allowed per hour
}

// TestDeliverRcptKeyedThrottle: a throttle keyed by rcpt counts every
// recipient, not only the first of its group. b@a.test received a message
// (with u@a.test, in one group) so its hourly token is used up.
func TestDeliverRcptKeyedThrottle(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	policy := oneRelayPolicy(sink.Addr, "limits:\n  throttles:\n    - name: per-rcpt\n      key: [rcpt]\n      rate: 1/1h\n")
	e := newDeliverEngine(t, policy, engine.Options{Clock: func() time.Time { return now }})
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"u@a.test", "b@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	wantResult(t, res, 1, transport.StatusDelivered, transport.ClassNone)
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"b@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassRate)

	// In one group, the recipient whose token is used up is held back and
	// the others go ahead, in a transaction without it.
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"c@a.test", "b@a.test", "d@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	wantResult(t, res, 1, transport.StatusTemporary, transport.ClassRate)
	wantResult(t, res, 2, transport.StatusDelivered, transport.ClassNone)
	if !res[1].RetryAfter.Equal(now.Add(time.Hour)) || res[1].Address.IsValid() {
		t.Errorf("held-back recipient: %s", formatResults(res))
	}
	msgs := sink.WaitMessages(t, 2)
	if len(msgs) != 2 {
		t.Fatalf("the sink has %d messages, want 2", len(msgs))
	}
	var last []string
	for _, m := range msgs {
		if len(m.RcptArgs) == 2 && m.RcptArgs[0] != "<u@a.test>" {
			last = rcptArgs(m)
		}
	}
	if !slices.Equal(last, []string{"<c@a.test>", "<d@a.test>"}) {
		t.Errorf("transactions: %+v", msgs)
	}
}

// TestDeliverConnectionThrottle: a throttle keyed by remote_ip is counted
// per connection; a full one defers (class concurrency) with a RetryAfter,
// like a group-level throttle, and is released when the delivery ends.
func TestDeliverConnectionThrottle(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "2"}})
	policy := oneRelayPolicy(sink.Addr, "limits:\n  throttles:\n    - name: per-ip\n      key: [remote_ip]\n      concurrency: 1\n")
	e := newDeliverEngine(t, policy, engine.Options{})
	first := inFlight(e, engine.Message{From: "alice@sender.test", To: []string{"u@a.test"}})
	waitInUse(t, e, "per-ip", "u@a.test")
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"v@b.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassConcurrency)
	if res[0].RetryAfter.IsZero() {
		t.Errorf("deferred by a connection-level throttle without RetryAfter: %s", formatResults(res))
	}
	res = <-first
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"w@b.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
}

// waitInUse waits until the throttle called name holds a slot, as a
// dry-run of a message to rcpt shows it: the delivery started in the
// background has really begun, however slow the machine.
func waitInUse(t *testing.T, e *engine.Engine, name, rcpt string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		d, err := e.Evaluate(context.Background(), engine.Message{From: "alice@sender.test", To: []string{rcpt}}, engine.WithTrace())
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range d.Groups {
			for _, th := range g.Throttles {
				if th.Name == name && th.InUse > 0 {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("throttle %s never showed a slot in use", name)
}

// TestDeliverHeldGroupTakesNoToken: when every recipient of a group is
// held back by a throttle of its own, nobody goes, so the group's
// throttles give their tokens back too — also when a recipient is listed
// twice.
func TestDeliverHeldGroupTakesNoToken(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	policy := oneRelayPolicy(sink.Addr, `limits:
  throttles:
    - name: per-domain
      key: [rcpt_domain]
      rate: 2/1h
    - name: per-rcpt
      key: [rcpt]
      rate: 1/1h
`)
	e := newDeliverEngine(t, policy, engine.Options{Clock: func() time.Time { return now }})
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"x@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"x@a.test", "x@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassRate)
	wantResult(t, res, 1, transport.StatusTemporary, transport.ClassRate)
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"y@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone) // the domain's second token of the hour
}

// TestDeliverFullConnectionThrottleHolds (the review's P7): a full
// connection-level throttle defers the group, with retry_after; it does
// not push the mail to the next address (or backup MX), which would
// defeat a per-address or per-MX limit.
func TestDeliverFullConnectionThrottleHolds(t *testing.T) {
	t.Parallel()
	port := testbed.FreePort(t, "127.0.0.2")
	first := smtpbed.StartSink(t, smtpbed.SinkOptions{Host: "127.0.0.2", Port: port})
	second := smtpbed.StartSink(t, smtpbed.SinkOptions{Host: "127.0.0.3", Port: port})
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	policy := fmt.Sprintf(`routing:
  route: two
  routes:
    two:
      type: relay
      address: two.relay.test
      port: %d
limits:
  throttles:
    - name: per-ip
      key: [remote_ip]
      rate: 1/1h
`, port)
	e := newDeliverEngine(t, policy, engine.Options{Clock: func() time.Time { return now }})
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"u@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	if res[0].Address.Addr().String() != "127.0.0.2" {
		t.Fatalf("first delivery went to %v", res[0].Address)
	}
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"v@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassRate)
	if res[0].RetryAfter.Before(now.Add(59 * time.Minute)) {
		t.Errorf("retry_after %v, want about an hour after %v", res[0].RetryAfter, now)
	}
	if n := len(second.Messages(t)); n != 0 {
		t.Errorf("the second address got %d messages: the full throttle of the first pushed mail to it", n)
	}
	if n := len(first.WaitMessages(t, 1)); n != 1 {
		t.Errorf("the first address has %d messages, want 1", n)
	}
}

// TestDeliverSenderThrottlePerMessage (the review's P8): a throttle keyed
// only by the sender counts once per message, however many domains (and
// groups) the message has.
func TestDeliverSenderThrottlePerMessage(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	policy := oneRelayPolicy(sink.Addr, "limits:\n  throttles:\n    - name: per-sender\n      key: [sender]\n      rate: 1/1h\n")
	e := newDeliverEngine(t, policy, engine.Options{Clock: func() time.Time { return now }})
	msg := engine.Message{From: "alice@sender.test", To: []string{"u@a.test", "v@b.test", "w@c.test"}}
	d, err := e.Evaluate(context.Background(), msg)
	if err != nil || len(d.Groups) != 3 || !d.Groups[0].Throttles[0].PerMessage {
		t.Fatalf("decision: %v %+v", err, d)
	}
	res := runDeliver(t, e, msg, deliverBody)
	for i := range res {
		wantResult(t, res, i, transport.StatusDelivered, transport.ClassNone)
	}
	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"x@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassRate)
	// Another sender has its own bucket.
	res = runDeliver(t, e, engine.Message{From: "bob@sender.test", To: []string{"x@a.test", "y@b.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	wantResult(t, res, 1, transport.StatusDelivered, transport.ClassNone)
}

// panicDialer panics instead of dialing: a bug in an embedder's Dialer.
type panicDialer struct{}

func (panicDialer) DialContext(context.Context, string, netip.AddrPort, netip.Addr) (net.Conn, error) {
	panic("dialer bug")
}

// TestThrottleSlotsFreedOnPanicAndCancel: the concurrency slots a
// delivery holds (per group and per connection) come back whatever ends
// it — a panic inside delivery, a cancelled context — so the next
// delivery is not refused for slots nobody uses.
func TestThrottleSlotsFreedOnPanicAndCancel(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "5"}})
	throttles := "limits:\n  throttles:\n    - name: one\n      key: [rcpt_domain]\n      concurrency: 1\n    - name: per-ip\n      key: [remote_ip]\n      concurrency: 1\n"
	msg := engine.Message{From: "alice@sender.test", To: []string{"u@a.test"}}

	t.Run("panic", func(t *testing.T) {
		e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, throttles), engine.Options{Dialer: panicDialer{}})
		for range 2 { // the second would be refused if the first kept its slots
			res := runDeliver(t, e, msg, deliverBody)
			wantResult(t, res, 0, transport.StatusTemporary, transport.ClassIO)
			if !strings.Contains(res[0].Text, "dialer bug") {
				t.Errorf("result %+v, want the panic reported", res[0])
			}
		}
	})
	t.Run("cancel", func(t *testing.T) {
		e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, throttles), engine.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan []engine.Result, 1)
		go func() {
			res, _ := e.Deliver(ctx, msg, strings.NewReader(deliverBody))
			done <- res
		}()
		waitInUse(t, e, "one", "u@a.test") // the slow sink holds it
		cancel()
		res := <-done
		wantResult(t, res, 0, transport.StatusTemporary, transport.ClassIO)
		d, err := e.Evaluate(context.Background(), msg, engine.WithTrace())
		if err != nil {
			t.Fatal(err)
		}
		for _, th := range d.Groups[0].Throttles {
			if th.InUse != 0 {
				t.Errorf("throttle %s still has %d in use after the cancelled delivery", th.Name, th.InUse)
			}
		}
	})
}
