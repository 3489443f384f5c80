package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// Body is a message body the transport can read as many times as it needs
// (every attempt starts at offset 0): *bytes.Reader, *strings.Reader and
// *io.SectionReader qualify.
type Body interface {
	io.ReaderAt
	Size() int64
}

// Result is the outcome for one recipient of [Engine.Deliver].
type Result struct {
	transport.Result
	// Route is the name of the route the recipient took ("" when routing
	// failed).
	Route string
	// Local is set for recipients whose route is local: the engine did not
	// deliver them, the embedding MTA must (Status is StatusUnknown).
	Local bool
	// RetryFrom says where a temporary result's RetryAfter comes from:
	// RetryFromSchedule (queue.retry), RetryFromThrottle (a full
	// throttle) or RetryFromReply (the server said when); "" for other
	// results.
	RetryFrom string
	// NotifyDelay says a delay notification (a "delayed" DSN, RFC 3464)
	// is due with this temporary result: the message's queue age has
	// reached queue.notify's entry for notify_num.
	NotifyDelay bool
	// ExpiresAt is when the message expires (queue.expire), for a
	// temporary result: the Will-Retry-Until of a delay notification.
	ExpiresAt time.Time
	// TLSRPT are the TLS-RPT result records (RFC 8460) of the attempt
	// that gave this result: one per TLS session tried (success or
	// failure) and one per host a TLS policy made the engine pass over.
	// Shared by the recipients of one group: read only. Feed them to a
	// tlsrpt.Aggregator to build the daily reports.
	TLSRPT []tlsrpt.Result
}

// StatusText is "delivered", "temporary", "permanent" or "local".
func (r Result) StatusText() string {
	if r.Local {
		return "local"
	}
	return r.Status.String()
}

// Deliver evaluates the policy for msg and delivers body to every recipient
// whose route is mx or a relay, groups in parallel. It returns exactly one
// Result per recipient of msg.To, in the same order — delivered, temporary,
// permanent, or local (left to the embedder) — whatever fails, panics and
// cancellation included. The error is non-nil only when nothing could be
// attempted (no recipients, a context already done).
func (e *Engine) Deliver(ctx context.Context, msg Message, body Body) ([]Result, error) {
	if len(msg.To) == 0 {
		return nil, errors.New("engine: message has no recipients")
	}
	if body == nil {
		return nil, errors.New("engine: Deliver without a body")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	msg.Size = int(body.Size())
	if !msg.TLSRequiredNo {
		msg.TLSRequiredNo = tlsRequiredNo(body)
	}
	s := e.state.Load()
	start := time.Now()
	dec := e.evaluate(ctx, s, &msg, evalConfig{rand: e.opts.Rand})
	e.opts.Metrics.Evaluation(time.Since(start).Seconds())

	results := make([]Result, len(msg.To))
	done := make([]bool, len(msg.To))
	slots := positions(msg.To)
	var wg sync.WaitGroup
	sem := make(chan struct{}, e.parallel())
	msgT := &messageThrottles{}
	defer msgT.close() // after every group: wg.Wait below
	one := func(g *Group, idx []int) {
		out := e.deliverGroup(ctx, s, &msg, body, g, idx, msgT)
		g.retryAfter(out, e.opts.Clock(), s.set, &msg)
		for i, k := range idx {
			results[k] = out[i]
			done[k] = true
		}
	}
	if len(dec.Groups) == 1 {
		// One group, the common case: no goroutine of its own.
		one(dec.Groups[0], slots.take(dec.Groups[0].Recipients))
	} else {
		for _, g := range dec.Groups {
			idx := slots.take(g.Recipients)
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				one(g, idx)
			}()
		}
		wg.Wait()
	}
	for i := range results { // never a silent loss
		if !done[i] {
			results[i] = failed(msg.To[i], "", true, transport.ClassNone, "engine: no result was produced for this recipient")
		}
	}
	e.observe(ctx, &msg, results)
	return results, nil
}

// maxHeaderScan bounds how much of a body is read looking for the
// TLS-Required header field.
const maxHeaderScan = 1 << 20

// tlsRequiredNo reports whether the message's header section (RFC 5322)
// has the field "TLS-Required: No" (RFC 8689 section 5; the value is
// case-insensitive, and folded lines are unfolded). It reads at most
// maxHeaderScan bytes: a header that long is not looked at further.
func tlsRequiredNo(body Body) bool {
	r := bufio.NewReader(io.NewSectionReader(body, 0, min(body.Size(), maxHeaderScan)))
	var field []byte // the current field, unfolded
	check := func() bool {
		name, value, ok := bytes.Cut(field, []byte(":"))
		return ok && strings.EqualFold(string(bytes.TrimSpace(name)), "TLS-Required") &&
			strings.EqualFold(string(bytes.TrimSpace(value)), "No")
	}
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return false // a line too long for a header
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) > 0 && (trimmed[0] == ' ' || trimmed[0] == '\t') {
			field = append(field, trimmed...)
		} else {
			if check() {
				return true
			}
			if len(trimmed) == 0 { // the end of the header section
				return false
			}
			field = append(field[:0], trimmed...)
		}
		if err != nil {
			return check()
		}
	}
}

func (e *Engine) parallel() int {
	if e.opts.Parallel > 0 {
		return e.opts.Parallel
	}
	return 8
}

// slotQueue maps recipient addresses to their positions in msg.To, in
// order, so that a recipient listed twice gets two results.
type slotQueue map[string][]int

func positions(to []string) slotQueue {
	q := slotQueue{}
	for i, r := range to {
		q[r] = append(q[r], i)
	}
	return q
}

func (q slotQueue) take(rcpts []string) []int {
	out := make([]int, len(rcpts))
	for i, r := range rcpts {
		out[i] = q[r][0]
		q[r] = q[r][1:]
	}
	return out
}

// failed builds a result for a recipient that was not attempted.
func failed(rcpt, route string, temporary bool, class transport.Class, text string) Result {
	code, enh := 550, transport.EnhancedCode{5, 0, 0}
	if temporary {
		code, enh = 451, transport.EnhancedCode{4, 0, 0}
	}
	switch class {
	case transport.ClassDNS:
		enh[1], enh[2] = 4, 4 // x.4.4 unable to route
		if !temporary {
			enh[1], enh[2] = 1, 2 // 5.1.2 bad destination system
		}
	case transport.ClassRate, transport.ClassConcurrency:
		enh[1], enh[2] = 7, 0
	case transport.ClassMTASTS, transport.ClassDANE, transport.ClassTLS:
		enh[1], enh[2] = 7, 10 // x.7.10 encryption needed
	case ClassInvalidAddress:
		enh[1], enh[2] = 1, 3 // x.1.3 bad destination mailbox address syntax
	case ClassExpired:
		enh[1], enh[2] = 4, 7 // x.4.7 delivery time expired
	}
	return resultOf(rcpt, route, &transport.Error{Code: code, Enhanced: enh, Message: text, Class: class, Permanent: !temporary})
}

// deliverGroup delivers one group (its recipients are msg.To at idx); it
// always returns one result per recipient of g, and turns a panic into
// temporary results.
func (e *Engine) deliverGroup(ctx context.Context, s *state, msg *Message, body Body, g *Group, idx []int, msgT *messageThrottles) (out []Result) {
	defer func() {
		if p := recover(); p != nil {
			e.opts.Logger.Error("delivery panicked", "domain", g.Domain, "panic", fmt.Sprint(p))
			out = g.all(failed("", g.Route.Name, true, transport.ClassNone, fmt.Sprintf("engine: internal error: %v", p)))
		}
	}()
	switch g.Outcome {
	case OutcomeLocal:
		return g.all(Result{Route: g.Route.Name, Local: true})
	case OutcomeFail, OutcomeDefer:
		res := failed("", g.Route.Name, g.Outcome == OutcomeDefer, g.Error.Class, g.Error.Message)
		if g.badSender { // 5.1.7: bad sender's mailbox address syntax (RFC 3463)
			res.Enhanced, res.Err.Enhanced = transport.EnhancedCode{5, 1, 7}, transport.EnhancedCode{5, 1, 7}
		}
		res.TLSRPT = g.tlsReports(nil, nil, e.opts.Clock())
		return g.all(res)
	}

	// The plan first: a group that cannot be attempted (an unreadable
	// secret) takes no throttle slot or token.
	hooks := &connHooks{e: e, s: s}
	p, err := plan(g, hooks)
	if err != nil {
		return g.all(failed("", g.Route.Name, true, ClassPolicy, err.Error()))
	}
	defer hooks.release()
	now := e.opts.Clock()
	leases, held, warns := e.holdGroup(ctx, s, g, msgT)
	defer leases.close()
	if whole, ok := held[""]; ok {
		return g.all(whole)
	}
	msgT.start()

	tm := &transport.Message{From: msg.From, Body: body, Size: body.Size(), RequireTLS: msg.RequireTLS, EnvID: msg.EnvID,
		Return: msg.Ret, SMTPUTF8: msg.SMTPUTF8}
	for i, r := range g.Recipients {
		if _, ok := held[r]; !ok {
			// The canonical form goes on the wire (a trailing dot
			// dropped, the domain lower-cased).
			p := msg.dsnOf(idx[i])
			tm.Recipients = append(tm.Recipients, transport.Recipient{Address: g.wire[i], Notify: p.Notify, ORcpt: p.ORcpt})
		}
	}
	var (
		sent    []transport.Result
		reports []tlsrpt.Result
	)
	if len(tm.Recipients) > 0 {
		start := time.Now()
		sent = e.client.Deliver(ctx, p, tm)
		accepted := false
		for i := range sent {
			accepted = accepted || sent[i].Status == transport.StatusDelivered
		}
		e.opts.Metrics.Attempt(g.Route.Name, time.Since(start).Seconds(), accepted)
		e.countDANE(g, sent[0].Attempts)
		e.reportAttempts(msg, g, p, sent)
		reports = g.tlsReports(hooks.hosts, sent[0].Attempts, e.opts.Clock())
	} else {
		reports = g.tlsReports(nil, nil, now)
	}
	out = make([]Result, len(g.Recipients))
	for i, r := range g.Recipients {
		if res, ok := held[r]; ok {
			out[i] = res
			continue
		}
		out[i] = Result{Result: sent[0], Route: g.Route.Name, TLSRPT: reports}
		out[i].Recipient = r // as the embedder wrote it
		sent = sent[1:]
		// A connection-level throttle was full (or its store failed):
		// say when to come back.
		if c := out[i].Class; (c == transport.ClassRate || c == transport.ClassConcurrency || c == ClassStore) && out[i].RetryAfter.IsZero() {
			out[i].RetryAfter = now.Add(hooks.wait())
		}
		for _, w := range append(warns, hooks.warns...) {
			out[i].Warnings = append(out[i].Warnings, transport.Warning{Class: ClassStore, Text: w})
		}
	}
	return out
}

// all gives every recipient of g the result res.
func (g *Group) all(res Result) []Result {
	out := make([]Result, len(g.Recipients))
	for i, r := range g.Recipients {
		out[i] = res
		out[i].Recipient = r
	}
	return out
}

// resultOf is the result of a recipient that was not attempted because
// of err.
func resultOf(rcpt, route string, err *transport.Error) Result {
	st := transport.StatusTemporary
	if err.Permanent {
		st = transport.StatusPermanent
	}
	return Result{Route: route, Result: transport.Result{Recipient: rcpt, Status: st, Code: err.Code,
		Enhanced: err.Enhanced, Text: err.Message, Class: err.Class, Err: err}}
}
