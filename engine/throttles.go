package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/engine/throttle"
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

// storeKey is the key of the counter in the throttle store: the
// throttle's name (which has no colon) and the key's value.
func (ref throttleRef) storeKey() string { return ref.t.Name + ":" + ref.key }

// throttles lists the recipient-phase throttles that apply to the group,
// with their current use (in a dry-run). A throttle whose key has rcpt is
// counted per recipient; the others per group, the first recipient
// standing for the group.
//
// afterMX selects the throttles keyed by site, checked once the MX lookup
// has given the group its site; the others are checked before DNS.
func (r *run) throttles(g *Group, tr *policies.Trace, afterMX bool) {
	env := r.env()
	for _, t := range r.s.set.Limits.Throttles {
		if t.Phase != expr.Recipient || t.AfterMX != afterMX {
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
// counter's current use, read from the store (Redis included), delivery
// acquires instead.
func (r *run) throttleInfo(ref throttleRef, rcpt string) ThrottleInfo {
	t := ref.t
	info := ThrottleInfo{Name: t.Name, Key: ref.key, Concurrency: t.Concurrency, Rate: t.Rate, Phase: t.Phase.String(), Recipient: rcpt,
		PerMessage: t.PerMessage, ref: ref}
	if t.AfterMX {
		info.Phase = "site"
	}
	if r.cfg.trace {
		u, err := r.s.throttles.Peek(r.ctx, ref.storeKey(), limitOf(t))
		if err != nil {
			info.StoreError = err.Error()
		}
		info.InUse, info.WouldWait = u.InUse, Duration(u.Wait)
	}
	return info
}

// limitOf is a throttle's limit, in the store's terms.
func limitOf(t *policies.Throttle) throttle.Limit {
	return throttle.Limit{Concurrency: t.Concurrency, Rate: throttle.Rate{Count: t.Rate.Count, Period: t.Rate.Period}}
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
	case "site":
		v = env.Site
	default:
		if name, ok := strings.CutPrefix(k, "meta."); ok {
			v = env.Meta[name]
		}
	}
	if strings.ContainsAny(v, "|\\") {
		v = keyEscaper.Replace(v)
	}
	return v
}

var keyEscaper = strings.NewReplacer("\\", "\\\\", "|", "\\|")

// storeRetry is when to come back after the throttle store failed and
// limits.on-store-error is defer.
const storeRetry = time.Minute

// acquire takes a concurrency slot and a rate token of ref. When the
// throttle is full it takes nothing and returns the error to report:
// temporary, with the class and how long to wait (the store's estimate).
// When the store fails, limits.on-store-error decides: defer gives a
// temporary error of class store; allow gives neither lease nor error
// (the delivery goes on unthrottled), and the failure is logged and
// returned as warn for the results.
func (e *Engine) acquire(ctx context.Context, s *state, ref throttleRef) (lease throttle.Lease, terr *transport.Error, wait time.Duration, warn string) {
	t := ref.t
	g, err := s.throttles.Acquire(ctx, ref.storeKey(), limitOf(t))
	if err != nil {
		msg := fmt.Sprintf("throttle %s (%s): the throttle store failed: %v", t.Name, ref.key, err)
		if s.set.Limits.OnStoreError == "allow" {
			e.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "throttle store failed, delivering unthrottled (limits.on-store-error: allow)",
				slog.String("throttle", t.Name), slog.String("key", ref.key), slog.String("error", err.Error()))
			return throttle.Lease{}, nil, 0, msg + "; delivered unthrottled (limits.on-store-error: allow)"
		}
		e.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "throttle store failed, deferring (limits.on-store-error: defer)",
			slog.String("throttle", t.Name), slog.String("key", ref.key), slog.String("error", err.Error()))
		return throttle.Lease{}, &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 3, 0}, Class: ClassStore,
			Message: msg + "; deferred (limits.on-store-error: defer)", Err: err}, storeRetry, ""
	}
	if g.Lease.Held() {
		return g.Lease, nil, 0, ""
	}
	e.opts.Metrics.ThrottleDeferred(t.Name)
	e.opts.Metrics.ThrottleWait(t.Name, g.Wait.Seconds())
	return throttle.Lease{}, &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 7, 0}, Class: transport.Class(g.Class),
		Message: fmt.Sprintf("throttle %s (%s) is full: retry in %s", t.Name, ref.key, g.Wait.Round(time.Millisecond))}, g.Wait, ""
}

// leases are the recipient-phase throttle slots a group holds while it is
// delivered, by recipient ("" for those counted for the whole group).
type leases map[string][]throttle.Lease

// refund gives back what rcpt holds, tokens included: its delivery does
// not start.
func (l leases) refund(rcpt string) {
	for _, lease := range l[rcpt] {
		lease.Release(true)
	}
	delete(l, rcpt)
}

// close gives back the concurrency slots once delivery has ended.
func (l leases) close() {
	for _, ls := range l {
		for _, lease := range ls {
			lease.Release(false)
		}
	}
}

// messageThrottles are the per-message throttles (perMessage) of one
// Deliver call: acquired once, by the first group that needs them, and
// shared by the message's other groups; released when the whole message
// is done, their tokens refunded when no group started.
type messageThrottles struct {
	mu      sync.Mutex
	held    map[string]msgHold // by store key
	started bool
}

type msgHold struct {
	lease throttle.Lease
	err   *transport.Error // the throttle was full (or its store failed)
	wait  time.Duration
	warn  string
}

// acquire returns the message's hold on ref, acquiring it on first use.
func (m *messageThrottles) acquire(ctx context.Context, e *Engine, s *state, ref throttleRef) msgHold {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := ref.storeKey()
	if h, ok := m.held[k]; ok {
		return h
	}
	var h msgHold
	h.lease, h.err, h.wait, h.warn = e.acquire(ctx, s, ref)
	if m.held == nil {
		m.held = map[string]msgHold{}
	}
	m.held[k] = h
	return h
}

// start records that a group of the message went out.
func (m *messageThrottles) start() {
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
}

// close releases the message's leases: tokens kept when a group started,
// refunded when none did.
func (m *messageThrottles) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range m.held {
		h.lease.Release(!m.started)
	}
}

// holdGroup acquires the group's recipient-phase throttles (the message's
// own for per-message ones). A full throttle defers, it never rejects:
// held gives the result of each recipient held back by its own throttle,
// or of the whole group (key "") when a throttle counted for the group is
// full. Whatever a held-back recipient (or the held-back group) had taken
// is given back, tokens included. warns are the store failures passed
// over (limits.on-store-error: allow), for the results.
func (e *Engine) holdGroup(ctx context.Context, s *state, g *Group, msgT *messageThrottles) (l leases, held map[string]Result, warns []string) {
	l, held = leases{}, map[string]Result{}
	now := e.opts.Clock()
	for _, info := range g.Throttles {
		if info.ref.t == nil || info.ref.t.Phase != expr.Recipient {
			continue
		}
		if _, done := held[info.Recipient]; done {
			continue
		}
		var (
			lease throttle.Lease
			terr  *transport.Error
			wait  time.Duration
			warn  string
		)
		if info.PerMessage && msgT != nil {
			h := msgT.acquire(ctx, e, s, info.ref)
			terr, wait, warn = h.err, h.wait, h.warn // the lease is the message's
		} else {
			lease, terr, wait, warn = e.acquire(ctx, s, info.ref)
		}
		if warn != "" {
			warns = append(warns, warn)
		}
		if terr == nil {
			if lease.Held() {
				l[info.Recipient] = append(l[info.Recipient], lease)
			}
			continue
		}
		l.refund(info.Recipient)
		res := resultOf(info.Recipient, g.Route.Name, terr)
		res.RetryAfter = now.Add(wait)
		held[info.Recipient] = res
	}
	if _, whole := held[""]; whole {
		for rcpt := range l {
			l.refund(rcpt)
		}
		return l, held, warns
	}
	for rcpt := range held {
		l.refund(rcpt)
	}
	for _, rcpt := range g.Recipients {
		if _, ok := held[rcpt]; !ok {
			return l, held, warns // someone goes
		}
	}
	l.refund("") // nobody goes: the group's tokens back too
	return l, held, warns
}

// siteOf is the site of a group whose next hops are hosts (see the site
// variable): the first limits.sites entry one of whose patterns matches
// one of them, else their names, sorted and joined with commas (the MX
// rollup, so that domains hosted by one provider share it).
func siteOf(sites []policies.Site, hosts []string) string {
	for _, site := range sites {
		for _, h := range hosts {
			if site.Matches(h) {
				return site.Name
			}
		}
	}
	sorted := slices.Clone(hosts)
	slices.Sort(sorted)
	return strings.Join(slices.Compact(sorted), ",")
}

// siteThrottles gives the group its site (from its next hops) and lists
// the throttles keyed by site that apply to it, traced in the group's
// context.
func (r *run) siteThrottles(g *Group, hosts []string) {
	if len(hosts) == 0 || !r.s.set.Limits.NeedSite {
		return
	}
	g.Site = siteOf(r.s.set.Limits.Sites, hosts)
	env := r.env()
	env.Site = g.Site
	tr := r.newTrace()
	r.throttles(g, tr, true)
	flush(g, tr, func() string { return "group " + g.Domain + " via " + g.Route.Name + ", site " + g.Site })
}
