package policies

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/postern-mta/postern/expr"
)

// The open-relay guard. A relay that lets anyone relay without AUTH is
// abused within hours, so a policy that would make one does not load —
// in `postern check`, and when the daemon starts or reloads — and there is
// no setting to turn the guard off. It applies when some listener is
// reachable from other machines: its address is not a loopback address
// (0.0.0.0 and :: are not), or it takes PROXY protocol headers (a proxy
// on this machine may forward anyone). Then:
//
//   - no prefix of relay.networks may be too broad: /0, shorter than /8
//     for IPv4, shorter than /16 for IPv6 (unless inside the
//     unique-local fc00::/7 or link-local fe80::/10), or an IPv6 prefix
//     holding ::ffff:0:0/96 (every IPv4 address written as IPv6);
//   - every permit rule whose value can be true must be shown, from the
//     conditions as written, to allow only clients that are
//     authenticated, come from a client prefix, or are connected to a
//     loopback-only listener: see permitRestricted;
//   - the client prefixes of relay.networks and of those rules must not
//     together cover every IPv4 or every IPv6 address;
//   - the trusted peers of a listener's proxy-protocol must not be too
//     broad either (unless the listener is on loopback): whoever may send
//     a PROXY header chooses the address the relay sees.
//
// When in doubt the guard refuses: an expression it cannot see through
// counts as allowing anyone. The error says what to narrow.

// checkRelay checks the relay block as a whole, once every setting is
// read.
func (d *decoder) checkRelay(s *Set) {
	d.errs = append(d.errs, s.relay.check(s.relay.Listeners)...)
}

// CheckListeners runs the checks of the relay block that depend on the
// listeners — submission and submissions need relay.auth and tls, and the
// open-relay guard — against ls in place of the policy's listeners: for
// a daemon told to listen elsewhere than the policy says (postern relay
// --listen). Give ls as copies of the policy's listeners with the
// addresses changed, so that errors keep their positions. It returns nil
// or an [ErrorList].
func (r *Relay) CheckListeners(ls []Listener) error {
	errs := r.check(ls)
	if len(errs) == 0 {
		return nil
	}
	sortByPos(errs)
	return ErrorList(errs)
}

// check returns the problems of the relay block with listeners ls.
func (r *Relay) check(ls []Listener) []*Error {
	var errs []*Error
	for i := range ls {
		l := &ls[i]
		path := listenerPath(l, i)
		if l.Mode != ModeSubmission && l.Mode != ModeSubmissions {
			continue
		}
		if !r.Auth.Enabled() {
			errs = append(errs, r.Errorf(path+".mode", "listener %q has mode %s, where every client must authenticate, but AUTH is off: set relay.auth.users-file (or make the listener mode smtp)", l.Name, l.Mode))
		}
		if l.TLS == nil {
			why := "STARTTLS is required before AUTH"
			if l.Mode == ModeSubmissions {
				why = "it speaks TLS from the first byte"
			}
			errs = append(errs, r.Errorf(path+".mode", "listener %q has mode %s but no tls: %s; add tls: {cert: PATH, key: PATH} to the listener", l.Name, l.Mode, why))
		}
	}
	return append(errs, r.guard(ls)...)
}

// listenerPath is the path of listener l, the i-th of its list.
func listenerPath(l *Listener, i int) string {
	if l.path != "" {
		return l.path
	}
	return fmt.Sprintf("relay.listeners[%d]", i)
}

// guard is the open-relay guard (see above) for listeners ls.
func (r *Relay) guard(ls []Listener) []*Error {
	var open *Listener
	for i := range ls {
		if !ls[i].LoopbackOnly() {
			open = &ls[i]
			break
		}
	}
	if open == nil {
		return nil
	}
	where := fmt.Sprintf("listener %q listens on %s", open.Name, open.Address)
	if open.Address.Addr().Unmap().IsLoopback() {
		where += " behind PROXY protocol"
	}
	const consequence = "anyone could relay through this server"
	var errs []*Error
	for i := range ls {
		l := &ls[i]
		if l.ProxyProtocol == nil || l.Address.Addr().Unmap().IsLoopback() {
			continue // only local processes can send it a PROXY header
		}
		for j, p := range l.ProxyProtocol.Trusted {
			if why := tooBroad(p); why != "" {
				path := fmt.Sprintf("%s.proxy-protocol.trusted[%d]", listenerPath(l, i), j)
				errs = append(errs, r.Errorf(path, "%s %s, while listener %q listens on %s: any client could send a PROXY header and claim an address of relay.networks; list only your load balancers' addresses",
					p, why, l.Name, l.Address))
			}
		}
	}
	var clients []prefixEntry // the client prefixes that may relay without AUTH
	for _, e := range r.networkEntries() {
		if why := tooBroad(e.prefix); why != "" {
			errs = append(errs, r.Errorf(e.path, "%s %s, while %s: %s; list your clients' networks, or require AUTH (relay.auth)", e.text, why, where, consequence))
			continue
		}
		clients = append(clients, e)
	}
	loopback := map[string]bool{} // listener name -> reachable only from this machine
	for i := range ls {
		loopback[ls[i].Name] = ls[i].LoopbackOnly()
	}
	v := r.Permit.v
	n := len(v.rules)
	for i := 0; i <= n; i++ {
		var cond *expr.Program // nil: the else
		var then *branch[bool]
		var at Pos
		switch {
		case i < n:
			cond, then, at = v.rules[i].cond, &v.rules[i].then, v.rules[i].at
		case v.els != nil:
			then, at = v.els, v.els.at
		default:
			continue
		}
		if then.prog == nil && !then.lit {
			continue // false never allows
		}
		var found []prefixEntry
		var broad []string
		accept := func(a expr.Atom) bool { return r.restricts(a, loopback, &found, &broad) }
		restricted := false
		for j := 0; j < i && !restricted; j++ {
			// The rule is reached only when every earlier condition is
			// false.
			restricted = v.rules[j].cond.Implies(false, accept)
		}
		if !restricted && cond != nil {
			restricted = cond.Implies(true, accept)
		}
		if !restricted && then.prog != nil {
			restricted = then.prog.Implies(true, accept)
		}
		path := r.Permit.rulePath(at)
		if !restricted {
			msg := fmt.Sprintf("this rule can let a client that has not authenticated relay, while %s: %s; make its condition require authenticated_as != \"\", or a client network with is_ip_in_cidr(received_from_ip, \"192.0.2.0/24\")", where, consequence)
			if len(broad) > 0 {
				msg += " (" + strings.Join(broad, "; ") + ")"
			}
			errs = append(errs, r.Errorf(path, "%s", msg))
			continue
		}
		for _, f := range found {
			f.path = path
			clients = append(clients, f)
		}
	}
	for _, fam := range []struct {
		name string
		root netip.Prefix
	}{{"IPv4", netip.MustParsePrefix("0.0.0.0/0")}, {"IPv6", netip.MustParsePrefix("::/0")}} {
		var in []prefixEntry
		for _, c := range clients {
			if c.prefix.Addr().Is4() == fam.root.Addr().Is4() {
				in = append(in, c)
			}
		}
		if len(in) < 2 || !coversAll(fam.root, in) {
			continue
		}
		list := make([]string, len(in))
		for i, c := range in {
			list[i] = c.text + " (" + c.path + ")"
		}
		errs = append(errs, r.Errorf(in[0].path, "together, %s cover every %s address, while %s: %s; list your clients' networks, or require AUTH (relay.auth)",
			strings.Join(list, ", "), fam.name, where, consequence))
	}
	return errs
}

// networkEntries are relay.networks with their text and paths (made up
// for the default, which is not written).
func (r *Relay) networkEntries() []prefixEntry {
	if r.networks != nil || len(r.Networks) == 0 {
		return r.networks
	}
	out := make([]prefixEntry, len(r.Networks))
	for i, p := range r.Networks {
		out[i] = prefixEntry{prefix: p, text: p.String(), path: fmt.Sprintf("relay.networks[%d]", i)}
	}
	return out
}

// restricts is the open-relay guard's view of one atom of a permit
// condition: whether it holds only for a client that is authenticated
// (authenticated_as is compared with non-empty names, or found in a list
// without an empty entry), connected to a loopback-only listener, or at
// an address inside prefixes that are not too broad — which it adds to
// found (too broad ones to broad, and the atom then does not restrict).
func (r *Relay) restricts(a expr.Atom, loopback map[string]bool, found *[]prefixEntry, broad *[]string) bool {
	switch a.Var {
	case "authenticated_as":
		switch a.Op {
		case "!=":
			return a.Args[0] == ""
		case "==", "in":
			return len(a.Args) > 0 && !slices.Contains(a.Args, "")
		case "in_list":
			if a.Negated || len(a.Args) != 1 {
				return false
			}
			l, ok := r.lists[a.Args[0]]
			return ok && !slices.ContainsFunc(l, func(e string) bool { return strings.TrimSuffix(e, ".") == "" })
		}
	case "listener":
		if a.Op != "==" && a.Op != "in" || len(a.Args) == 0 {
			return false
		}
		for _, name := range a.Args {
			if lo, known := loopback[name]; known && !lo {
				return false
			}
		}
		return true // loopback-only listeners, or names of none
	case "received_from_ip":
		var ps []netip.Prefix
		switch {
		case a.Op == "is_ip_in_cidr" && !a.Negated && len(a.Args) == 1:
			p, ok := atomPrefix(a.Args[0])
			if !ok {
				return false
			}
			ps = append(ps, p)
		case (a.Op == "==" || a.Op == "in") && len(a.Args) > 0:
			for _, s := range a.Args {
				ip, err := netip.ParseAddr(s)
				if err != nil {
					return false
				}
				ps = append(ps, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			}
		default:
			return false
		}
		for i, p := range ps {
			if why := tooBroad(p); why != "" {
				*broad = append(*broad, a.Args[min(i, len(a.Args)-1)]+" "+why)
				return false
			}
		}
		for i, p := range ps {
			*found = append(*found, prefixEntry{prefix: p, text: a.Args[min(i, len(a.Args)-1)]})
		}
		return true
	}
	return false
}

// atomPrefix reads a prefix as is_ip_in_cidr does (bits past the length
// ignored, a bare address is one address), an IPv4-mapped one as the
// IPv4 prefix it stands for.
func atomPrefix(s string) (netip.Prefix, bool) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, false
		}
		p = p.Masked()
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, true
}

var (
	mappedZero = netip.MustParseAddr("::ffff:0.0.0.0")
	// nonPublic6 are the IPv6 ranges a prefix shorter than /16 may be
	// inside: unique-local and link-local addresses.
	nonPublic6 = []netip.Prefix{netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("fe80::/10")}
)

// tooBroad says why p, a prefix of clients allowed to relay without AUTH,
// is too broad for a listener other machines reach; "" when it is not.
func tooBroad(p netip.Prefix) string {
	a := p.Addr()
	switch {
	case p.Bits() == 0 && a.Is4():
		return "is every IPv4 address"
	case p.Bits() == 0:
		return "is every IPv6 address"
	case a.Is4() && p.Bits() < 8:
		return "is more than a /8 of IPv4 addresses"
	case a.Is6() && p.Bits() <= 96 && p.Contains(mappedZero):
		return "holds ::ffff:0:0/96, every IPv4 address written as IPv6"
	case a.Is6() && p.Bits() < 16:
		for _, np := range nonPublic6 {
			if p.Bits() >= np.Bits() && np.Contains(a) {
				return ""
			}
		}
		return "is more than a /16 of public IPv6 addresses"
	}
	return ""
}

// coversAll reports whether the prefixes of in, all of root's family,
// together hold every address of root.
func coversAll(root netip.Prefix, in []prefixEntry) bool {
	type span struct{ lo, hi netip.Addr }
	spans := make([]span, len(in))
	for i, e := range in {
		spans[i] = span{e.prefix.Masked().Addr(), lastAddr(e.prefix)}
	}
	slices.SortFunc(spans, func(x, y span) int { return x.lo.Compare(y.lo) })
	next := root.Masked().Addr()
	for _, s := range spans {
		if s.lo.Compare(next) > 0 {
			return false // a gap
		}
		if s.hi.Compare(next) >= 0 {
			if !s.hi.Next().IsValid() {
				return true // up to the last address
			}
			next = s.hi.Next()
		}
	}
	return false
}

// lastAddr is the last address of prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
