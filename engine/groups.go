package engine

import (
	"fmt"
	"strings"
	"sync"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
)

// groups decides every group that routing left undecided, at most
// parallel() at a time, each with an evaluator of its own. The result at
// i is the chunks group i was split into, or nil when it was not split (or
// was already decided: a routing failure).
//
// Each group gets a random source of its own, seeded in group order from
// the evaluation's: a dry-run with --seed gives the same answer every
// time, whatever order the groups finish in.
func (r *run) groups(gs []*Group) [][]*Group {
	out := make([][]*Group, len(gs))
	todo := make([]int, 0, len(gs))
	for i, g := range gs {
		if g.Outcome == "" {
			todo = append(todo, i)
		}
	}
	seeds := make([]uint64, len(todo))
	for i := range seeds {
		if r.cfg.domainSeeding {
			seeds[i] = domainSeed(r.cfg.domainSeed, gs[todo[i]].Domain)
		} else {
			seeds[i] = r.cfg.rand()
		}
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

// domainSeed mixes n with domain (FNV-1a, then SplitMix64's finaliser) into
// the seed of the domain's group (WithDomainSeed).
func domainSeed(n uint64, domain string) uint64 {
	h := uint64(14695981039346656037) ^ n
	for i := 0; i < len(domain); i++ {
		h ^= uint64(domain[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
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
			out = nil
		}
	}()
	return r.group(g)
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
	// The retry schedule, for what the engine delivers: a message past
	// queue.expire is not attempted.
	if rt.Type != policies.RouteLocal && !r.schedule(g, tr) {
		flush(g, tr, ctx)
		return split(g, maxRcpt)
	}
	flush(g, tr, ctx)

	// Throttles checked per group (recipient phase). Local deliveries are
	// the embedder's and are never throttled here.
	if rt.Type != policies.RouteLocal {
		r.throttles(g, tr, false)
		flush(g, tr, ctx)
	}
	defer func() { env.Site = "" }()

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
		timeout := eval(r, set.TLS.MTASTSTimeout, tr)
		flush(g, tr, ctx)
		if !r.cfg.noDNS {
			r.mx(g, mode, err, timeout)
		} else {
			g.Outcome = OutcomeDeliver
		}
	}
	if g.Outcome == "" {
		g.Outcome = OutcomeDeliver
	}
	return split(g, maxRcpt)
}

// split cuts g into groups of at most n recipients that share its decision;
// nil when g is not larger than n.
func split(g *Group, n int) []*Group {
	if n <= 0 || len(g.Recipients) <= n {
		return nil
	}
	out := make([]*Group, 0, (len(g.Recipients)+n-1)/n)
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
