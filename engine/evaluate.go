package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/mailbox"
)

// run is one evaluation of one message (or, forked, of one of its
// groups).
type run struct {
	e   *Engine
	s   *state
	ev  *evaluator
	cfg evalConfig
	ctx context.Context
	// budget bounds the DNS lookups of the evaluation; forks share it.
	budget *dnsBudget
	msg    *Message
	// sender is the parsed reverse-path (zero for <> and when invalid);
	// senderText its canonical form, rcpts the recipients' (the text as
	// given for those that do not parse). Forks share them.
	sender     mailbox.Address
	senderText string
	rcpts      []string
}

// ClassInvalidAddress is the last_error class of a recipient whose address
// cannot be used (the transport uses the same word for addresses a server
// could not parse).
const ClassInvalidAddress = transport.ClassUnexpectedReply

// ClassPolicy is the last_error class of a recipient deferred because of
// the policy itself: its route failed to evaluate (a run-time expression
// error), or a relay's secret could not be read.
const ClassPolicy transport.Class = "policy"

// Classes are every last_error word, as the policy variable and
// `postern dry-run --var last_error=` take them: the transport's classes
// and ClassPolicy.
var Classes = []transport.Class{transport.ClassNone, transport.ClassDNS, transport.ClassConnection, transport.ClassTLS,
	transport.ClassDANE, transport.ClassMTASTS, transport.ClassUnexpectedReply, transport.ClassRate, transport.ClassConcurrency,
	transport.ClassIO, ClassPolicy}

func (r *run) vm() *expr.VM   { return &r.ev.vm }
func (r *run) env() *expr.Env { return &r.ev.env }

// resetEnv fills the recipient-phase variables common to every recipient.
// Addresses are in their canonical form (domain lower-cased, no trailing
// dot) when they parse.
func (r *run) resetEnv() {
	env := r.env()
	env.Reset()
	m := r.msg
	env.Sender, env.SenderDomain = r.senderText, r.sender.Domain
	env.Recipients = append(env.Recipients, r.rcpts...)
	env.Size, env.Priority, env.RetryNum, env.NotifyNum = m.Size, m.Priority, m.RetryNum, m.NotifyNum
	env.ExpiresIn, env.LastError, env.LastStatus = m.ExpiresIn, m.LastError, m.LastStatus
	env.QueueName, env.QueueAge, env.Source = m.QueueName, m.QueueAge, m.Source
	env.ReceivedFromIP, env.ReceivedViaPort, env.AuthenticatedAs = m.ReceivedFromIP, m.ReceivedViaPort, m.AuthenticatedAs
	env.Meta = m.Meta
	if env.LastError == "" {
		env.LastError = "none"
	}
}

type groupKey struct{ domain, route string }

// decide evaluates the whole message.
func (r *run) decide() *Decision {
	set := r.s.set
	d := &Decision{Policy: set.File, Message: MessageInfo{Sender: r.msg.From, Recipients: r.msg.To, Size: r.msg.Size}}
	sender, serr := mailbox.ParseReversePath(r.msg.From)
	r.sender, r.senderText = sender, canonical(r.msg.From, sender)
	if serr != nil {
		// Nothing can be sent with a reverse-path that does not parse:
		// every recipient fails, with the reason.
		g := &Group{Recipients: r.msg.To, Hosts: []*Host{}, Throttles: []ThrottleInfo{}, Outcome: OutcomeFail,
			Error: &GroupError{Class: ClassInvalidAddress, Message: "sender: " + serr.Error()}}
		g.wire, g.badSender = r.msg.To, true
		d.Groups = []*Group{g}
		return d
	}
	var parsed []parsedRcpt
	parsed, r.rcpts = parseRecipients(r.msg.To)
	r.resetEnv()
	env := r.env()

	// Recipient phase: the route of every recipient, grouped by (domain,
	// route) in the order recipients first appear.
	index := map[groupKey]*Group{}
	for i, rcpt := range r.msg.To {
		addr, aerr := parsed[i].addr, parsed[i].err
		env.Rcpt, env.RcptDomain = r.rcpts[i], addr.Domain
		var tr *policies.Trace
		if r.cfg.trace {
			tr = &policies.Trace{}
		}
		name := ""
		var rerr error
		k := groupKey{addr.Domain, ""}
		if aerr != nil {
			k.route = "\x00invalid " + rcpt // each its own group, with its own error
		} else if name, rerr = r.evalRoute(tr); rerr != nil {
			k.route = "\x00error " + rcpt
		} else {
			k.route = name
		}
		g := index[k]
		if g == nil {
			g = &Group{Domain: addr.Domain, Hosts: []*Host{}, Throttles: []ThrottleInfo{}, literal: addr.Literal}
			switch {
			case aerr != nil:
				g.Outcome = OutcomeFail
				g.Error = &GroupError{Temporary: false, Class: ClassInvalidAddress, Message: "recipient: " + aerr.Error()}
			case rerr != nil:
				g.Outcome = OutcomeDefer
				g.Error = &GroupError{Temporary: true, Class: ClassPolicy, Message: "routing.route failed to evaluate: " + rerr.Error()}
			default:
				g.route = set.Routes[name]
				g.Route = r.routeInfo(g.route)
			}
			index[k] = g
			d.Groups = append(d.Groups, g)
		}
		g.Recipients = append(g.Recipients, rcpt)
		g.wire = append(g.wire, r.rcpts[i])
		if tr != nil {
			for i := range tr.Entries {
				tr.Entries[i].Context = "rcpt " + rcpt
			}
			g.Trace = append(g.Trace, tr.Entries...)
		}
	}

	// Decide each group (their DNS lookups run in parallel), then split
	// the groups larger than limits.recipients.
	decided := r.groups(d.Groups)
	var out []*Group
	for i, g := range d.Groups {
		if decided[i] == nil {
			out = append(out, g)
			continue
		}
		out = append(out, decided[i]...)
	}
	d.Groups = out
	return d
}

// evalRoute evaluates routing.route for the recipient in the environment.
func (r *run) evalRoute(tr *policies.Trace) (string, error) {
	name, err := r.s.set.Route.Eval(r.vm(), r.env(), tr)
	if err != nil {
		r.exprFailed(r.s.set.Route.Setting(), err)
	}
	return name, err
}

// groups decides every group that routing left undecided, at most
// parallel() at a time, each with an evaluator of its own. The result at
// i is nil for a group already decided (a routing failure).
//
// Each group gets a random source of its own, seeded in group order from
// the evaluation's: a dry-run with --seed gives the same answer every
// time, whatever order the groups finish in.
func (r *run) groups(gs []*Group) [][]*Group {
	out := make([][]*Group, len(gs))
	var todo []int
	for i, g := range gs {
		if g.Outcome == "" {
			todo = append(todo, i)
		}
	}
	seeds := make([]uint64, len(todo))
	for i := range seeds {
		seeds[i] = r.cfg.rand()
	}
	decide := func(k int, g *Group) []*Group {
		f := r.fork(seeds[k])
		defer f.release()
		return f.safeGroup(g)
	}
	if len(todo) == 1 || r.cfg.noDNS || !r.anyNetwork(gs, todo) {
		// One after the other, with r's own evaluator: no fork needed.
		for k, i := range todo {
			r.ev.pcg.Seed(seeds[k], seeds[k]^0x9e3779b97f4a7c15)
			r.cfg.rand = r.ev.rand
			out[i] = r.safeGroup(gs[i])
		}
		return out
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.e.parallel())
	for k, i := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = decide(k, gs[i])
		}()
	}
	wg.Wait()
	return out
}

// anyNetwork reports whether one of the groups at todo will likely ask the
// network: its MX (or its relay's address) is not answered from memory.
// When none will, deciding them one after the other costs less than
// goroutines.
func (r *run) anyNetwork(gs []*Group, todo []int) bool {
	for _, i := range todo {
		g := gs[i]
		rt := g.route
		switch {
		case rt.Type == policies.RouteLocal, g.literal.IsValid(), rt.Type == policies.RouteRelay && rt.AddressIP.IsValid():
		case rt.Type == policies.RouteRelay:
			if !r.immediate(rt.Address, "A") {
				return true
			}
		default:
			if !r.immediate(g.Domain, "MX") {
				return true
			}
		}
	}
	return false
}

// fork returns a run for one group: the same message and DNS budget, an
// evaluator of its own from the pool, and a random source seeded by seed.
func (r *run) fork(seed uint64) *run {
	f := *r
	f.ev = r.s.pool.Get().(*evaluator)
	f.ev.vm.SetContext(r.ctx)
	f.ev.pcg.Seed(seed, seed^0x9e3779b97f4a7c15) // as groups seeds r's own
	f.cfg.rand = f.ev.rand
	f.resetEnv()
	return &f
}

func (r *run) release() { r.s.pool.Put(r.ev) }

// safeGroup is group, with a panic turned into a deferred group: an
// evaluation never takes the process down, and no recipient is lost.
func (r *run) safeGroup(g *Group) (out []*Group) {
	defer func() {
		if p := recover(); p != nil {
			r.e.opts.Logger.Error("evaluation panicked", "domain", g.Domain, "panic", fmt.Sprint(p))
			g.Outcome = OutcomeDefer
			g.Error = &GroupError{Temporary: true, Class: ClassPolicy, Message: fmt.Sprintf("engine: internal error while deciding this group: %v", p)}
			out = []*Group{g}
		}
	}()
	return r.group(g)
}

// exprFailed logs the run-time failure of a setting's expression (an
// evaluation budget used up, an index out of range...). The setting has
// taken its fallback value; the trace of a dry-run shows the error too.
func (r *run) exprFailed(setting string, err error) {
	at := ""
	var pe *expr.Error
	if errors.As(err, &pe) {
		at = policies.Pos{File: pe.File, Line: pe.Line, Column: pe.Column}.String()
	}
	r.e.opts.Logger.LogAttrs(r.ctx, slog.LevelWarn, "policy expression failed", slog.String("setting", setting),
		slog.String("at", at), slog.Bool("budget", errors.Is(err, expr.ErrBudget)), slog.String("error", err.Error()))
}

// eval evaluates v in r's environment, logging a run-time failure (the
// value is then v's fallback).
func eval[T any](r *run, v *policies.Value[T], tr *policies.Trace) T {
	val, err := v.Eval(r.vm(), r.env(), tr)
	if err != nil {
		r.exprFailed(v.Setting(), err)
	}
	return val
}

// evalErr is eval that also returns the error, for settings whose failure
// changes the decision.
func evalErr[T any](r *run, v *policies.Value[T], tr *policies.Trace) (T, error) {
	val, err := v.Eval(r.vm(), r.env(), tr)
	if err != nil {
		r.exprFailed(v.Setting(), err)
	}
	return val, err
}

func (r *run) routeInfo(rt *policies.Route) RouteInfo {
	ri := RouteInfo{Name: rt.Name, Type: rt.Type}
	if rt.Type == policies.RouteRelay {
		ri.Address, ri.Port, ri.Protocol, ri.ImplicitTLS = rt.Address, rt.Port, rt.Protocol, rt.ImplicitTLS
		if rt.Auth != nil {
			ri.Auth = &AuthInfo{Username: rt.Auth.Username, Secret: rt.Auth.Secret.Source()}
		}
	}
	return ri
}

// group decides one (domain, route) group, split at limits.recipients.
func (r *run) group(g *Group) []*Group {
	set := r.s.set
	env := r.env()
	rt := g.route
	env.Rcpt, env.RcptDomain = g.wire[0], g.Domain
	env.Route, env.RouteType = rt.Name, string(rt.Type)
	defer func() { env.Route, env.RouteType = "", "" }()
	tr := r.newTrace()
	ctx := func() string { return "group " + g.Domain + " via " + rt.Name }

	maxRcpt := eval(r, set.Limits.Recipients, tr)
	g.Limits.Recipients = maxRcpt
	if rt.Type == policies.RouteMX {
		g.Limits.MX = eval(r, set.Limits.MX, tr)
	}
	flush(g, tr, ctx)

	// Throttles checked per group (recipient phase). Local deliveries are
	// the embedder's and are never throttled here.
	if rt.Type != policies.RouteLocal {
		r.throttles(g, tr)
		flush(g, tr, ctx)
	}

	switch rt.Type {
	case policies.RouteLocal:
		g.Outcome = OutcomeLocal
	case policies.RouteRelay:
		g.MTASTS.Setting = string(policies.TLSDisable)
		if !r.cfg.noDNS {
			r.relay(g, rt, tr)
		} else {
			g.Outcome = OutcomeDeliver
		}
	default:
		mode, err := evalErr(r, set.TLS.MTASTS, tr)
		g.MTASTS.Setting = string(mode)
		eval(r, set.TLS.MTASTSTimeout, tr)
		flush(g, tr, ctx)
		if !r.cfg.noDNS {
			r.mx(g, mode, err, tr)
		} else {
			g.Outcome = OutcomeDeliver
		}
	}
	if g.Outcome == "" {
		g.Outcome = OutcomeDeliver
	}
	return split(g, maxRcpt)
}

// split cuts g into groups of at most n recipients that share its decision.
func split(g *Group, n int) []*Group {
	if n <= 0 || len(g.Recipients) <= n {
		return []*Group{g}
	}
	var out []*Group
	for i := 0; i < len(g.Recipients); i += n {
		c := *g
		end := min(i+n, len(g.Recipients))
		c.Recipients, c.wire = g.Recipients[i:end], g.wire[i:end]
		if g.Trace != nil {
			// Keep the routing trace of this chunk's recipients only.
			mine := map[string]bool{}
			for _, r := range c.Recipients {
				mine["rcpt "+r] = true
			}
			c.Trace = nil
			for _, e := range g.Trace {
				if !strings.HasPrefix(e.Context, "rcpt ") || mine[e.Context] {
					c.Trace = append(c.Trace, e)
				}
			}
		}
		out = append(out, &c)
	}
	return out
}

func (r *run) failGroup(g *Group, outcome Outcome, class transport.Class, msg string) {
	g.Outcome = outcome
	g.Error = &GroupError{Temporary: outcome == OutcomeDefer, Class: class, Message: msg}
}

// settle sets the outcome from the hosts: deliver when one can be tried,
// else fail (every host permanently skipped) or defer.
func (r *run) settle(g *Group) {
	if g.Outcome != "" {
		return
	}
	temporary, last, class := false, "no host to try", transport.ClassDNS
	for _, h := range g.Hosts {
		if h.Skipped == nil {
			g.Outcome = OutcomeDeliver
			return
		}
		temporary = temporary || h.SkipTemporary
		last, class = h.Name+": "+*h.Skipped, h.skipClass
	}
	outcome := OutcomeFail
	if temporary {
		outcome = OutcomeDefer
	}
	r.failGroup(g, outcome, class, "no host can be tried: "+last)
}
