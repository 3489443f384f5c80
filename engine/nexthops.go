package engine

import (
	"errors"
	"slices"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// relay decides a relay group: a single next hop.
func (r *run) relay(g *Group, rt *policies.Route, tr *policies.Trace) {
	r.siteThrottles(g, []string{rt.Address})
	h := &Host{Name: rt.Address}
	g.Hosts = append(g.Hosts, h)
	plans := r.ev.hostPlans(1)
	defer clear(plans)
	plans[0] = hostPlan{h: h, relay: true, literal: rt.AddressIP}
	r.resolveHosts(g, plans)
	r.settle(g)
}

// mx decides an mx group: the MTA-STS record and policy and the MX
// lookup (asked together), then every host.
//
// modeErr is the run-time error of tls.mta-sts, if any: mode is then its
// strictest value, and a missing policy defers instead of failing, so that
// a broken expression never bounces mail for good.
func (r *run) mx(g *Group, mode policies.TLSMode, modeErr error, stsTimeout time.Duration) {
	if g.literal.IsValid() {
		r.literal(g, mode, modeErr)
		return
	}
	var (
		async  *stsLookup // the MTA-STS lookup running in a goroutine
		stsMem stsLookup  // or done at once, all in memory
		inMem  bool
	)
	switch {
	case mode == policies.TLSDisable:
	case r.ignoreTLSPolicy():
		g.MTASTS.Error = "not applied: the message carries TLS-Required: No (RFC 8689 section 5)"
	default:
		inMem = r.mtaSTSFromMemory(g.Domain, &stsMem)
		if !inMem {
			async = r.startMTASTS(g.Domain, stsTimeout)
			defer async.lookups.drain()
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
	switch {
	case async != nil:
		async.lookups.wait()
		if !r.mtaSTS(g, async, mode, modeErr) {
			return
		}
	case inMem:
		if !r.mtaSTS(g, &stsMem, mode, modeErr) {
			return
		}
	}
	r.lookup(g, g.Domain, "MX", func() []string { return mxAnswer(res) }, res.Secure, res.Info, err)
	var hosts []dns.MX
	implicit := false
	switch {
	case errors.Is(err, dns.ErrNotFound):
		r.failGroup(g, OutcomeFail, "dns", "domain "+g.Domain+" does not exist (NXDOMAIN)")
		return
	case errors.Is(err, dns.ErrNoData):
		hosts = []dns.MX{{Host: g.Domain}} // RFC 5321 5.1: implicit MX
		implicit = true
	case err != nil:
		r.failGroup(g, OutcomeDefer, "dns", "MX lookup for "+g.Domain+" failed: "+err.Error())
		return
	case res.NullMX:
		r.failGroup(g, OutcomeFail, "dns", g.Domain+" does not accept mail (null MX, RFC 7505)")
		return
	default:
		hosts = r.orderMX(res.Records)
	}
	if r.s.set.Limits.NeedSite {
		names := make([]string, len(hosts))
		for i, m := range hosts {
			names[i] = m.Host
		}
		r.siteThrottles(g, names)
	}
	if len(hosts) > g.Limits.MX {
		hosts = hosts[:g.Limits.MX]
	}
	plans := r.ev.hostPlans(len(hosts))
	defer clear(plans)
	for i, m := range hosts {
		h := &Host{Name: m.Host, Preference: int(m.Preference), Secure: res.Secure && err == nil}
		g.Hosts = append(g.Hosts, h)
		plans[i].h, plans[i].implicit = h, implicit
	}
	r.resolveHosts(g, plans)
	r.settle(g)
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
	r.siteThrottles(g, []string{h.Name})
	g.Hosts = append(g.Hosts, h)
	plans := r.ev.hostPlans(1)
	defer clear(plans)
	plans[0] = hostPlan{h: h, literal: g.literal}
	r.resolveHosts(g, plans)
	r.settle(g)
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
