package mtalog_test

import (
	"fmt"
	"net/smtp"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/internal/mtalog"
	"github.com/postern-mta/postern/internal/testbed/postfixbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// TestPostfixRealInstance submits mail to a real Postfix, lets it relay
// to real sinks (one accepting, one refusing RCPT temporarily, one
// permanently), and imports the log Postfix wrote: every message must come
// back as the envelope that was submitted — sender, recipients grouped
// and in order, each once though deferred twice, the size Postfix logged —
// and so must the bounce Postfix itself sent. With short and with long
// queue IDs.
func TestPostfixRealInstance(t *testing.T) {
	for _, tc := range []struct {
		name string
		main []string
	}{
		{"short-ids", nil},
		{"long-ids", []string{"enable_long_queue_ids = yes"}},
	} {
		t.Run(tc.name, func(t *testing.T) { testPostfixReal(t, tc.main) })
	}
}

func testPostfixReal(t *testing.T, extraMain []string) {
	start := time.Now()
	phase := func(what string) { t.Logf("%.1fs: %s", time.Since(start).Seconds(), what) }
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	soft := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-r", "RCPT"}})
	hard := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-f", "RCPT"}})
	pf := postfixbed.Start(t, postfixbed.Options{
		Relay: sink.Addr.String(),
		Main: append([]string{fmt.Sprintf("transport_maps = inline:{soft.test=smtp:[%s]:%d, hard.test=smtp:[%s]:%d}",
			soft.Addr.Addr(), soft.Addr.Port(), hard.Addr.Addr(), hard.Addr.Port())}, extraMain...),
	})

	phase("Postfix started")
	// Each message's recipients go to one destination, so Postfix
	// delivers them in one transaction and logs them in envelope order.
	var msgs []sent
	add := func(from string, to ...string) string {
		body := fmt.Sprintf("Subject: test %d\r\n\r\nhello %s\r\n", len(msgs), strings.Repeat("x", 100*len(msgs)))
		id := submit(t, pf.SMTPD, from, to, body)
		msgs = append(msgs, sent{corpus.Envelope{ID: id, From: from, To: to}, len(body)})
		return id
	}
	add("alice@sender.test", "bob@dest.test", "carol@dest.test", `"smith, j"@dest.test`)
	add("", "dave@dest.test") // the null sender
	bounced := add("erin@sender.test", "ivy@hard.test")
	deferred := add("frank@sender.test", "gina@soft.test")

	dsnLine := regexp.MustCompile(regexp.QuoteMeta(bounced) + `: sender non-delivery notification: (\w+)`)
	var dsn string
	pf.WaitLog(t, time.Minute, func(log string) error {
		m := dsnLine.FindStringSubmatch(log)
		if m == nil {
			return fmt.Errorf("no bounce for %s yet", bounced)
		}
		dsn = m[1]
		for _, id := range []string{msgs[0].env.ID, msgs[1].env.ID, bounced, dsn} {
			if !strings.Contains(log, " "+id+": removed\n") {
				return fmt.Errorf("%s not removed yet", id)
			}
		}
		if n := countDeferred(log, deferred); n != 1 {
			return fmt.Errorf("%s deferred %d times, want 1", deferred, n)
		}
		return nil
	})
	phase("delivered, bounced, deferred once")
	// Retry the deferred message: a second from= and to= for it.
	pf.Command(t, "postqueue", "-f")
	pf.WaitLog(t, time.Minute, func(log string) error {
		if n := countDeferred(log, deferred); n < 2 {
			return fmt.Errorf("%s deferred %d times, want 2", deferred, n)
		}
		return nil
	})

	phase("deferred twice")
	want := map[string]sent{}
	for _, m := range msgs {
		want[m.env.ID] = m
	}
	// The bounce Postfix sent to erin is mail in the log too.
	want[dsn] = sent{env: corpus.Envelope{ID: dsn, From: "", To: []string{"erin@sender.test"}}}

	// Still deferred: the message is emitted at the end of the log.
	got, st := importLog(t, pf.Log(t))
	checkEnvelopes(t, got, want)
	if st.NoSender != 0 || st.Unknown != 0 || st.Probes != 0 {
		t.Errorf("stats %+v: every line of Postfix's own log is read, every message has its sender", st)
	}

	// Deleted from the queue: postsuper logs "removed".
	pf.Command(t, "postsuper", "-d", deferred)
	pf.WaitLog(t, time.Minute, func(log string) error {
		if !strings.Contains(log, " "+deferred+": removed\n") {
			return fmt.Errorf("%s not removed yet", deferred)
		}
		return nil
	})
	got, st = importLog(t, pf.Log(t))
	checkEnvelopes(t, got, want)
	if st.Envelopes != len(want) || st.NoSender != 0 || st.NoRecipients != 0 || st.Unknown != 0 {
		t.Errorf("stats %+v, want %d envelopes and nothing skipped", st, len(want))
	}
}

// sent is a message as submitted.
type sent struct {
	env  corpus.Envelope
	size int // bytes submitted; Postfix's size adds its headers
}

// countDeferred counts the deferral lines of queue ID id.
func countDeferred(log, id string) int {
	n := 0
	for l := range strings.SplitSeq(log, "\n") {
		if strings.Contains(l, " "+id+": to=<") && strings.Contains(l, " status=deferred ") {
			n++
		}
	}
	return n
}

func importLog(t *testing.T, log string) (map[string]corpus.Envelope, mtalog.Stats) {
	t.Helper()
	got := map[string]corpus.Envelope{}
	st, err := mtalog.ReadPostfix(strings.NewReader(log), func(e corpus.Envelope) error {
		if _, dup := got[e.ID]; dup {
			t.Errorf("queue ID %s emitted twice", e.ID)
		}
		got[e.ID] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.Logf("the log:\n%s", log)
	}
	return got, st
}

// checkEnvelopes compares sender and recipients exactly, and checks the
// size: at least what was submitted (Postfix adds headers).
func checkEnvelopes(t *testing.T, got map[string]corpus.Envelope, want map[string]sent) {
	t.Helper()
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("%s: no envelope; want %+v", id, w.env)
			continue
		}
		if g.From != w.env.From || !slices.Equal(g.To, w.env.To) {
			t.Errorf("%s: from %q to %q, want from %q to %q", id, g.From, g.To, w.env.From, w.env.To)
		}
		size, err := strconv.Atoi(string(g.Vars["size"]))
		if err != nil || size < w.size || size == 0 || len(g.Vars) != 1 {
			t.Errorf("%s: vars %v, want size >= %d and nothing else", id, g.Vars, w.size)
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected envelope %+v", g)
		}
	}
}

// submit sends one message over SMTP and returns the queue ID from
// Postfix's reply to the end of DATA ("250 2.0.0 Ok: queued as ID").
func submit(t *testing.T, addr, from string, to []string, body string) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	id, err := c.Text.Cmd("DATA")
	if err != nil {
		t.Fatal(err)
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(354)
	c.Text.EndResponse(id)
	if err != nil {
		t.Fatal(err)
	}
	dw := c.Text.DotWriter()
	if _, err := dw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Text.ReadResponse(250)
	if err != nil {
		t.Fatal(err)
	}
	_, qid, ok := strings.Cut(msg, "queued as ")
	if !ok || qid == "" {
		t.Fatalf("no queue ID in %q", msg)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(qid)
}
