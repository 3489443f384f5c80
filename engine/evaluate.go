package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
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

// dnsBudget is the context of an evaluation's network DNS lookups: the
// caller's, with the deadline dns.budget sets from the start of the
// evaluation. It is made on the first lookup that goes to the network
// (answers from memory need none).
type dnsBudget struct {
	parent   context.Context
	deadline time.Time // zero: no budget

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

// context returns the budget's context, making it on first use.
func (b *dnsBudget) context() context.Context {
	if b.deadline.IsZero() {
		return b.parent
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithDeadlineCause(b.parent, b.deadline, errDNSBudget)
	}
	return b.ctx
}

// spent reports whether the budget ran out.
func (b *dnsBudget) spent() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ctx != nil && b.ctx.Err() != nil && context.Cause(b.ctx) == errDNSBudget
}

// release frees the budget's timer.
func (b *dnsBudget) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
	}
}

// errDNSBudget is the cause of the DNS context of an evaluation whose DNS
// budget ran out.
var errDNSBudget = errors.New("the DNS budget of the evaluation (dns.budget) is used up")

// ClassInvalidAddress is the last_error class of a recipient whose address
// cannot be used (the transport uses the same word for addresses a server
// could not parse).
const ClassInvalidAddress = "unexpected-reply"

// ClassPolicy is the last_error class of a recipient deferred because of
// the policy itself: its route failed to evaluate (a run-time expression
// error), or a relay's secret could not be read.
const ClassPolicy = "policy"

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
				g.Route = r.routeInfo(set.Routes[name])
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

// parsedRcpt is a recipient parsed.
type parsedRcpt struct {
	addr mailbox.Address
	err  error
}

// parseRecipients parses every recipient; texts are their canonical forms
// (the text as given for those that do not parse).
func parseRecipients(to []string) (parsed []parsedRcpt, texts []string) {
	parsed, texts = make([]parsedRcpt, len(to)), make([]string, len(to))
	for i, rcpt := range to {
		p := &parsed[i]
		p.addr, p.err = mailbox.Parse(rcpt)
		texts[i] = canonical(rcpt, p.addr)
	}
	return parsed, texts
}

// canonical is the canonical text of the address a parsed from s: s
// itself when it is already canonical (no allocation), s when it did not
// parse (a is zero).
func canonical(s string, a mailbox.Address) string {
	if a.IsZero() {
		return s
	}
	if len(s) == len(a.Local)+1+len(a.Domain) && s[:len(a.Local)] == a.Local && s[len(a.Local)] == '@' && s[len(a.Local)+1:] == a.Domain {
		return s
	}
	return a.String()
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
		rt := r.s.set.Routes[g.Route.Name]
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
	r.e.opts.Logger.LogAttrs(r.ctx, slog.LevelWarn, "policy expression failed", slog.String("setting", setting),
		slog.Bool("budget", errors.Is(err, expr.ErrBudget)), slog.String("error", err.Error()))
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
	ri := RouteInfo{Name: rt.Name, Type: string(rt.Type)}
	if rt.Type == policies.RouteRelay {
		ri.Address, ri.Port, ri.Protocol, ri.ImplicitTLS = rt.Address, rt.Port, rt.Protocol, rt.ImplicitTLS
		if rt.Auth != nil {
			ri.Auth = &AuthInfo{Username: rt.Auth.Username, Secret: rt.Auth.Secret.Source()}
		}
	}
	return ri
}

// newTrace returns a trace to record into (nil without tracing).
func (r *run) newTrace() *policies.Trace {
	if !r.cfg.trace {
		return nil
	}
	return &policies.Trace{}
}

// flush appends tr's entries to g's trace with a context label. The label
// is built only when tracing.
func flush(g *Group, tr *policies.Trace, label func() string) {
	if tr == nil || len(tr.Entries) == 0 {
		return
	}
	context := label()
	for i := range tr.Entries {
		if tr.Entries[i].Context == "" {
			tr.Entries[i].Context = context
		}
	}
	g.Trace = append(g.Trace, tr.Entries...)
	tr.Entries = tr.Entries[:0]
}

// group decides one (domain, route) group, split at limits.recipients.
func (r *run) group(g *Group) []*Group {
	set := r.s.set
	env := r.env()
	rt := set.Routes[g.Route.Name]
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
		r.throttles(g, expr.Recipient, tr)
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

func (r *run) failGroup(g *Group, outcome string, class, msg string) {
	g.Outcome = outcome
	g.Error = &GroupError{Temporary: outcome == OutcomeDefer, Class: class, Message: msg}
}

// relay decides a relay group: a single next hop.
func (r *run) relay(g *Group, rt *policies.Route, tr *policies.Trace) {
	h := &Host{Name: rt.Address}
	g.Hosts = append(g.Hosts, h)
	r.resolveHosts(g, []hostPlan{{h: h, relay: true, literal: rt.AddressIP}})
	r.settle(g)
}

// mx decides an mx group: MTA-STS record and MX lookup (asked together),
// then every host.
//
// modeErr is the run-time error of tls.mta-sts, if any: mode is then its
// strictest value, and a missing policy defers instead of failing, so that
// a broken expression never bounces mail for good.
func (r *run) mx(g *Group, mode policies.TLSMode, modeErr error, tr *policies.Trace) {
	if g.literal.IsValid() {
		r.literal(g, mode, modeErr)
		return
	}
	stsName := "_mta-sts." + g.Domain
	var (
		txt    dns.TXTResult
		txtErr error
		async  *asyncTXT // the TXT lookup when it went to the network
	)
	if mode != policies.TLSDisable {
		if r.immediate(stsName, "TXT") {
			txt, txtErr = r.s.resolver.LookupTXT(r.ctx, stsName)
		} else {
			async = &asyncTXT{done: make(chan struct{})}
			ctx := r.budget.context()
			go func() {
				defer close(async.done)
				async.res, async.err = r.s.resolver.LookupTXT(ctx, stsName)
			}()
		}
	}
	var (
		res dns.MXResult
		err error
	)
	if r.immediate(g.Domain, "MX") {
		res, err = r.s.resolver.LookupMX(r.ctx, g.Domain)
	} else {
		res, err = r.s.resolver.LookupMX(r.budget.context(), g.Domain)
	}
	err = r.dnsError(err)
	if async != nil {
		<-async.done
		txt, txtErr = async.res, async.err
	}
	txtErr = r.dnsError(txtErr)
	if mode != policies.TLSDisable {
		r.lookup(g, stsName, "TXT", func() []string { return txtAnswer(txt.Records) }, txt.Secure, txt.Info, txtErr)
		// RFC 8461 section 3.1: exactly one record starting with
		// v=STSv1, or the domain has no usable MTA-STS policy.
		var recs []string
		for _, rec := range txt.Records {
			if strings.HasPrefix(rec, "v=STSv1;") || rec == "v=STSv1" {
				recs = append(recs, rec)
			}
		}
		if len(recs) == 1 {
			g.MTASTS.Record = recs[0]
		}
		if mode == policies.TLSRequire && g.MTASTS.Record == "" {
			switch {
			case modeErr != nil:
				r.failGroup(g, OutcomeDefer, ClassPolicy, "tls.mta-sts failed to evaluate, so MTA-STS is required, and "+g.Domain+" has no usable MTA-STS record: "+modeErr.Error())
			case txtErr == nil || errors.Is(txtErr, dns.ErrNotFound) || errors.Is(txtErr, dns.ErrNoData):
				r.failGroup(g, OutcomeFail, "mta-sts", "tls.mta-sts is require but "+g.Domain+" publishes no MTA-STS policy (not exactly one v=STSv1 TXT record at "+stsName+")")
			default:
				r.failGroup(g, OutcomeDefer, "mta-sts", "tls.mta-sts is require and the MTA-STS record could not be looked up: "+txtErr.Error())
			}
			return
		}
	}
	r.lookup(g, g.Domain, "MX", func() []string { return mxAnswer(res) }, res.Secure, res.Info, err)
	var hosts []dns.MX
	switch {
	case errors.Is(err, dns.ErrNotFound):
		r.failGroup(g, OutcomeFail, "dns", "domain "+g.Domain+" does not exist (NXDOMAIN)")
		return
	case errors.Is(err, dns.ErrNoData):
		hosts = []dns.MX{{Host: g.Domain}} // RFC 5321 5.1: implicit MX
	case err != nil:
		r.failGroup(g, OutcomeDefer, "dns", "MX lookup for "+g.Domain+" failed: "+err.Error())
		return
	case res.NullMX:
		r.failGroup(g, OutcomeFail, "dns", g.Domain+" does not accept mail (null MX, RFC 7505)")
		return
	default:
		hosts = r.orderMX(res.Records)
	}
	if len(hosts) > g.Limits.MX {
		hosts = hosts[:g.Limits.MX]
	}
	plans := make([]hostPlan, len(hosts))
	for i, m := range hosts {
		h := &Host{Name: m.Host, Preference: int(m.Preference), Secure: res.Secure && err == nil}
		g.Hosts = append(g.Hosts, h)
		plans[i].h = h
	}
	r.resolveHosts(g, plans)
	r.settle(g)
}

// asyncTXT is a TXT lookup running in a goroutine.
type asyncTXT struct {
	done chan struct{}
	res  dns.TXTResult
	err  error
}

// literal decides an mx group whose recipient domain is an address literal
// (RFC 5321 section 4.1.3): the address is the one host, with no MX and
// no MTA-STS or DANE (there is no name to hold a policy); the rules about
// which addresses may be connected to apply as to any MX host.
func (r *run) literal(g *Group, mode policies.TLSMode, modeErr error) {
	if mode == policies.TLSRequire {
		msg := "tls.mta-sts is require but " + g.Domain + " is an address literal, which has no MTA-STS policy"
		if modeErr != nil {
			r.failGroup(g, OutcomeDefer, ClassPolicy, msg+" (tls.mta-sts failed to evaluate: "+modeErr.Error()+")")
		} else {
			r.failGroup(g, OutcomeFail, "mta-sts", msg)
		}
		return
	}
	h := &Host{Name: g.literal.String()}
	g.Hosts = append(g.Hosts, h)
	r.resolveHosts(g, []hostPlan{{h: h, literal: g.literal}})
	r.settle(g)
}

// immediate reports whether the resolver answers the question from memory
// (a zone file, a fresh cache entry). Such a question is asked inline;
// the others go to the network, each in a goroutine, so that they are
// asked together, under the DNS budget. (Should a cache entry expire
// between the two calls, that one question goes to the network without
// the budget, bounded by the resolver's own timeouts.)
func (r *run) immediate(name, typ string) bool {
	imm, ok := r.s.resolver.(dns.Immediate)
	return ok && imm.Immediate(name, typ)
}

// dnsError says so when err comes from the evaluation's DNS budget running
// out (the error stays a temporary dns.Error for errors.Is).
func (r *run) dnsError(err error) error {
	if err == nil || !r.budget.spent() {
		return err
	}
	return fmt.Errorf("%w (%s: %s)", err, errDNSBudget, policies.FormatDuration(r.s.set.DNS.Budget))
}

// orderMX sorts by preference and shuffles equal preferences (RFC 5321
// 5.1), without changing the resolver's shared slice.
func (r *run) orderMX(recs []dns.MX) []dns.MX {
	out := make([]dns.MX, len(recs))
	copy(out, recs)
	slices.SortStableFunc(out, func(a, b dns.MX) int { return int(a.Preference) - int(b.Preference) })
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].Preference == out[i].Preference {
			j++
		}
		for k := j - 1; k > i; k-- { // Fisher-Yates over out[i:j]
			x := i + int(r.cfg.rand()%uint64(k-i+1))
			out[k], out[x] = out[x], out[k]
		}
		i = j
	}
	return out
}

// settle sets the outcome from the hosts: deliver when one can be tried,
// else fail (every host permanently skipped) or defer.
func (r *run) settle(g *Group) {
	if g.Outcome != "" {
		return
	}
	temporary, last, class := false, "no host to try", "dns"
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

// skip marks h as passed over, with the last_error class of the reason.
func skip(h *Host, temporary bool, class, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	h.Skipped, h.SkipTemporary, h.skipClass = &s, temporary, class
	h.Addresses, h.Connections = []string{}, []*Connect{}
}

// hostPlan is one host on its way from its host-phase settings to its
// connections: what to ask DNS, and the answers.
type hostPlan struct {
	h       *Host
	relay   bool
	literal netip.Addr // a relay's IP literal, or an address-literal domain: no lookup
	tr      *policies.Trace

	lookup        policies.Lookup
	families      []string // "A" and/or "AAAA", in the order tried
	multi         int
	dane          policies.TLSMode
	refusePrivate bool

	addrs    [2]addrResult // per family, in families order
	tlsaName string        // "" when no TLSA lookup is made
	tlsa     dns.TLSAResult
	tlsaErr  error
}

type addrResult struct {
	res dns.AddrResult
	err error
}

// The address record types asked for each ip-strategy.lookup (shared,
// read-only).
var (
	familiesA         = []string{"A"}
	familiesAAAA      = []string{"AAAA"}
	familiesAThenAAAA = []string{"A", "AAAA"}
	familiesAAAAThenA = []string{"AAAA", "A"}
)

// resolveHosts evaluates the host-phase settings of every host in order,
// asks DNS for all their addresses and TLSA records at once, then, host by
// host in order, filters the addresses, decides DANE and evaluates the
// connection-phase settings. The trace and the DNS answers come out in
// host order, as if the hosts had been resolved one after the other.
func (r *run) resolveHosts(g *Group, plans []hostPlan) {
	for i := range plans {
		p := &plans[i]
		p.tr = r.newTrace()
		r.hostSettings(g, p)
	}
	var wg *sync.WaitGroup // made for the first lookup that goes to the network
	goNetwork := func(f func(ctx context.Context)) {
		if wg == nil {
			wg = new(sync.WaitGroup)
		}
		ctx := r.budget.context()
		wg.Go(func() { f(ctx) })
	}
	for i := range plans {
		p := &plans[i]
		if p.literal.IsValid() {
			continue
		}
		for k, fam := range p.families {
			if r.immediate(p.h.Name, fam) {
				r.lookupAddr(r.ctx, p, k)
			} else {
				goNetwork(func(ctx context.Context) { r.lookupAddr(ctx, p, k) })
			}
		}
		// DANE (RFC 7672 section 2.2): TLSA only over a DNSSEC-secure MX
		// answer; asked along with the addresses.
		if !p.relay && p.dane != policies.TLSDisable && p.h.Secure {
			p.tlsaName = "_25._tcp." + p.h.Name
			if r.immediate(p.tlsaName, "TLSA") {
				r.lookupTLSA(r.ctx, p)
			} else {
				goNetwork(func(ctx context.Context) { r.lookupTLSA(ctx, p) })
			}
		}
	}
	if wg != nil {
		wg.Wait()
	}
	for i := range plans {
		r.finishHost(g, &plans[i])
	}
}

// lookupAddr asks for the addresses of p's host of its k-th family.
func (r *run) lookupAddr(ctx context.Context, p *hostPlan, k int) {
	var res dns.AddrResult
	var err error
	if p.families[k] == "A" {
		res, err = r.s.resolver.LookupA(ctx, p.h.Name)
	} else {
		res, err = r.s.resolver.LookupAAAA(ctx, p.h.Name)
	}
	p.addrs[k] = addrResult{res, r.dnsError(err)}
}

// lookupTLSA asks for the TLSA records of p's host.
func (r *run) lookupTLSA(ctx context.Context, p *hostPlan) {
	p.tlsa, p.tlsaErr = r.s.resolver.LookupTLSA(ctx, p.tlsaName)
	p.tlsaErr = r.dnsError(p.tlsaErr)
}

// hostSettings evaluates the host-phase settings of p's host.
func (r *run) hostSettings(g *Group, p *hostPlan) {
	set := r.s.set
	h := p.h
	r.setHostEnv(h)
	defer r.clearHostEnv()
	tr := p.tr

	hostname := eval(r, set.Hostname, tr)
	dane := policies.TLSDisable // DANE is for MX hosts (RFC 7672), not relays
	if !p.relay {
		dane = eval(r, set.TLS.DANE, tr)
	}
	starttls := eval(r, set.TLS.STARTTLS, tr)
	invalid := eval(r, set.TLS.AllowInvalidCerts, tr)
	minV := eval(r, set.TLS.MinVersion, tr)
	hs := eval(r, set.TLS.HandshakeTimeout, tr)
	lookup := eval(r, set.IPStrategy.Lookup, tr)
	sources := eval(r, set.IPStrategy.SourceIPs, tr)
	refusePrivate := false
	if !p.relay {
		refusePrivate = eval(r, set.IPStrategy.RefusePrivate, tr)
	}
	multi := eval(r, set.Limits.Multihomed, tr)
	mpc := eval(r, set.Limits.MessagesPerConnection, tr)
	if p.relay {
		rt := set.Routes[g.Route.Name]
		invalid = invalid || rt.AllowInvalidCerts
	}
	h.EHLOHostname = hostname
	h.IPLookup = string(lookup)
	h.TLS = HostTLS{STARTTLS: string(starttls), DANE: string(dane), AllowInvalidCerts: invalid,
		MinVersion: string(minV), HandshakeTimeout: Duration(hs)}
	h.MessagesPerConnection = mpc
	h.sources = sources
	h.Addresses, h.Connections = []string{}, []*Connect{}
	h.handshake = hs
	for _, a := range sources {
		h.SourceIPs = append(h.SourceIPs, a.String())
	}
	p.lookup, p.multi, p.dane, p.refusePrivate = lookup, multi, dane, refusePrivate
	switch lookup {
	case policies.IPv4Only:
		p.families = familiesA
	case policies.IPv6Only:
		p.families = familiesAAAA
	case policies.IPv6ThenIPv4:
		p.families = familiesAAAAThenA
	default:
		p.families = familiesAThenAAAA
	}
}

func (r *run) setHostEnv(h *Host) {
	env := r.env()
	env.MX, env.MXPreference, env.MXSecure = h.Name, h.Preference, h.Secure
}

func (r *run) clearHostEnv() {
	env := r.env()
	env.MX, env.MXPreference, env.MXSecure = "", 0, false
}

// finishHost records p's DNS answers, keeps the addresses that may be
// connected to, decides DANE and evaluates every address's
// connection-phase settings.
func (r *run) finishHost(g *Group, p *hostPlan) {
	h := p.h
	hostLabel := func() string { return "host " + h.Name }
	flush(g, p.tr, hostLabel)
	r.setHostEnv(h)
	defer r.clearHostEnv()

	addrs := r.addresses(g, p)
	if h.Skipped != nil {
		return
	}
	if len(addrs) > p.multi {
		addrs = addrs[:p.multi]
	}
	if p.tlsaName != "" || (!p.relay && p.dane == policies.TLSRequire) {
		r.dane(g, p)
		if h.Skipped != nil {
			return
		}
	}
	h.addrs = addrs
	for i, a := range addrs {
		h.Addresses = append(h.Addresses, a.String())
		h.Connections = append(h.Connections, r.connection(g, h, a, h.sources, i, p.tr))
	}
}

// addresses records the host's address answers and returns the addresses
// that may be connected to, in order. For MX hosts (not relays), the
// addresses DNS should never point delivery at are dropped (see
// refusedTarget), and listed in h.Dropped.
func (r *run) addresses(g *Group, p *hostPlan) []netip.Addr {
	h := p.h
	var cands []netip.Addr
	var (
		tempErr, permErrs int
		lastErr           error
		families          []string
	)
	if p.literal.IsValid() {
		cands = []netip.Addr{p.literal}
	} else {
		families = p.families
		for i, typ := range p.families {
			a := &p.addrs[i]
			r.lookup(g, h.Name, typ, func() []string { return addrAnswer(a.res.Addrs) }, a.res.Secure, a.res.Info, a.err)
			if a.err != nil {
				lastErr = a.err
				if errors.Is(a.err, dns.ErrNotFound) || errors.Is(a.err, dns.ErrNoData) {
					permErrs++
				} else {
					tempErr++
				}
				continue
			}
			cands = append(cands, a.res.Addrs...)
		}
	}
	var out []netip.Addr
	for _, a := range cands {
		if !p.relay {
			if why := refusedTarget(a, p.refusePrivate); why != "" {
				h.Dropped = append(h.Dropped, a.String()+" ("+why+")")
				continue
			}
		}
		out = append(out, a.Unmap())
	}
	if len(out) > 0 {
		return out // one family failing is tolerated when the other answers
	}
	switch {
	case len(h.Dropped) > 0:
		skip(h, false, "dns", "resolves only to addresses that are never connected to: %s", strings.Join(h.Dropped, ", "))
	case tempErr > 0:
		skip(h, true, "dns", "address lookup failed: %v", lastErr)
	case permErrs > 0:
		skip(h, false, "dns", "no address of the allowed families (%s: %s)", h.IPLookup, strings.Join(families, ", "))
	default:
		skip(h, false, "dns", "no address")
	}
	return nil
}

// dane decides DANE for the host from its TLSA answer (RFC 7672 section
// 2.2).
func (r *run) dane(g *Group, p *hostPlan) {
	h, mode := p.h, p.dane
	if p.tlsaName == "" {
		// No TLSA lookup: the MX answer is not secure, or there is no
		// name to look up.
		switch {
		case mode != policies.TLSRequire:
		case p.literal.IsValid():
			skip(h, false, "dane", "tls.dane is require but %s is an address literal: there is no name to hold TLSA records", g.Domain)
		default:
			skip(h, false, "dane", "tls.dane is require but the MX answer is not DNSSEC-secure")
		}
		return
	}
	res, err := p.tlsa, p.tlsaErr
	r.lookup(g, p.tlsaName, "TLSA", func() []string { return tlsaAnswer(res.Records) }, res.Secure, res.Info, err)
	switch {
	case errors.Is(err, dns.ErrNotFound) || errors.Is(err, dns.ErrNoData) || (err == nil && len(res.Records) == 0):
		if mode == policies.TLSRequire {
			skip(h, false, "dane", "tls.dane is require but %s has no TLSA records", h.Name)
		}
	case err != nil:
		// Bogus, SERVFAIL or timeout: never downgrade, even with optional.
		skip(h, true, "dane", "TLSA lookup failed, DANE state unknown (no downgrade): %v", err)
	case !res.Secure:
		if mode == policies.TLSRequire {
			skip(h, false, "dane", "tls.dane is require but the TLSA answer is not DNSSEC-secure")
		}
	default:
		for _, t := range res.Records {
			if t.Usage == 2 || t.Usage == 3 { // DANE-TA, DANE-EE
				h.TLS.DANERecords++
			}
		}
		if h.TLS.DANERecords == 0 && mode == policies.TLSRequire {
			skip(h, false, "dane", "tls.dane is require but %s has no usable (DANE-TA or DANE-EE) TLSA records", h.Name)
		}
	}
}

// connection evaluates the connection-phase settings for address a.
func (r *run) connection(g *Group, h *Host, a netip.Addr, sources []netip.Addr, i int, tr *policies.Trace) *Connect {
	set := r.s.set
	env := r.env()
	c := &Connect{RemoteIP: a.String()}
	var fam []netip.Addr
	for _, s := range sources {
		if s.Is4() == a.Is4() {
			fam = append(fam, s)
		}
	}
	if len(fam) > 0 {
		pick := fam[0]
		if len(fam) > 1 {
			pick = fam[int(r.cfg.rand()%uint64(len(fam)))]
		}
		ip := pick.String()
		c.SourceIP = &ip
	}
	env.RemoteIP = c.RemoteIP
	if c.SourceIP != nil {
		env.LocalIP = *c.SourceIP
	}
	defer func() { env.RemoteIP, env.LocalIP = "", "" }()
	ehlo := eval(r, set.IPStrategy.EHLOHostname, tr)
	if ehlo == "" {
		ehlo = h.EHLOHostname
	}
	c.EHLOHostname = ehlo
	t := &set.Limits.Timeouts
	c.Timeouts = Timeouts{
		Connect:  Duration(eval(r, t.Connect, tr)),
		Greeting: Duration(eval(r, t.Greeting, tr)),
		EHLO:     Duration(eval(r, t.EHLO, tr)),
		MailFrom: Duration(eval(r, t.MailFrom, tr)),
		RcptTo:   Duration(eval(r, t.RcptTo, tr)),
		Data:     Duration(eval(r, t.Data, tr)),
	}
	label := func() string { return "address " + c.RemoteIP + " of " + h.Name }
	flush(g, tr, label)
	if i == 0 {
		r.throttles(g, expr.Connection, tr)
		flush(g, tr, label)
	}
	return c
}

// throttles lists the throttles of phase p that apply to the group, with
// their current use. Connection-phase throttles are listed once, for the
// first address.
func (r *run) throttles(g *Group, p expr.Phase, tr *policies.Trace) {
	env := r.env()
	for _, t := range r.s.set.Limits.Throttles {
		if t.Phase != p {
			continue
		}
		// A key with rcpt is counted per recipient; others per group (the
		// first recipient stands for the group).
		rcpts := []string{""}
		if p == expr.Recipient && slices.Contains(t.Key, "rcpt") {
			rcpts = g.Recipients
		}
		saved := env.Rcpt
		for _, rcpt := range rcpts {
			if rcpt != "" {
				env.Rcpt = rcpt
			}
			if !r.throttleMatches(t, p, tr) {
				continue
			}
			info := ThrottleInfo{Name: t.Name, Key: throttleKey(t.Key, env), Concurrency: t.Concurrency, Phase: p.String(), Recipient: rcpt}
			if t.Rate.Count > 0 {
				info.Rate = t.Rate.String()
			}
			if r.cfg.trace { // what a dry-run shows; delivery acquires instead
				inUse, wait := r.e.throttles.Peek(t.Name+"\x00"+info.Key, t.Concurrency, t.Rate, r.e.opts.Clock())
				info.InUse, info.WouldWait = inUse, Duration(wait)
			}
			g.Throttles = append(g.Throttles, info)
		}
		env.Rcpt = saved
	}
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
			Rule: 1, At: matchAt(t), If: t.Match.Source(), Matched: ok && err == nil}
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
	if len(keys) == 0 {
		return "*"
	}
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('|')
		}
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
		b.WriteString(v)
	}
	return b.String()
}

var keyEscaper = strings.NewReplacer("\\", "\\\\", "|", "\\|")

// lookup records a DNS question in the group when tracing.
func (r *run) lookup(g *Group, name, typ string, answer func() []string, secure bool, info dns.Info, err error) {
	if !r.cfg.trace {
		return
	}
	l := Lookup{Name: name, Type: typ, Answer: answer(), Secure: secure, Cached: info.Cached, Stale: info.Stale}
	if l.Answer == nil {
		l.Answer = []string{}
	}
	if info.TTL > 0 {
		l.TTL = info.TTL.Round(time.Second).String()
	}
	if err != nil {
		l.Error = err.Error()
	}
	g.Lookups = append(g.Lookups, l)
}

func txtAnswer(recs []string) []string { return append([]string(nil), recs...) }

func mxAnswer(res dns.MXResult) []string {
	if res.NullMX {
		return []string{"0 ."}
	}
	out := make([]string, len(res.Records))
	for i, m := range res.Records {
		out[i] = strconv.Itoa(int(m.Preference)) + " " + m.Host
	}
	return out
}

func addrAnswer(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

func tlsaAnswer(recs []dns.TLSA) []string {
	out := make([]string, len(recs))
	for i, t := range recs {
		out[i] = fmt.Sprintf("%d %d %d %x", t.Usage, t.Selector, t.MatchingType, t.Data)
	}
	return out
}

// matchAt is the position of a throttle's match expression.
func matchAt(t *policies.Throttle) string {
	p := t.Match.Position()
	return policies.Pos{File: p.File, Line: p.Line, Column: p.Column}.String()
}
