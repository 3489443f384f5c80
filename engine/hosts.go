package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/dns"
)

// skip marks h as passed over, with the last_error class of the reason.
func skip(h *Host, temporary bool, class transport.Class, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	h.Skipped, h.SkipTemporary, h.skipClass = &s, temporary, class
	h.Addresses, h.Connections = []netip.Addr{}, []*Connect{}
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

// hostPlans returns n zeroed plans from the evaluator's scratch space,
// valid until the next call. The caller clears them when done, so that
// the pool does not keep a decision alive.
func (ev *evaluator) hostPlans(n int) []hostPlan {
	if cap(ev.plans) < n {
		ev.plans = make([]hostPlan, n)
	}
	plans := ev.plans[:n]
	clear(plans)
	return plans
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
	var lookups *netLookups // made for the first lookup that goes to the network
	defer func() { lookups.drain() }()
	goNetwork := func(f func(ctx context.Context)) {
		if lookups == nil {
			lookups = &netLookups{}
		}
		ctx := r.budget.context()
		lookups.start(func() { f(ctx) })
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
	lookups.wait()
	for i := range plans {
		r.finishHost(g, &plans[i])
	}
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
		invalid = invalid || g.route.AllowInvalidCerts
	}
	h.EHLOHostname = hostname
	h.IPLookup = lookup
	h.TLS = HostTLS{STARTTLS: starttls, DANE: dane, AllowInvalidCerts: invalid, MinVersion: minV, HandshakeTimeout: Duration(hs)}
	h.MessagesPerConnection = mpc
	h.SourceIPs = sources
	h.Addresses, h.Connections = []netip.Addr{}, []*Connect{}
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
	h.Addresses = addrs
	for i, a := range addrs {
		h.Connections = append(h.Connections, r.connection(g, h, a, i, p.tr))
	}
}

// addresses records the host's address answers and returns the addresses
// that may be connected to, in order. For MX hosts (not relays), the
// addresses DNS should never point delivery at are dropped (see
// refusedTarget), and listed in h.Dropped.
func (r *run) addresses(g *Group, p *hostPlan) []netip.Addr {
	h := p.h
	var (
		tempErr, permErrs int
		lastErr           error
		families          []string
		out               []netip.Addr
	)
	keep := func(addrs []netip.Addr) {
		if out == nil {
			out = make([]netip.Addr, 0, len(p.addrs[0].res.Addrs)+len(p.addrs[1].res.Addrs)+1)
		}
		for _, a := range addrs {
			if !p.relay {
				if why := refusedTarget(a, p.refusePrivate); why != "" {
					h.Dropped = append(h.Dropped, a.String()+" ("+why+")")
					continue
				}
			}
			out = append(out, a.Unmap())
		}
	}
	if p.literal.IsValid() {
		keep([]netip.Addr{p.literal})
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
			keep(a.res.Addrs)
		}
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
