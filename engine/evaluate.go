package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// run is one evaluation of one message.
type run struct {
	e   *Engine
	s   *state
	ev  *evaluator
	cfg evalConfig
	ctx context.Context
	msg *Message
}

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
func (r *run) resetEnv() {
	env := r.env()
	env.Reset()
	m := r.msg
	env.Sender = m.From
	env.SenderDomain = domainOf(m.From)
	env.Recipients = append(env.Recipients, m.To...)
	env.Size, env.Priority, env.RetryNum, env.NotifyNum = m.Size, m.Priority, m.RetryNum, m.NotifyNum
	env.ExpiresIn, env.LastError, env.LastStatus = m.ExpiresIn, m.LastError, m.LastStatus
	env.QueueName, env.QueueAge, env.Source = m.QueueName, m.QueueAge, m.Source
	env.ReceivedFromIP, env.ReceivedViaPort, env.AuthenticatedAs = m.ReceivedFromIP, m.ReceivedViaPort, m.AuthenticatedAs
	env.Meta = m.Meta
	if env.LastError == "" {
		env.LastError = "none"
	}
}

// domainOf returns the lower-cased domain of an address ("" when none).
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	d := strings.TrimSuffix(addr[at+1:], ".")
	for i := 0; i < len(d); i++ {
		if c := d[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(d)
		}
	}
	return d
}

type groupKey struct{ domain, route string }

// decide evaluates the whole message.
func (r *run) decide() *Decision {
	set := r.s.set
	d := &Decision{Policy: set.File, Message: MessageInfo{Sender: r.msg.From, Recipients: r.msg.To, Size: r.msg.Size}}
	r.resetEnv()
	env := r.env()

	// Recipient phase: the route of every recipient, grouped by (domain,
	// route) in the order recipients first appear.
	index := map[groupKey]*Group{}
	for _, rcpt := range r.msg.To {
		dom := domainOf(rcpt)
		env.Rcpt, env.RcptDomain = rcpt, dom
		var tr *policies.Trace
		if r.cfg.trace {
			tr = &policies.Trace{}
		}
		name := ""
		var rerr error
		k := groupKey{dom, ""}
		if !validAddress(rcpt) {
			rerr = errInvalidAddress
			k.route = "\x00invalid " + rcpt // each its own group, with its own error
		} else if name, rerr = set.Route.Eval(r.vm(), env, tr); rerr != nil {
			k.route = "\x00error " + rcpt
		} else {
			k.route = name
		}
		g := index[k]
		if g == nil {
			g = &Group{Domain: dom, Hosts: []*Host{}, Throttles: []ThrottleInfo{}}
			switch {
			case errors.Is(rerr, errInvalidAddress):
				g.Outcome = OutcomeFail
				g.Error = &GroupError{Temporary: false, Class: ClassInvalidAddress, Message: fmt.Sprintf("invalid recipient address %q: it needs a local part, @ and a domain", rcpt)}
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
		if tr != nil {
			for i := range tr.Entries {
				tr.Entries[i].Context = "rcpt " + rcpt
			}
			g.Trace = append(g.Trace, tr.Entries...)
		}
	}

	// Split groups larger than limits.recipients, then decide each.
	var out []*Group
	for _, g := range d.Groups {
		if g.Outcome != "" {
			out = append(out, g)
			continue
		}
		out = append(out, r.group(g)...)
	}
	d.Groups = out
	return d
}

var errInvalidAddress = errors.New("invalid address")

// validAddress reports whether a is a usable forward-path: a non-empty
// local part, @, and a domain (or address literal), without spaces, angle
// brackets or control characters (RFC 5321 section 4.1.2).
func validAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	dom := a[at+1:]
	if strings.HasPrefix(dom, "[") {
		return strings.HasSuffix(dom, "]")
	}
	return !strings.HasPrefix(dom, ".") && !strings.Contains(dom, "..")
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
	env.Rcpt, env.RcptDomain = g.Recipients[0], g.Domain
	env.Route, env.RouteType = rt.Name, string(rt.Type)
	defer func() { env.Route, env.RouteType = "", "" }()
	tr := r.newTrace()
	ctx := func() string { return "group " + g.Domain + " via " + rt.Name }

	maxRcpt, _ := set.Limits.Recipients.Eval(r.vm(), env, tr)
	g.Limits.Recipients = maxRcpt
	if rt.Type == policies.RouteMX {
		g.Limits.MX, _ = set.Limits.MX.Eval(r.vm(), env, tr)
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
		mode, err := set.TLS.MTASTS.Eval(r.vm(), env, tr)
		g.MTASTS.Setting = string(mode)
		_, _ = set.TLS.MTASTSTimeout.Eval(r.vm(), env, tr)
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
		c.Recipients = g.Recipients[i:min(i+n, len(g.Recipients))]
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
	r.host(g, h, true, rt.AddressIP, tr)
	r.settle(g)
}

// mx decides an mx group: MTA-STS record, MX lookup, then every host.
//
// modeErr is the run-time error of tls.mta-sts, if any: mode is then its
// strictest value, and a missing policy defers instead of failing, so that
// a broken expression never bounces mail for good.
func (r *run) mx(g *Group, mode policies.TLSMode, modeErr error, tr *policies.Trace) {
	if mode != policies.TLSDisable {
		name := "_mta-sts." + g.Domain
		res, err := r.s.resolver.LookupTXT(r.ctx, name)
		r.lookup(g, name, "TXT", func() []string { return txtAnswer(res.Records) }, res.Secure, res.Info, err)
		// RFC 8461 section 3.1: exactly one record starting with
		// v=STSv1, or the domain has no usable MTA-STS policy.
		var recs []string
		for _, rec := range res.Records {
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
			case err == nil || errors.Is(err, dns.ErrNotFound) || errors.Is(err, dns.ErrNoData):
				r.failGroup(g, OutcomeFail, "mta-sts", "tls.mta-sts is require but "+g.Domain+" publishes no MTA-STS policy (not exactly one v=STSv1 TXT record at "+name+")")
			default:
				r.failGroup(g, OutcomeDefer, "mta-sts", "tls.mta-sts is require and the MTA-STS record could not be looked up: "+err.Error())
			}
			return
		}
	}
	res, err := r.s.resolver.LookupMX(r.ctx, g.Domain)
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
	for _, m := range hosts {
		h := &Host{Name: m.Host, Preference: int(m.Preference), Secure: res.Secure && err == nil}
		g.Hosts = append(g.Hosts, h)
		r.host(g, h, false, netip.Addr{}, tr)
	}
	r.settle(g)
}

// orderMX sorts by preference and shuffles equal preferences (RFC 5321
// 5.1), without changing the resolver's shared slice.
func (r *run) orderMX(recs []dns.MX) []dns.MX {
	out := make([]dns.MX, len(recs))
	copy(out, recs)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Preference < out[j].Preference })
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

// host evaluates the host-phase settings of h, resolves its addresses and
// evaluates every address's connection-phase settings.
func (r *run) host(g *Group, h *Host, relay bool, literal netip.Addr, tr *policies.Trace) {
	set := r.s.set
	env := r.env()
	env.MX, env.MXPreference, env.MXSecure = h.Name, h.Preference, h.Secure
	defer func() { env.MX, env.MXPreference, env.MXSecure = "", 0, false }()
	vm := r.vm()

	hostname, _ := set.Hostname.Eval(vm, env, tr)
	dane := policies.TLSDisable // DANE is for MX hosts (RFC 7672), not relays
	if !relay {
		dane, _ = set.TLS.DANE.Eval(vm, env, tr)
	}
	starttls, _ := set.TLS.STARTTLS.Eval(vm, env, tr)
	invalid, _ := set.TLS.AllowInvalidCerts.Eval(vm, env, tr)
	minV, _ := set.TLS.MinVersion.Eval(vm, env, tr)
	hs, _ := set.TLS.HandshakeTimeout.Eval(vm, env, tr)
	lookup, _ := set.IPStrategy.Lookup.Eval(vm, env, tr)
	sources, _ := set.IPStrategy.SourceIPs.Eval(vm, env, tr)
	multi, _ := set.Limits.Multihomed.Eval(vm, env, tr)
	mpc, _ := set.Limits.MessagesPerConnection.Eval(vm, env, tr)
	if relay {
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
	flush(g, tr, func() string { return "host " + h.Name })

	addrs := r.addresses(g, h, relay, literal, lookup)
	if h.Skipped != nil {
		return
	}
	if len(addrs) > multi {
		addrs = addrs[:multi]
	}
	// DANE (RFC 7672): only over a DNSSEC-secure MX answer.
	if !relay && dane != policies.TLSDisable {
		r.dane(g, h, dane)
		if h.Skipped != nil {
			return
		}
	}
	h.addrs = addrs
	for i, a := range addrs {
		h.Addresses = append(h.Addresses, a.String())
		h.Connections = append(h.Connections, r.connection(g, h, a, sources, i, tr))
	}
}

// addresses resolves h per the lookup strategy and drops addresses that
// must not be connected to.
func (r *run) addresses(g *Group, h *Host, relay bool, literal netip.Addr, lookup policies.Lookup) []netip.Addr {
	if literal.IsValid() {
		return []netip.Addr{literal}
	}
	var families []string
	switch lookup {
	case policies.IPv4Only:
		families = []string{"A"}
	case policies.IPv6Only:
		families = []string{"AAAA"}
	case policies.IPv6ThenIPv4:
		families = []string{"AAAA", "A"}
	default:
		families = []string{"A", "AAAA"}
	}
	var (
		out               []netip.Addr
		tempErr, permErrs int
		dropped           []string
		lastErr           error
	)
	for _, fam := range families {
		var res dns.AddrResult
		var err error
		if fam == "A" {
			res, err = r.s.resolver.LookupA(r.ctx, h.Name)
		} else {
			res, err = r.s.resolver.LookupAAAA(r.ctx, h.Name)
		}
		r.lookup(g, h.Name, fam, func() []string { return addrAnswer(res.Addrs) }, res.Secure, res.Info, err)
		if err != nil {
			lastErr = err
			if errors.Is(err, dns.ErrNotFound) || errors.Is(err, dns.ErrNoData) {
				permErrs++
			} else {
				tempErr++
			}
			continue
		}
		for _, a := range res.Addrs {
			a = a.Unmap()
			if !relay && (a.IsLoopback() || a.IsUnspecified() || a.IsMulticast()) {
				dropped = append(dropped, a.String())
				continue
			}
			out = append(out, a)
		}
	}
	if len(out) > 0 {
		return out // one family failing is tolerated when the other answers
	}
	switch {
	case len(dropped) > 0:
		skip(h, false, "dns", "resolves only to addresses that are never connected to (%s)", strings.Join(dropped, ", "))
	case tempErr > 0:
		skip(h, true, "dns", "address lookup failed: %v", lastErr)
	case permErrs > 0:
		skip(h, false, "dns", "no address of the allowed families (%s: %s)", h.IPLookup, strings.Join(families, ", "))
	default:
		skip(h, false, "dns", "no address")
	}
	return nil
}

// dane looks up the host's TLSA records (RFC 7672 section 2.2).
func (r *run) dane(g *Group, h *Host, mode policies.TLSMode) {
	if !h.Secure {
		if mode == policies.TLSRequire {
			skip(h, false, "dane", "tls.dane is require but the MX answer is not DNSSEC-secure")
		}
		return
	}
	name := "_25._tcp." + h.Name
	res, err := r.s.resolver.LookupTLSA(r.ctx, name)
	r.lookup(g, name, "TLSA", func() []string { return tlsaAnswer(res.Records) }, res.Secure, res.Info, err)
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
	vm := r.vm()
	ehlo, _ := set.IPStrategy.EHLOHostname.Eval(vm, env, tr)
	if ehlo == "" {
		ehlo = h.EHLOHostname
	}
	c.EHLOHostname = ehlo
	t := &set.Limits.Timeouts
	c.Timeouts = Timeouts{
		Connect:  durationOf(t.Connect.Eval(vm, env, tr)),
		Greeting: durationOf(t.Greeting.Eval(vm, env, tr)),
		EHLO:     durationOf(t.EHLO.Eval(vm, env, tr)),
		MailFrom: durationOf(t.MailFrom.Eval(vm, env, tr)),
		RcptTo:   durationOf(t.RcptTo.Eval(vm, env, tr)),
		Data:     durationOf(t.Data.Eval(vm, env, tr)),
	}
	label := func() string { return "address " + c.RemoteIP + " of " + h.Name }
	flush(g, tr, label)
	if i == 0 {
		r.throttles(g, expr.Connection, tr)
		flush(g, tr, label)
	}
	return c
}

func durationOf(d time.Duration, _ error) Duration { return Duration(d) }

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

// throttleKey joins the values of the key's variables.
func throttleKey(keys []string, env *expr.Env) string {
	if len(keys) == 0 {
		return "*"
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		switch k {
		case "sender":
			parts[i] = env.Sender
		case "sender_domain":
			parts[i] = env.SenderDomain
		case "rcpt":
			parts[i] = env.Rcpt
		case "rcpt_domain":
			parts[i] = env.RcptDomain
		case "route":
			parts[i] = env.Route
		case "mx":
			parts[i] = env.MX
		case "remote_ip":
			parts[i] = env.RemoteIP
		case "local_ip":
			parts[i] = env.LocalIP
		}
	}
	return strings.Join(parts, "|")
}

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
