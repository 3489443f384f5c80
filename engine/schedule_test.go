package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// schedulePolicy picks a retry schedule by last_error and by domain.
const schedulePolicy = `version: 1
queue:
  retry:
    - if: last_error == "dns"
      then: [10m, 1h]
    - if: rcpt_domain == "slow.example"
      then: [1h]
    - else: [2m, 5m, 10m]
  notify: [1h, 1d]
  expire: 2d
`

const scheduleZone = "$TTL 300\n$ORIGIN example.\nfast IN MX 10 mx.fast.example.\nmx.fast IN A 192.0.2.1\nslow IN MX 10 mx.slow.example.\nmx.slow IN A 192.0.2.2\n"

func TestScheduleTable(t *testing.T) {
	eng := staticEngine(t, schedulePolicy, scheduleZone, false)
	for _, c := range []struct {
		name               string
		rcpt               string
		retry, notify, age int
		lastError          string
		retryIn, notifyAt  time.Duration
		due, expired       bool
	}{
		{"first failure", "a@fast.example", 0, 0, 0, "", 2 * time.Minute, time.Hour, false, false},
		{"third failure", "a@fast.example", 2, 0, 600, "connection", 10 * time.Minute, time.Hour, false, false},
		{"the last repeats", "a@fast.example", 9, 0, 3000, "connection", 10 * time.Minute, time.Hour, false, false},
		{"dns failures wait longer", "a@fast.example", 1, 0, 600, "dns", time.Hour, time.Hour, false, false},
		{"by domain", "a@slow.example", 0, 0, 0, "", time.Hour, time.Hour, false, false},
		{"first delay notice due", "a@fast.example", 5, 0, 3600, "connection", 10 * time.Minute, time.Hour, true, false},
		{"second notice not yet", "a@fast.example", 5, 1, 7200, "connection", 10 * time.Minute, 24 * time.Hour, false, false},
		{"no notice left", "a@fast.example", 5, 2, 100000, "connection", 10 * time.Minute, 0, false, false},
		{"expired", "a@fast.example", 20, 2, 2*86400 + 1, "connection", 10 * time.Minute, 0, false, true},
	} {
		msg := engine.Message{From: "s@example.org", To: []string{c.rcpt}, RetryNum: c.retry, NotifyNum: c.notify, QueueAge: c.age, LastError: c.lastError}
		d, err := eng.Evaluate(context.Background(), msg, engine.WithTrace())
		if err != nil {
			t.Fatal(err)
		}
		g := d.Groups[0]
		sc := g.Schedule
		if sc == nil {
			t.Fatalf("%s: no schedule", c.name)
		}
		if time.Duration(sc.RetryIn) != c.retryIn || time.Duration(sc.NotifyAt) != c.notifyAt || sc.NotifyDue != c.due ||
			time.Duration(sc.Expire) != 48*time.Hour || time.Duration(sc.ExpiresIn) != 48*time.Hour-time.Duration(c.age)*time.Second {
			t.Errorf("%s: schedule %+v", c.name, *sc)
		}
		expired := g.Outcome == engine.OutcomeFail && g.Error != nil && g.Error.Class == engine.ClassExpired && !g.Error.Temporary
		if expired != c.expired || (!c.expired && g.Outcome != engine.OutcomeDeliver) {
			t.Errorf("%s: outcome %s, error %+v", c.name, g.Outcome, g.Error)
		}
	}
	// Local groups have no schedule: the embedder delivers them.
	local := staticEngine(t, "version: 1\nrouting:\n  route: local\n", scheduleZone, false)
	if d, _ := local.Evaluate(context.Background(), engine.Message{From: "s@example.org", To: []string{"a@fast.example"}}); d.Groups[0].Schedule != nil {
		t.Errorf("a local group has a schedule: %+v", d.Groups[0].Schedule)
	}
}

// TestRetryFrom delivers to a real receiver (aiosmtpd) that answers DATA
// with a temporary reply: when the reply says when to come back, the
// result's retry time is the reply's; otherwise queue.retry's. A message
// past queue.expire is not attempted.
func TestRetryFrom(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	for _, c := range []struct {
		name, reply string
		wait        time.Duration
		from        string
	}{
		{"the reply says when", "421 4.7.0 Too many messages from you, try again in 7 minutes", 7 * time.Minute, engine.RetryFromReply},
		{"greylisting's form", "451 4.7.1 Greylisted, please come back in 00:05:30", 5*time.Minute + 30*time.Second, engine.RetryFromReply},
		{"the schedule", "451 4.3.0 Temporary local problem", 5 * time.Minute, engine.RetryFromSchedule},
	} {
		t.Run(c.name, func(t *testing.T) {
			sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{DataReply: c.reply})
			e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "tls:\n  starttls: disable\nqueue:\n  retry: [2m, 5m]\n  notify: [1h]\n"),
				engine.Options{Clock: clock})
			res := runDeliver(t, e, engine.Message{From: "s@sender.test", To: []string{"a@dest.test"}, RetryNum: 1, QueueAge: 4000}, deliverBody)
			r := res[0]
			if r.Status != transport.StatusTemporary || r.RetryFrom != c.from || !r.RetryAfter.Equal(now.Add(c.wait)) || !r.NotifyDelay {
				t.Errorf("%s: status %s, retry_after %v (want %v), from %q (want %q), notify %v, text %q",
					c.name, r.Status, r.RetryAfter, now.Add(c.wait), r.RetryFrom, c.from, r.NotifyDelay, r.Text)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{})
		e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "tls:\n  starttls: disable\nqueue:\n  expire: 1h\n"), engine.Options{Clock: clock})
		res := runDeliver(t, e, engine.Message{From: "s@sender.test", To: []string{"a@dest.test"}, QueueAge: 3601}, deliverBody)
		if r := res[0]; r.Status != transport.StatusPermanent || r.Class != engine.ClassExpired || r.RetryFrom != "" {
			t.Errorf("expired: %s class %s retry_from %q: %s", r.Status, r.Class, r.RetryFrom, r.Text)
		}
		if n := len(sink.Messages(t)); n != 0 {
			t.Errorf("an expired message reached the receiver (%d messages)", n)
		}
	})
}

func TestReplyRetryHint(t *testing.T) {
	for _, c := range []struct {
		code int
		text string
		want time.Duration
	}{
		{421, "4.7.0 Try again in 5 minutes", 5 * time.Minute},
		{450, "4.2.0 Greylisted, please retry in 300 seconds", 300 * time.Second},
		{451, "4.7.1 please come back in 01:00:00", time.Hour},
		{452, "4.3.1 Insufficient system storage, retry after 2h", 2 * time.Hour},
		{421, "4.7.0 Try again later", 0},
		{550, "5.7.1 try again in 5 minutes", 0}, // not temporary
		{421, "4.7.0 try again in 3 days", 0},    // no unit we read
		{421, "4.7.0 try again in 0 seconds", 0}, // below a second
		{421, "4.7.0 try again in 200000 minutes", 0},
	} {
		got := engine.ReplyRetryHint(c.code, c.text)
		if got != c.want {
			t.Errorf("%d %q: %v, want %v", c.code, c.text, got, c.want)
		}
	}
}
