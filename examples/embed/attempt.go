package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/transport"
)

// fallbackRetry is the wait after a temporary result that carries no
// retry time: a group that failed before the policy's queue.retry was
// decided (routing.route did not evaluate, an internal error).
const fallbackRetry = 5 * time.Minute

// attempt makes one delivery attempt of env's pending recipients, records
// each result, queues the notification the results call for and settles
// env: removed when done, due again at the earliest retry time otherwise.
func (m *mta) attempt(ctx context.Context, env *envelope) error {
	body, err := m.q.body(env.ID)
	if err != nil {
		return err
	}
	msg, idx := message(env, m.now())
	results, err := m.eng.Deliver(ctx, msg, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("delivering %s: %w", env.ID, err)
	}
	notified := false
	for i, r := range results { // one per recipient of msg.To, in order
		rc := &env.Rcpts[idx[i]]
		rc.Reply, rc.RetryAfter, rc.RetryFrom = reply(r), time.Time{}, ""
		switch {
		case r.Local:
			rc.State = stateLocal // a real MTA hands these to its local delivery
		case r.Status == transport.StatusDelivered:
			rc.State = stateDelivered
		case r.Status == transport.StatusTemporary:
			rc.RetryAfter, rc.RetryFrom = r.RetryAfter, r.RetryFrom
			if rc.RetryAfter.IsZero() {
				rc.RetryAfter, rc.RetryFrom = m.now().Add(fallbackRetry), "queue"
			}
			env.LastError, env.LastStatus = string(r.Class), rc.Reply
			notified = notified || r.NotifyDelay
		default: // permanent, queue.expire's expired included
			rc.State = stateBounced
		}
	}
	env.RetryNum++
	if notified {
		env.NotifyNum++ // the next delay notification waits for queue.notify's next entry
	}
	// The notification is queued before env is saved: a crash in between
	// sends it twice rather than never.
	if err := m.notify(env, msg, results, body); err != nil {
		m.log.Error("notification not queued", "id", env.ID, "error", err)
	}
	return m.q.settle(env)
}

// message is the engine's view of env's pending recipients at now, and
// their positions in env.Rcpts.
func message(env *envelope, now time.Time) (engine.Message, []int) {
	msg := engine.Message{ID: env.ID, From: env.From, Source: env.Source, EnvID: env.EnvID, Ret: parseRet(env.Ret),
		RetryNum: env.RetryNum, NotifyNum: env.NotifyNum, LastError: env.LastError, LastStatus: env.LastStatus,
		QueueAge: max(0, int(now.Sub(env.QueuedAt)/time.Second))}
	var idx []int
	for i, r := range env.Rcpts {
		if r.State != statePending {
			continue
		}
		notify, _ := parseNotify(r.Notify) // checked when queued
		msg.To = append(msg.To, r.Addr)
		msg.RcptDSN = append(msg.RcptDSN, engine.RcptDSN{Notify: notify, ORcpt: r.ORcpt})
		idx = append(idx, i)
	}
	return msg, idx
}

// notify queues the delivery status notification the results call for,
// as a new message from the null sender to env's sender, delivered
// through the same queue and engine. Engine.DSN decides what is due: a
// bounce, a delay warning, a success report, or nothing (always nothing
// for a message from the null sender, so notifications never loop).
func (m *mta) notify(env *envelope, msg engine.Message, results []engine.Result, body []byte) error {
	report, which, err := m.eng.DSN(msg, results, body, engine.DSNOptions{})
	if err != nil || report == nil {
		return err
	}
	id, err := m.q.enqueue(envelope{From: "", Rcpts: []recipient{{Addr: env.From}}, Source: "dsn"}, report)
	if err != nil {
		return err
	}
	about := make([]string, len(which))
	for i, k := range which {
		about[i] = msg.To[k]
	}
	m.log.Info("notification queued", "id", id, "about", env.ID, "to", env.From, "recipients", about)
	return nil
}

// reply is a result's reply as one line: "550 5.1.1 no such user".
func reply(r engine.Result) string {
	if r.Code == 0 {
		return ""
	}
	s := strconv.Itoa(r.Code)
	if !r.Enhanced.IsZero() {
		s += " " + r.Enhanced.String()
	}
	return s + " " + r.Text
}

// parseNotify reads a DSN NOTIFY value (RFC 3461 section 4.1).
func parseNotify(s string) (transport.NotifyFlags, error) {
	var n transport.NotifyFlags
	for w := range strings.SplitSeq(s, ",") {
		f, ok := transport.NotifyWord(w)
		switch {
		case w == "":
		case ok:
			n |= f
		default:
			return 0, fmt.Errorf("NOTIFY %q: want NEVER, or SUCCESS, FAILURE and DELAY separated by commas", s)
		}
	}
	if n&transport.NotifyNever != 0 && n != transport.NotifyNever {
		return 0, fmt.Errorf("NOTIFY %q: NEVER excludes the others", s)
	}
	return n, nil
}

// parseRet reads a DSN RET value (RFC 3461 section 4.3); "" is none.
func parseRet(s string) transport.DSNReturn {
	switch strings.ToUpper(s) {
	case "FULL":
		return transport.ReturnFull
	case "HDRS":
		return transport.ReturnHeaders
	}
	return transport.ReturnDefault
}
