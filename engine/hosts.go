package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
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

	addrs [2]addrResult // per family, in families order
	// port is the port TLSA records are asked for: 25, or a relay's.
	port int
	// implicit marks the implicit MX of a domain without MX records
	// (RFC 5321 section 5.1): for DANE, a non-MX destination, like a
	// relay (RFC 7672 section 2.2.2).
	implicit bool
	// tlsa are the TLSA answers: [0] at the host's own name (asked with
	// the addresses), [1] at its CNAME-expanded name (asked once the
	// addresses show a secure expansion). name is "" when not asked.
	tlsa [2]tlsaQuestion
}

// tlsaQuestion is one TLSA question and its answer.
type tlsaQuestion struct {
	name string
	res  dns.TLSAResult
	err  error
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
//
// TLSA records of an MX host from a secure MX answer are asked at its name
// along with its addresses. Those of a relay or an implicit MX, whose
// DANE depends on their address records only, are asked in a second
// round, once the addresses turn out secure; so is the CNAME-expanded
// name of a host whose addresses came through a secure expansion (RFC 7672
// section 2.2.2: it is the preferred TLSA base domain).
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
	askTLSA := func(p *hostPlan, k int, name string) {
		p.tlsa[k].name = "_" + strconv.Itoa(p.port) + "._tcp." + name
		if r.immediate(p.tlsa[k].name, "TLSA") {
			r.lookupTLSA(r.ctx, p, k)
		} else {
			goNetwork(func(ctx context.Context) { r.lookupTLSA(ctx, p, k) })
		}
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
		if r.daneMayApply(p) && !p.relay && !p.implicit {
			// A secure MX answer: the TLSA records are likely
			// needed, ask them with the addresses.
			askTLSA(p, 0, p.h.Name)
		}
	}
	lookups.wait()
	second := false
	for i := range plans {
		p := &plans[i]
		if !r.daneMayApply(p) {
			continue
		}
		canon, secure := p.addrSecurity()
		if !secure {
			continue
		}
		if p.tlsa[0].name == "" { // a relay or an implicit MX
			askTLSA(p, 0, p.h.Name)
			second = true
		}
		if canon != "" && canon != p.h.Name {
			askTLSA(p, 1, canon)
			second = true
		}
	}
	if second {
		lookups.wait()
	}
	for i := range plans {
		r.finishHost(g, &plans[i])
	}
}

// daneMayApply reports whether p's TLSA records are worth asking for:
// DANE is not disabled, the host has a name, and, for an MX host, the MX
// answer is secure (RFC 7672 section 2.2.1). The security of the address
// records is known only once they are in.
func (r *run) daneMayApply(p *hostPlan) bool {
	if p.dane == policies.TLSDisable || p.literal.IsValid() || r.ignoreTLSPolicy() {
		return false
	}
	return p.relay || p.implicit || p.h.Secure
}

// addrSecurity reports whether the host's address records are all
// DNSSEC-secure (every family that gave addresses, at least one), and the
// CNAME-expanded name they were found at ("" when none).
func (p *hostPlan) addrSecurity() (canonical string, secure bool) {
	for i := range p.families {
		a := &p.addrs[i]
		if a.err != nil || len(a.res.Addrs) == 0 {
			continue
		}
		if !a.res.Secure {
			return "", false
		}
		if canonical == "" {
			canonical = a.res.Canonical
		}
		secure = true
	}
	return canonical, secure
}

// hostSettings evaluates the host-phase settings of p's host.
func (r *run) hostSettings(g *Group, p *hostPlan) {
	set := r.s.set
	h := p.h
	r.setHostEnv(h)
	defer r.clearHostEnv()
	tr := p.tr

	hostname := eval(r, set.Hostname, tr)
	dane := eval(r, set.TLS.DANE, tr)
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
	p.port = 25
	if p.relay {
		p.port = g.route.Port
	}
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
	defer r.effectiveTLS(h)

	addrs := r.addresses(g, p)
	if h.Skipped != nil {
		return
	}
	if len(addrs) > p.multi {
		addrs = addrs[:p.multi]
	}
	r.dane(g, p)
	if h.Skipped == nil {
		r.mtaSTSHost(g, p)
	}
	if h.Skipped == nil {
		r.requireTLSHost(g, p)
	}
	if h.Skipped != nil {
		return
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
