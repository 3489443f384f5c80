package policies

import (
	"net/netip"
	"strings"

	"github.com/postern-mta/postern/expr"
)

// hostVars are the variables that tell one route, or one host, from
// another in the host and connection phases. local_ip counts: it is the
// source address ip-strategy.source-ips chose, which that setting's own
// check covers.
var hostVars = []string{"route", "route_type", "mx", "mx_preference", "mx_secure", "site", "remote_ip", "local_ip"}

// lintLoopbackRelays warns when a source address or an EHLO name meant
// for the Internet may also be used on a relay on loopback (a local LMTP
// store, a content filter): host- and connection-phase settings apply to
// every route, and a rule keyed on the sender alone does not know the
// route. The connection then leaves from a public address, or names
// itself with a public name, to a service on the same machine.
func (d *decoder) lintLoopbackRelays(s *Set) {
	for _, name := range sortedKeys(s.Routes) {
		r := s.Routes[name]
		if r.Type != RouteRelay || !onLoopback(r) {
			continue
		}
		ip := &s.IPStrategy
		checks := []struct {
			setting string
			blind   bool
			at      Pos
			what    string
		}{
			{"ip-strategy.source-ips", routeBlind(ip.SourceIPs, func(v []netip.Addr) bool { return len(v) == 0 }), ip.SourceIPs.At(), "a source address"},
			{"ip-strategy.ehlo-hostname", routeBlind(ip.EHLOHostname, func(v string) bool { return v == "" }), ip.EHLOHostname.At(), "an EHLO name"},
		}
		for _, c := range checks {
			if !c.blind {
				continue
			}
			at := c.at
			d.warns = append(d.warns, &Warning{File: d.file, Line: at.Line, Column: at.Column, Setting: c.setting,
				Message: c.setting + " may give route " + name + " (a relay on loopback, " + r.Address + ") " + c.what +
					" meant for the Internet: its rules do not look at the route; guard them with route_type == \"mx\" (or route != \"" + name + "\")"})
		}
	}
}

// onLoopback reports whether the relay's address is a loopback address
// or "localhost".
func onLoopback(r *Route) bool {
	if r.AddressIP.IsValid() {
		return r.AddressIP.IsLoopback()
	}
	return strings.EqualFold(strings.TrimSuffix(r.Address, "."), "localhost")
}

// routeBlind reports whether v may give a value that is not plain (an
// address, a name) without looking at the route or the host: a literal, a
// rule whose condition uses none of hostVars, an else no such rule
// stands before, or an expression that does not use them. A rule whose
// condition looks at the route and gives the plain value is taken as a
// guard (route_type != "mx" → []): what follows it is not blind.
func routeBlind[T any](v *Value[T], plain func(T) bool) bool {
	if v == nil {
		return false
	}
	usesRoute := func(p *expr.Program) bool {
		for _, n := range hostVars {
			if p.Uses(n) {
				return true
			}
		}
		return false
	}
	blind := func(b *branch[T]) bool {
		if b.prog != nil {
			return !usesRoute(b.prog)
		}
		return !plain(b.lit)
	}
	switch v.form {
	case formDefault:
		return false
	case formLiteral:
		return !plain(v.lit)
	case formExpr:
		return blind(v.els)
	}
	for i := range v.rules {
		r := &v.rules[i]
		if r.cond != nil && usesRoute(r.cond) {
			if r.then.prog == nil && plain(r.then.lit) {
				return false // a guard
			}
			continue // about some routes or hosts only
		}
		if blind(&r.then) {
			return true
		}
	}
	return v.els != nil && blind(v.els)
}
