package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/relay/sched"
	"github.com/postern-mta/postern/relay/spool"
	"github.com/postern-mta/postern/transport"
)

// queue delivers the messages of the spool: it keeps the schedule, runs
// one engine.Deliver per dispatch, records the results in the message's
// state, queues the DSNs they call for and removes finished messages.
type queue struct {
	sp    *spool.Spool
	sc    *sched.Scheduler
	eng   *engine.Engine
	clock sched.Clock
	log   *slog.Logger
	m     *relayMetrics
	// dsn gives the DSN settings in force (hostname, return limit, From).
	dsn func() dsnSettings
	// jitter returns uniform numbers in [0, 1).
	jitter func() float64
	// setLimit records a destination's concurrency as last evaluated;
	// added and removed are called when a message enters (a DSN) or
	// leaves the spool.
	setLimit       func(dest string, n int)
	added, removed func()

	// locks serialise the reads and writes of one message's state.
	locks msgLocks

	// down mirrors the scheduler's down destinations in SPOOL/down.json,
	// so that a restart knows them; nil keeps nothing.
	down *downStore

	// held are the held messages (never on the schedule), with their
	// pending recipients, for the metrics.
	heldMu sync.Mutex
	held   map[string]int
}

// setHeld records whether message id is held, with its pending
// recipients.
func (q *queue) setHeld(id string, held bool, pending int) {
	q.heldMu.Lock()
	defer q.heldMu.Unlock()
	if !held {
		delete(q.held, id)
		return
	}
	if q.held == nil {
		q.held = map[string]int{}
	}
	q.held[id] = pending
}

// eachHeld calls fn for every held message, under the lock.
func (q *queue) eachHeld(fn func(id string, pending int)) {
	q.heldMu.Lock()
	defer q.heldMu.Unlock()
	for id, n := range q.held {
		fn(id, n)
	}
}

// pendingRecipients counts the recipients of a message not yet final.
func pendingRecipients(env *spool.Envelope, st *spool.State) int {
	n := 0
	for i := range env.Recipients {
		if !st.Get(i).Status.Final() {
			n++
		}
	}
	return n
}

// dsnSettings are the relay.dsn settings and the hostname.
type dsnSettings struct {
	hostname    string
	from        string
	returnLimit int64
}

// item is the payload of a scheduled (message, destination) pair: the
// recipients (indexes into the envelope) the destination has.
type item struct {
	rcpts []int
}

// lock takes the state lock of message id and returns its release.
func (q *queue) lock(id string) (unlock func()) { return q.locks.lock(id) }

// msgLocks are per-message locks that exist only while someone holds or
// waits for them: a queue of 100,000 deferred messages keeps none.
type msgLocks struct {
	mu sync.Mutex
	m  map[string]*msgLock
}

type msgLock struct {
	sync.Mutex
	refs int // holders and waiters
}

func (l *msgLocks) lock(id string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*msgLock{}
	}
	ml := l.m[id]
	if ml == nil {
		ml = &msgLock{}
		l.m[id] = ml
	}
	ml.refs++
	l.mu.Unlock()
	ml.Lock()
	return func() {
		ml.Unlock()
		l.mu.Lock()
		if ml.refs--; ml.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// engineMessage is the engine's view of queued message id for the
// recipients rcpts, with the queue variables policy rules see.
func engineMessage(id string, env *spool.Envelope, st *spool.State, rcpts []int, dest string, size int64, now time.Time) engine.Message {
	m := engine.Message{
		ID: id, From: env.From, Size: int(size),
		QueueName: dest, QueueAge: int(now.Sub(env.Arrival) / time.Second), Source: env.Source,
		ReceivedFromIP: env.ClientIP, AuthenticatedAs: env.Auth,
		SMTPUTF8: env.SMTPUTF8, RequireTLS: env.RequireTLS, EnvID: env.EnvID,
	}
	switch strings.ToUpper(env.Ret) {
	case "FULL":
		m.Ret = transport.ReturnFull
	case "HDRS":
		m.Ret = transport.ReturnHeaders
	}
	first := true
	for _, i := range rcpts {
		r := env.Recipients[i]
		m.To = append(m.To, r.Addr)
		m.RcptDSN = append(m.RcptDSN, engine.RcptDSN{Notify: notifyFlags(r.Notify), ORcpt: orcptAddr(r.ORcpt)})
		rs := st.Get(i)
		// The message-level variables come from the recipient that has
		// been tried most (they share one attempt in practice).
		if first || rs.Attempts > m.RetryNum {
			m.RetryNum, m.NotifyNum, m.LastStatus = rs.Attempts, rs.NotifyNum, rs.LastError
			m.LastError = rs.LastClass
			first = false
		}
	}
	return m
}

// notifyFlags converts the stored NOTIFY words.
func notifyFlags(words []string) transport.NotifyFlags {
	var n transport.NotifyFlags
	for _, w := range words {
		f, _ := transport.NotifyWord(w) // the listener stored valid words only
		n |= f
	}
	return n
}

// orcptAddr is the address of an ORCPT parameter ("rfc822;addr").
func orcptAddr(orcpt string) string {
	if _, addr, ok := strings.Cut(orcpt, ";"); ok {
		return addr
	}
	return orcpt
}

// destinations groups the pending, not held recipients of a message by
// destination key: the route's name for relay and LMTP routes (all
// domains sent to one smarthost share a queue), the recipient domain for
// MX routes. It evaluates the policy without DNS.
func (q *queue) destinations(ctx context.Context, id string, env *spool.Envelope, st *spool.State) (map[string][]int, error) {
	var pending []int
	for i := range env.Recipients {
		if !st.Get(i).Status.Final() {
			pending = append(pending, i)
		}
	}
	out := map[string][]int{}
	if len(pending) == 0 {
		return out, nil
	}
	msg := engineMessage(id, env, st, pending, "", 0, q.clock.Now())
	dec, err := q.eng.Evaluate(ctx, msg, engine.WithoutDNS())
	if err != nil {
		return nil, err
	}
	byAddr := map[string][]int{}
	for k, i := range pending {
		byAddr[msg.To[k]] = append(byAddr[msg.To[k]], i)
	}
	for _, g := range dec.Groups {
		key := destKey(g)
		if g.Schedule != nil && g.Schedule.DestinationConcurrency > 0 && q.setLimit != nil {
			q.setLimit(key, g.Schedule.DestinationConcurrency)
		}
		for _, r := range g.Recipients {
			out[key] = append(out[key], byAddr[r]...)
			delete(byAddr, r)
		}
	}
	// Recipients the decision did not place (it places every one; this
	// is a guard, never a loss) go to a queue of their own.
	for _, is := range byAddr {
		out["unrouted"] = append(out["unrouted"], is...)
	}
	return out, nil
}

// destKey is the destination key of a group.
func destKey(g *engine.Group) string {
	switch g.Route.Type {
	case "relay", "lmtp":
		return "route:" + g.Route.Name
	case "local":
		return "local:" + g.Route.Name
	}
	if g.Domain == "" {
		return "unrouted"
	}
	return g.Domain
}

// schedule puts message id's pending recipients into the scheduler, due
// at due (or each recipient's next attempt, when later).
func (q *queue) schedule(ctx context.Context, id string, env *spool.Envelope, st *spool.State, due time.Time) error {
	return q.scheduleFrom(ctx, id, env, st, due, nil)
}

// scheduleFrom is schedule, with each destination's recipients due no
// earlier than notBefore(dest) when notBefore is not nil.
func (q *queue) scheduleFrom(ctx context.Context, id string, env *spool.Envelope, st *spool.State, due time.Time, notBefore func(dest string) time.Time) error {
	q.setHeld(id, st.Hold, pendingRecipients(env, st))
	if st.Hold {
		return nil
	}
	dests, err := q.destinations(ctx, id, env, st)
	if err != nil {
		return err
	}
	for dest, rcpts := range dests {
		at := due
		if notBefore != nil {
			if nb := notBefore(dest); nb.After(at) {
				at = nb
			}
		}
		for _, i := range rcpts {
			if n := st.Get(i).NextAttempt; n.After(at) {
				at = n
			}
		}
		q.sc.Add(id, dest, at, &item{rcpts: rcpts})
	}
	return nil
}

// deliver carries out one dispatch: message dp.ID's recipients for
// destination dp.Dest.
func (q *queue) deliver(ctx context.Context, dp sched.Dispatch) {
	defer q.sc.Done(dp)
	defer q.lock(dp.ID)()

	// A down dispatch makes no connection: the envelope is enough (the
	// body is read only if a notice or the expiry needs it), so that a
	// destination down with a large queue costs no full read per message.
	var (
		msg  *spool.Message
		env  *spool.Envelope
		size int64
		err  error
	)
	if dp.Down {
		env, size, err = q.sp.Head(dp.ID)
	} else if msg, err = q.sp.Load(dp.ID); err == nil {
		defer msg.Close()
		env, size = msg.Envelope, msg.Size
	}
	if err != nil {
		q.readFailed(dp, err, q.clock.Now().Add(time.Minute))
		return
	}
	st, err := q.sp.ReadState(dp.ID)
	if err != nil {
		q.log.Error("cannot read a message's state; retrying later", "id", dp.ID, "err", err)
		q.sc.Add(dp.ID, dp.Dest, q.clock.Now().Add(time.Minute), dp.Payload)
		return
	}
	var rcpts []int
	if it, ok := dp.Payload.(*item); ok {
		for _, i := range it.rcpts {
			if i < len(env.Recipients) && !st.Get(i).Status.Final() {
				rcpts = append(rcpts, i)
			}
		}
	}
	if st.Hold || len(rcpts) == 0 {
		q.finish(dp.ID, env, st)
		return
	}
	now := q.clock.Now()

	if dp.Down {
		q.deferDown(ctx, dp, env, size, st, rcpts, now)
		return
	}

	// The engine sees the queue as it was before this attempt (retry_num
	// is the attempts already made).
	em := engineMessage(dp.ID, env, st, rcpts, dp.Dest, size, now)

	// Before the attempt, the state counts it and says when the next one
	// is due: a crash during the delivery neither forgets the attempt nor
	// retries at once (no retry storm from a crash loop). A message never
	// tried has no state file, and its first attempt writes none (intake
	// costs one file and one shared directory sync).
	counted := len(st.Rcpt) > 0
	if counted {
		for _, i := range rcpts {
			rs := st.Get(i)
			rs.Attempts++
			rs.NextAttempt = now.Add(sched.Backoff(q.retryList(), rs.Attempts-1, q.jitter))
			st.Set(i, rs)
		}
		if err := q.sp.WriteState(dp.ID, st); err != nil {
			q.log.Error("cannot record the attempt; retrying later", "id", dp.ID, "err", err)
			q.sc.Add(dp.ID, dp.Dest, now.Add(time.Minute), dp.Payload)
			return
		}
	}

	results, err := q.eng.Deliver(ctx, em, msg.Body)
	if err != nil || len(results) != len(rcpts) {
		// Deliver returns one result per recipient; anything else is a
		// bug, and the recipients stay queued.
		q.log.Error("delivery returned no results; retrying later", "id", dp.ID, "err", err, "results", len(results))
		q.sc.Add(dp.ID, dp.Dest, now.Add(time.Minute), dp.Payload)
		return
	}
	q.record(ctx, dp, msg, st, rcpts, em, results, now, counted)
}

// record applies the results of one delivery to the state: DSNs first
// (queued durably), then the state, then the schedule.
//
// counted says the attempt was counted in the state before it was made.
func (q *queue) record(ctx context.Context, dp sched.Dispatch, msg *spool.Message, st *spool.State, rcpts []int, em engine.Message, results []engine.Result, now time.Time, counted bool) {
	env := msg.Envelope
	// count counts the attempt once.
	count := func(rs *spool.RcptState) {
		if !counted {
			rs.Attempts++
		}
	}
	var retry []int
	var next time.Time
	for k, r := range results {
		i := rcpts[k]
		rs := st.Get(i)
		rs.LastAttempt = now
		rs.LastError = replyText(&r)
		rs.LastClass = string(r.Class)
		status := "deferred"
		switch {
		case r.Local:
			// postern relay has no local delivery: a local route in its
			// policy is a mistake to fix, not a reason to bounce.
			count(&rs)
			rs.LastClass = string(engine.ClassPolicy)
			rs.LastError = "451 4.3.5 the policy routes this recipient to a local route; postern relay does not deliver locally"
			at := now.Add(sched.Backoff(q.retryList(), rs.Attempts-1, q.jitter))
			rs.NextAttempt = at
			retry = append(retry, i)
			next = earliest(next, at)
		case r.Status == transport.StatusDelivered:
			rs.Status = spool.StatusDelivered
			count(&rs)
			status = "sent"
		case r.Status == transport.StatusPermanent && r.Class == engine.ClassExpired:
			rs.Status = spool.StatusExpired
			status = "expired"
		case r.Status == transport.StatusPermanent:
			rs.Status = spool.StatusFailed
			count(&rs)
			status = "bounced"
		case r.Class == transport.ClassRate || r.Class == transport.ClassConcurrency || r.Class == engine.ClassStore:
			// A throttle said wait: not an attempt (Stalwart's rule).
			if counted {
				rs.Attempts--
			}
			at := now.Add(time.Second)
			if !r.RetryAfter.IsZero() {
				at = now.Add(sched.ThrottleDelay(r.RetryAfter.Sub(now), q.jitter))
			}
			rs.NextAttempt = at
			retry = append(retry, i)
			next = earliest(next, at)
		default:
			count(&rs)
			at := now.Add(sched.Backoff(q.retryList(), rs.Attempts-1, q.jitter))
			if !r.RetryAfter.IsZero() {
				d := r.RetryAfter.Sub(now)
				if r.RetryFrom == engine.RetryFromSchedule {
					d = sched.Backoff([]time.Duration{d}, 0, q.jitter)
				}
				at = now.Add(max(d, 0))
			}
			rs.NextAttempt = at
			retry = append(retry, i)
			next = earliest(next, at)
		}
		st.Set(i, rs)
		q.m.delivery(status, string(r.Class))
		if rs.Status.Final() {
			q.m.delay(now.Sub(env.Arrival))
		}
	}

	// DSNs are queued (fsynced) before the recipients they report on are
	// marked: a crash in between sends a DSN twice, never not at all.
	if err := q.notify(ctx, dp.ID, env, msg, em, results, rcpts, st); err != nil {
		q.log.Error("cannot queue a DSN; the recipients stay queued and it is tried again", "id", dp.ID, "err", err)
		for _, i := range rcpts {
			rs := st.Get(i)
			if rs.Status == spool.StatusFailed || rs.Status == spool.StatusExpired {
				rs.Status = spool.StatusPending
				rs.NextAttempt = now.Add(time.Minute)
				st.Set(i, rs)
				retry = append(retry, i)
				next = earliest(next, rs.NextAttempt)
			}
		}
	}

	// No host talked to us: the destination is down, and its other
	// messages wait without a connection until the first retry delay
	// has passed (then one probe goes). Anything else means it is up.
	if downClass(results) {
		q.markDown(dp.Dest, now.Add(q.minRetry()), results[0].Text)
	} else {
		q.markUp(dp.Dest)
	}

	if st.Done(len(env.Recipients)) {
		q.remove(dp.ID)
		return
	}
	if err := q.sp.WriteState(dp.ID, st); err != nil {
		q.log.Error("cannot write a message's state", "id", dp.ID, "err", err)
	}
	if len(retry) > 0 && !st.Hold {
		q.sc.Add(dp.ID, dp.Dest, next, &item{rcpts: retry})
	}
}

// deferDown defers the recipients of a down destination without a
// connection: the attempt counts for expiry only.
func (q *queue) deferDown(ctx context.Context, dp sched.Dispatch, env *spool.Envelope, size int64, st *spool.State, rcpts []int, now time.Time) {
	em := engineMessage(dp.ID, env, st, rcpts, dp.Dest, size, now)
	dec, err := q.eng.Evaluate(ctx, em, engine.WithoutDNS())
	expired := err == nil && len(dec.Groups) > 0 && dec.Groups[0].Schedule != nil && dec.Groups[0].Schedule.ExpiresIn <= 0
	if !expired {
		// The deferral is not written to the state file: no attempt was
		// made, so nothing durable changed (the daemon's view shows it:
		// admin.annotate), and a dead destination costs no I/O per
		// queued message. After a restart such recipients are due and
		// the destination is probed again, once. Only a delay notice,
		// which must not be sent twice, is recorded.
		for _, i := range rcpts {
			q.log.Warn("delivery", "id", dp.ID, "to", env.Recipients[i].Addr, "status", "deferred",
				"dest", dp.Dest, "dsn", "4.4.1", "reply", "destination down: "+dp.Reason, "retry_after", dp.Until)
			q.m.delivery("deferred", "down")
		}
		// A delay notice falls due whether or not a connection is made.
		notified := false
		if err == nil && len(dec.Groups) > 0 && dec.Groups[0].Schedule != nil && dec.Groups[0].Schedule.NotifyDue {
			expiresAt := now.Add(time.Duration(dec.Groups[0].Schedule.ExpiresIn))
			results := make([]engine.Result, len(rcpts))
			for k := range rcpts {
				results[k] = engine.Result{Result: transport.Result{Recipient: em.To[k], Status: transport.StatusTemporary,
					Code: 451, Enhanced: transport.EnhancedCode{4, 4, 1}, Text: "destination down: " + dp.Reason},
					Route: dp.Dest, NotifyDelay: true, ExpiresAt: expiresAt}
			}
			nerr := q.withMessage(dp.ID, func(msg *spool.Message) error {
				return q.notify(ctx, dp.ID, env, msg, em, results, rcpts, st)
			})
			if nerr != nil {
				q.log.Error("cannot queue a delay notice; it is tried again at the next attempt", "id", dp.ID, "err", nerr)
			} else {
				notified = true
			}
		}
		if notified {
			if err := q.sp.WriteState(dp.ID, st); err != nil {
				q.log.Error("cannot write a message's state", "id", dp.ID, "err", err)
			}
		}
		q.sc.Add(dp.ID, dp.Dest, dp.Until, &item{rcpts: rcpts})
		return
	}
	// Expired while its destination was down: the engine says so (class
	// expired) without a connection when asked to deliver now.
	err = q.withMessage(dp.ID, func(msg *spool.Message) error {
		results, derr := q.eng.Deliver(ctx, em, msg.Body)
		if derr != nil || len(results) != len(rcpts) {
			return fmt.Errorf("delivery returned %d results for %d recipients: %v", len(results), len(rcpts), derr)
		}
		q.record(ctx, dp, msg, st, rcpts, em, results, now, false)
		return nil
	})
	if err != nil {
		q.readFailed(dp, fmt.Errorf("expiring: %w", err), dp.Until)
	}
}

// readFailed handles a dispatch whose message could not be read: a
// damaged one (moved to corrupt/ by the spool) or one no longer in the
// spool leaves the schedule; any other failure is tried again at retry.
func (q *queue) readFailed(dp sched.Dispatch, err error, retry time.Time) {
	gone := true
	switch {
	case errors.Is(err, spool.ErrCorrupt):
		q.log.Error("message damaged: moved to corrupt/", "id", dp.ID, "err", err)
	case errors.Is(err, os.ErrNotExist):
		q.log.Error("message no longer in the spool: dropped from the schedule", "id", dp.ID, "err", err)
	default:
		gone = false
		q.log.Error("cannot read a queued message; retrying later", "id", dp.ID, "err", err)
		q.sc.Add(dp.ID, dp.Dest, retry, dp.Payload)
	}
	if gone {
		q.sc.RemoveMessage(dp.ID)
		q.setHeld(dp.ID, false, 0)
	}
}

// withMessage loads message id whole (CRC checked) for fn, and closes it.
func (q *queue) withMessage(id string, fn func(*spool.Message) error) error {
	msg, err := q.sp.Load(id)
	if err != nil {
		return err
	}
	defer msg.Close()
	return fn(msg)
}

// markDown marks dest down until until, in the schedule and in
// SPOOL/down.json.
func (q *queue) markDown(dest string, until time.Time, reason string) {
	q.sc.MarkDown(dest, until, reason)
	if q.down != nil {
		q.down.set(dest, until, reason)
	}
}

// markUp marks dest up again (cheap when it was not down).
func (q *queue) markUp(dest string) {
	q.sc.MarkUp(dest)
	if q.down != nil {
		q.down.clear(dest)
	}
}

// downError is the last error of a recipient deferred because its
// destination is down, for reason.
func downError(reason string) string { return "451 4.4.1 destination down: " + reason }

// downClass reports whether results show that no host could be talked
// to: connections refused or timed out, lost before the greeting, a 421
// greeting, no DNS answer.
func downClass(results []engine.Result) bool {
	for _, r := range results {
		early := r.Err != nil && (r.Err.Phase == "connect" || r.Err.Phase == "greeting")
		switch {
		case r.Class == transport.ClassConnection || r.Class == transport.ClassDNS:
		case early && (r.Class == transport.ClassIO || r.Code == 421):
		default:
			return false
		}
	}
	return len(results) > 0
}

// retryList is the policy's queue.retry when it is a literal, else its
// default: the schedule the relay uses before it knows a result (the
// next attempt recorded before an attempt, the down period).
func (q *queue) retryList() []time.Duration {
	v := q.eng.Policy().Queue.Retry
	if l, ok := v.Literal(); ok && len(l) > 0 {
		return l
	}
	return v.Default()
}

// minRetry is how long a destination stays down: the shortest retry
// delay of queue.retry.
func (q *queue) minRetry() time.Duration { return slices.Min(q.retryList()) }

// remove deletes a finished message.
func (q *queue) remove(id string) {
	if err := q.sp.Remove(id); err != nil {
		q.log.Error("cannot remove a finished message", "id", id, "err", err)
		return
	}
	q.sc.RemoveMessage(id)
	q.setHeld(id, false, 0)
	if q.removed != nil {
		q.removed()
	}
	q.log.Info("removed", "id", id)
}

// finish removes a message whose recipients are all final (a dispatch
// found nothing left to do).
func (q *queue) finish(id string, env *spool.Envelope, st *spool.State) {
	if st.Done(len(env.Recipients)) {
		q.remove(id)
	}
}

// notify queues the DSN the results call for, and marks the recipients
// it reports on (delay notices counted in NotifyNum).
func (q *queue) notify(ctx context.Context, id string, env *spool.Envelope, msg *spool.Message, em engine.Message, results []engine.Result, rcpts []int, st *spool.State) error {
	if env.From == "" {
		for _, r := range results {
			if r.Status == transport.StatusPermanent {
				q.log.Warn("no DSN to the null sender", "id", id, "to", r.Recipient, "reply", replyText(&r))
				q.m.dsn("dropped")
			}
		}
		return nil
	}
	ds := q.dsn()
	original, err := readPrefix(msg.Body, ds.returnLimit+1)
	if err != nil {
		return err
	}
	report, which, err := q.eng.DSN(em, results, original, engine.DSNOptions{ReportingMTA: ds.hostname, MaxReturnSize: int(ds.returnLimit), From: ds.from})
	if err != nil || report == nil {
		return err
	}
	denv := &spool.Envelope{From: "", Recipients: []spool.Recipient{{Addr: env.From, Notify: []string{"NEVER"}}}, Source: "dsn", Listener: "dsn"}
	rc, err := q.sp.Create(denv)
	if err != nil {
		return err
	}
	defer rc.Abort()
	if _, err := rc.Write(report); err != nil {
		return err
	}
	dsnID, err := rc.Commit(ctx)
	if err != nil {
		return err
	}
	if q.added != nil {
		q.added()
	}
	kind := "failed"
	for _, k := range which {
		r := results[k]
		if r.Status == transport.StatusTemporary {
			kind = "delayed"
			rs := st.Get(rcpts[k])
			rs.NotifyNum++
			st.Set(rcpts[k], rs)
		} else if r.Status == transport.StatusDelivered {
			kind = "relayed"
			if r.Protocol == transport.LMTP {
				kind = "delivered"
			}
		}
	}
	q.m.dsn(kind)
	q.log.Info("dsn queued", "id", id, "dsn_id", dsnID, "kind", kind, "recipients", len(which))
	dst := &spool.State{}
	if err := q.schedule(ctx, dsnID, denv, dst, q.clock.Now()); err != nil {
		q.log.Error("cannot schedule a DSN; it is scheduled at the next start", "id", dsnID, "err", err)
	}
	return nil
}

// readPrefix reads up to n bytes of r.
func readPrefix(r io.ReaderAt, n int64) ([]byte, error) {
	var buf bytes.Buffer
	_, err := io.Copy(&buf, io.NewSectionReader(r, 0, n))
	if err != nil {
		return nil, fmt.Errorf("reading the original for the DSN: %w", err)
	}
	return buf.Bytes(), nil
}

// replyText is a result's reply as Postfix logs it: "451 4.3.0 text".
func replyText(r *engine.Result) string {
	var b strings.Builder
	if r.Code != 0 {
		fmt.Fprintf(&b, "%d ", r.Code)
	}
	if !r.Enhanced.IsZero() {
		b.WriteString(r.Enhanced.String())
		b.WriteByte(' ')
	}
	b.WriteString(r.Text)
	return strings.TrimSpace(b.String())
}

// earliest is the earlier of a and b, ignoring a zero a.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// uniform is the default jitter source.
func uniform() float64 { return rand.Float64() }
