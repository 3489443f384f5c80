package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/mailbox"
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
	s := e.state.Load()
	dec := e.evaluate(ctx, s, &msg, evalConfig{rand: e.opts.Rand})

	results := make([]Result, len(msg.To))
	done := make([]bool, len(msg.To))
	slots := positions(msg.To)
	var wg sync.WaitGroup
	sem := make(chan struct{}, e.parallel())
	for _, g := range dec.Groups {
		idx := slots.take(g.Recipients)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out := e.deliverGroup(ctx, s, &msg, body, g)
			for i, k := range idx {
				results[k] = out[i]
				done[k] = true
			}
		}()
	}
	wg.Wait()
	for i := range results { // never a silent loss
		if !done[i] {
			results[i] = failed(msg.To[i], "", true, transport.ClassNone, "engine: no result was produced for this recipient")
		}
	}
	return results, nil
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
	code, enh, status := 550, transport.EnhancedCode{5, 0, 0}, transport.StatusPermanent
	if temporary {
		code, enh, status = 451, transport.EnhancedCode{4, 0, 0}, transport.StatusTemporary
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
	}
	err := &transport.Error{Code: code, Enhanced: enh, Message: text, Class: class, Permanent: !temporary}
	return Result{Route: route, Result: transport.Result{Recipient: rcpt, Status: status, Code: code, Enhanced: enh,
		Text: text, Class: class, Err: err}}
}

// deliverGroup delivers one group; it always returns one result per
// recipient of g, and turns a panic into temporary results.
func (e *Engine) deliverGroup(ctx context.Context, s *state, msg *Message, body Body, g *Group) (out []Result) {
	defer func() {
		if p := recover(); p != nil {
			e.opts.Logger.Error("delivery panicked", "domain", g.Domain, "panic", fmt.Sprint(p))
			out = make([]Result, len(g.Recipients))
			for i, r := range g.Recipients {
				out[i] = failed(r, g.Route.Name, true, transport.ClassNone, fmt.Sprintf("engine: internal error: %v", p))
			}
		}
	}()
	all := func(temporary bool, class transport.Class, text string) []Result {
		res := make([]Result, len(g.Recipients))
		for i, r := range g.Recipients {
			res[i] = failed(r, g.Route.Name, temporary, class, text)
		}
		return res
	}
	switch g.Outcome {
	case OutcomeLocal:
		res := make([]Result, len(g.Recipients))
		for i, r := range g.Recipients {
			res[i] = Result{Route: g.Route.Name, Local: true, Result: transport.Result{Recipient: r}}
		}
		return res
	case OutcomeFail, OutcomeDefer:
		res := all(g.Outcome == OutcomeDefer, g.Error.Class, g.Error.Message)
		if g.badSender {
			for i := range res { // 5.1.7: bad sender's mailbox address syntax (RFC 3463)
				res[i].Enhanced, res[i].Err.Enhanced = transport.EnhancedCode{5, 1, 7}, transport.EnhancedCode{5, 1, 7}
			}
		}
		return res
	}

	// The plan first: a group that cannot be attempted (an unreadable
	// secret) takes no throttle slot or token.
	plan, cs, err := e.plan(s, msg, g)
	if err != nil {
		return all(true, ClassPolicy, err.Error())
	}
	defer cs.release()

	// Throttles checked per group: a full one defers, it never rejects.
	now := e.opts.Clock()
	leases := map[string][]func(bool){} // by recipient; "" for the whole group
	refund := func(key string) {
		for _, rel := range leases[key] {
			rel(true)
		}
		delete(leases, key)
	}
	defer func() {
		for _, rels := range leases {
			for _, rel := range rels {
				rel(false)
			}
		}
	}()
	deferred := map[string]Result{}
	for _, t := range g.Throttles {
		if t.Phase != expr.Recipient.String() {
			continue
		}
		if _, done := deferred[t.Recipient]; done {
			continue
		}
		th := s.throttle(t.Name)
		rel, ok, class, wait := e.throttles.Acquire(t.Name+"\x00"+t.Key, th.Concurrency, th.Rate, now)
		if ok {
			leases[t.Recipient] = append(leases[t.Recipient], rel)
			continue
		}
		refund(t.Recipient)
		res := failed(t.Recipient, g.Route.Name, true, class,
			fmt.Sprintf("throttle %s (%s) is full: retry in %s", t.Name, t.Key, wait.Round(time.Millisecond)))
		res.RetryAfter = now.Add(wait)
		deferred[t.Recipient] = res
	}
	if whole, ok := deferred[""]; ok {
		for k := range leases {
			refund(k)
		}
		res := make([]Result, len(g.Recipients))
		for i, r := range g.Recipients {
			res[i] = whole
			res[i].Recipient = r
		}
		return res
	}
	// Recipients held back by their own throttles; the others go ahead.
	rcpts := g.Recipients
	if len(deferred) > 0 {
		rcpts = nil
		for _, r := range g.Recipients {
			if _, held := deferred[r]; !held {
				rcpts = append(rcpts, r)
			}
		}
		if len(rcpts) > 0 {
			for k := range leases {
				if k == "" {
					continue
				}
				if _, held := deferred[k]; held {
					refund(k)
				}
			}
		} else {
			for k := range leases {
				refund(k)
			}
		}
	}
	out = make([]Result, len(g.Recipients))
	if len(rcpts) == 0 {
		for i, r := range g.Recipients {
			out[i] = deferred[r]
		}
		return out
	}

	tm := &transport.Message{From: msg.From, Body: body, Size: body.Size(), RequireTLS: msg.RequireTLS, EnvID: msg.EnvID}
	switch strings.ToLower(msg.Ret) {
	case "full":
		tm.Return = transport.ReturnFull
	case "hdrs":
		tm.Return = transport.ReturnHeaders
	}
	for i, r := range g.Recipients {
		if _, held := deferred[r]; !held {
			// The canonical form goes on the wire (a trailing dot
			// dropped, the domain lower-cased).
			tm.Recipients = append(tm.Recipients, transport.Recipient{Address: g.wire[i], Notify: msg.Notify})
		}
	}
	tres := e.client.Deliver(ctx, plan, tm)
	j := 0
	for i, r := range g.Recipients {
		if d, held := deferred[r]; held {
			out[i] = d
			continue
		}
		out[i] = Result{Result: tres[j], Route: g.Route.Name}
		out[i].Recipient = r // as the embedder wrote it
		j++
		// A connection-level throttle was full: say when to come back.
		if c := out[i].Class; (c == transport.ClassRate || c == transport.ClassConcurrency) && out[i].RetryAfter.IsZero() {
			out[i].RetryAfter = now.Add(cs.wait())
		}
	}
	return out
}

// plan turns a group's decision into a transport plan. Connection-phase
// settings are evaluated again per connection (connSettings), because
// ehlo-hostname may depend on the source address the transport picks.
func (e *Engine) plan(s *state, msg *Message, g *Group) (*transport.Plan, *connSettings, error) {
	rt := g.route
	p := &transport.Plan{}
	sender, _ := mailbox.ParseReversePath(msg.From) // checked by the evaluation: the group would have failed
	_, rcpts := parseRecipients(msg.To)
	cs := &connSettings{e: e, s: s, msg: msg, sender: sender, senderText: canonical(msg.From, sender), rcpts: rcpts,
		g: g, hosts: map[string]*Host{}}
	p.Settings = cs
	for _, h := range g.Hosts {
		if h.Skipped != nil {
			continue
		}
		th := transport.Host{Name: h.Name, Preference: h.Preference, Port: 25, IsRelay: rt.Type == policies.RouteRelay,
			AllowInvalidCerts: h.TLS.AllowInvalidCerts, MinTLSVersion: h.TLS.MinVersion.Uint16()}
		switch h.TLS.STARTTLS {
		case policies.TLSRequire:
			th.StartTLS = transport.StartTLSRequire
		case policies.TLSDisable:
			th.StartTLS = transport.StartTLSDisable
		default:
			th.StartTLS = transport.StartTLSOptional
		}
		if h.TLS.DANERecords > 0 {
			// DANE is active for this host (RFC 7672 section 2.2) but
			// TLSA matching is not implemented yet: require TLS with PKIX
			// verification instead, which is never weaker than DANE
			// (it may refuse a DANE-only, self-signed certificate).
			th.StartTLS, th.AllowInvalidCerts = transport.StartTLSRequire, false
		}
		if th.IsRelay {
			th.Port, th.ImplicitTLS, th.AllowPlaintextAuth = rt.Port, rt.ImplicitTLS, rt.AllowPlaintextAuth
			if rt.Protocol == "lmtp" {
				th.Protocol = transport.LMTP
			}
			if rt.Auth != nil {
				secret, err := rt.Auth.Secret.Resolve()
				if err != nil {
					return nil, nil, fmt.Errorf("route %s: auth: %w", rt.Name, err)
				}
				th.Auth = &transport.Auth{Username: rt.Auth.Username, Secret: transport.Secret(secret)}
			}
		}
		th.Addresses, th.SourceIPs = h.Addresses, h.SourceIPs
		if p.MessagesPerConnection == 0 {
			p.MessagesPerConnection = h.MessagesPerConnection
			p.EHLOName = h.EHLOHostname
		}
		cs.hosts[h.Name] = h
		p.Hosts = append(p.Hosts, th)
	}
	return p, cs, nil
}

// connSettings evaluates connection-phase settings (and connection-level
// throttles) as the transport reaches each address.
type connSettings struct {
	e      *Engine
	s      *state
	msg    *Message
	sender mailbox.Address
	// senderText and rcpts are the canonical addresses (see run).
	senderText string
	rcpts      []string
	g          *Group
	hosts      map[string]*Host

	mu       sync.Mutex
	releases []func(bool)
	maxWait  time.Duration // longest wait of a full connection-level throttle
}

// wait returns how long a full connection-level throttle asked to wait.
func (c *connSettings) wait() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxWait <= 0 {
		return time.Second
	}
	return c.maxWait
}

// release gives back the concurrency slots of connection-level throttles.
func (c *connSettings) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.releases {
		r(false)
	}
	c.releases = nil
}

// PrepareHost implements transport.Settings: the engine resolved every host
// before delivery, so there is nothing left to do.
func (c *connSettings) PrepareHost(context.Context, *transport.Host) error { return nil }

// ConnectionSettings implements transport.Settings.
func (c *connSettings) ConnectionSettings(ctx context.Context, th *transport.Host, remote, local netip.Addr) (transport.ConnSettings, error) {
	h := c.hosts[th.Name]
	ev := c.s.pool.Get().(*evaluator)
	defer c.s.pool.Put(ev)
	ev.vm.SetContext(ctx)
	r := &run{e: c.e, s: c.s, ev: ev, ctx: ctx, budget: &dnsBudget{parent: ctx}, msg: c.msg,
		sender: c.sender, senderText: c.senderText, rcpts: c.rcpts}
	r.resetEnv()
	env := &ev.env
	env.Rcpt, env.RcptDomain = c.g.wire[0], c.g.Domain
	env.Route, env.RouteType = c.g.Route.Name, string(c.g.Route.Type)
	env.MX, env.MXPreference, env.MXSecure = h.Name, h.Preference, h.Secure
	env.RemoteIP = remote.String()
	if local.IsValid() {
		env.LocalIP = local.String()
	}
	set := c.s.set
	ehlo := eval(r, set.IPStrategy.EHLOHostname, nil)
	if ehlo == "" {
		ehlo = h.EHLOHostname
	}
	t := &set.Limits.Timeouts
	out := transport.ConnSettings{EHLOName: ehlo, Timeouts: transport.Timeouts{
		Connect: eval(r, t.Connect, nil), Greeting: eval(r, t.Greeting, nil), EHLO: eval(r, t.EHLO, nil),
		MailFrom: eval(r, t.MailFrom, nil), RcptTo: eval(r, t.RcptTo, nil), Data: eval(r, t.Data, nil),
		TLSHandshake: time.Duration(h.TLS.HandshakeTimeout)}}

	// Connection-level throttles (keys with mx, remote_ip or local_ip).
	now := c.e.opts.Clock()
	for _, t := range set.Limits.Throttles {
		if t.Phase != expr.Connection {
			continue
		}
		if !r.throttleMatches(t, expr.Connection, nil) {
			continue
		}
		rel, ok, class, wait := c.e.throttles.Acquire(t.Name+"\x00"+throttleKey(t.Key, env), t.Concurrency, t.Rate, now)
		if !ok {
			c.mu.Lock()
			c.maxWait = max(c.maxWait, wait)
			c.mu.Unlock()
			return out, &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 7, 0}, Class: class,
				Message: fmt.Sprintf("throttle %s is full: retry in %s", t.Name, wait.Round(time.Millisecond))}
		}
		if rel != nil {
			c.mu.Lock()
			c.releases = append(c.releases, rel)
			c.mu.Unlock()
		}
	}
	return out, nil
}
