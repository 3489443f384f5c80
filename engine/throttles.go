package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
)

// throttleRef is a throttle and the key it counts under: what delivery
// acquires.
type throttleRef struct {
	t   *policies.Throttle
	key string
}

// storeKey is the key of the counter in the ThrottleStore.
func (ref throttleRef) storeKey() string { return ref.t.Name + "\x00" + ref.key }

// throttles lists the recipient-phase throttles that apply to the group,
// with their current use (in a dry-run). A throttle whose key has rcpt is
// counted per recipient; the others per group, the first recipient
// standing for the group.
func (r *run) throttles(g *Group, tr *policies.Trace) {
	env := r.env()
	for _, t := range r.s.set.Limits.Throttles {
		if t.Phase != expr.Recipient {
			continue
		}
		rcpts := []string{""}
		if slices.Contains(t.Key, "rcpt") {
			rcpts = g.Recipients
		}
		saved := env.Rcpt
		for _, rcpt := range rcpts {
			if rcpt != "" {
				env.Rcpt = rcpt
			}
			if r.throttleMatches(t, expr.Recipient, tr) {
				g.Throttles = append(g.Throttles, r.throttleInfo(throttleRef{t, throttleKey(t.Key, env)}, rcpt))
			}
		}
		env.Rcpt = saved
	}
}

// connThrottles finds the connection-phase throttles (keys with mx,
// remote_ip or local_ip) that apply to connection c, in the environment of
// its address, for delivery to acquire. Those of a host's first address
// are also listed in the group, traced, as the dry-run shows them.
func (r *run) connThrottles(g *Group, c *Connect, first bool, tr *policies.Trace) {
	if !first {
		tr = nil
	}
	for _, t := range r.s.set.Limits.Throttles {
		if t.Phase != expr.Connection || !r.throttleMatches(t, expr.Connection, tr) {
			continue
		}
		ref := throttleRef{t, throttleKey(t.Key, r.env())}
		c.throttles = append(c.throttles, ref)
		if first {
			g.Throttles = append(g.Throttles, r.throttleInfo(ref, ""))
		}
	}
}

// throttleInfo describes ref for the decision; a dry-run shows the
// counter's current use, delivery acquires instead.
func (r *run) throttleInfo(ref throttleRef, rcpt string) ThrottleInfo {
	t := ref.t
	info := ThrottleInfo{Name: t.Name, Key: ref.key, Concurrency: t.Concurrency, Rate: t.Rate, Phase: t.Phase.String(), Recipient: rcpt, ref: ref}
	if r.cfg.trace {
		inUse, wait := r.e.throttles.Peek(ref.storeKey(), t.Concurrency, t.Rate, r.e.opts.Clock())
		info.InUse, info.WouldWait = inUse, Duration(wait)
	}
	return info
}

// throttleMatches evaluates a throttle's match (true when it has none),
// recording it in the trace.
func (r *run) throttleMatches(t *policies.Throttle, p expr.Phase, tr *policies.Trace) bool {
	if t.Match == nil {
		return true
	}
	ok, err := t.Match.Bool(r.vm(), r.env())
	if err != nil {
		r.exprFailed("limits.throttles."+t.Name+".match", err)
	}
	if tr != nil {
		e := policies.TraceEntry{Setting: "limits.throttles." + t.Name + ".match", Phase: p.String(), Kind: policies.KindRule,
			Rule: 1, At: t.Match.Position(), If: t.Match.Source(), Matched: ok && err == nil}
		if err != nil {
			e.Error = err.Error()
		}
		tr.Entries = append(tr.Entries, e)
	}
	return err == nil && ok
}

// throttleKey joins the values of the key's variables with "|". In the
// values, a backslash becomes two and a bar is preceded by a backslash, so
// two different tuples never give the same key: ("a|b", "c") gives a\|b|c
// and ("a", "b|c") gives a|b\|c. Ordinary values read as they are.
func throttleKey(keys []string, env *expr.Env) string {
	switch len(keys) {
	case 0:
		return "*"
	case 1: // the usual case: no builder
		return keyPart(keys[0], env)
	}
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(keyPart(k, env))
	}
	return b.String()
}

// keyPart is the value of one key variable, escaped for throttleKey.
func keyPart(k string, env *expr.Env) string {
	var v string
	switch k {
	case "sender":
		v = env.Sender
	case "sender_domain":
		v = env.SenderDomain
	case "rcpt":
		v = env.Rcpt
	case "rcpt_domain":
		v = env.RcptDomain
	case "route":
		v = env.Route
	case "mx":
		v = env.MX
	case "remote_ip":
		v = env.RemoteIP
	case "local_ip":
		v = env.LocalIP
	}
	if strings.ContainsAny(v, "|\\") {
		v = keyEscaper.Replace(v)
	}
	return v
}

var keyEscaper = strings.NewReplacer("\\", "\\\\", "|", "\\|")

// acquire takes a concurrency slot and a rate token of ref. When the
// throttle is full it takes nothing and returns the error to report:
// temporary, with the class and how long to wait.
func (e *Engine) acquire(ref throttleRef, now time.Time) (release func(refund bool), err *transport.Error, wait time.Duration) {
	t := ref.t
	rel, ok, class, wait := e.throttles.Acquire(ref.storeKey(), t.Concurrency, t.Rate, now)
	if ok {
		return rel, nil, 0
	}
	return nil, &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 7, 0}, Class: class,
		Message: fmt.Sprintf("throttle %s (%s) is full: retry in %s", t.Name, ref.key, wait.Round(time.Millisecond))}, wait
}

// leases are the recipient-phase throttle slots a group holds while it is
// delivered, by recipient ("" for those counted for the whole group).
type leases map[string][]func(refund bool)

// refund gives back what rcpt holds, tokens included: its delivery does
// not start.
func (l leases) refund(rcpt string) {
	for _, rel := range l[rcpt] {
		rel(true)
	}
	delete(l, rcpt)
}

// close gives back the concurrency slots once delivery has ended.
func (l leases) close() {
	for _, rels := range l {
		for _, rel := range rels {
			rel(false)
		}
	}
}

// holdGroup acquires the group's recipient-phase throttles. A full
// throttle defers, it never rejects: held gives the result of each
// recipient held back by its own throttle, or of the whole group (key "")
// when a throttle counted for the group is full. Whatever a held-back
// recipient (or the held-back group) had taken is given back, tokens
// included.
func (e *Engine) holdGroup(g *Group, now time.Time) (l leases, held map[string]Result) {
	l, held = leases{}, map[string]Result{}
	for _, info := range g.Throttles {
		if info.ref.t == nil || info.ref.t.Phase != expr.Recipient {
			continue
		}
		if _, done := held[info.Recipient]; done {
			continue
		}
		rel, err, wait := e.acquire(info.ref, now)
		if err == nil {
			l[info.Recipient] = append(l[info.Recipient], rel)
			continue
		}
		l.refund(info.Recipient)
		res := resultOf(info.Recipient, g.Route.Name, err)
		res.RetryAfter = now.Add(wait)
		held[info.Recipient] = res
	}
	if _, whole := held[""]; whole {
		for rcpt := range l {
			l.refund(rcpt)
		}
		return l, held
	}
	for rcpt := range held {
		l.refund(rcpt)
	}
	for _, rcpt := range g.Recipients {
		if _, ok := held[rcpt]; !ok {
			return l, held // someone goes
		}
	}
	l.refund("") // nobody goes: the group's tokens back too
	return l, held
}
