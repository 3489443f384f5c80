package engine

import (
	"cmp"
	"net/netip"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
)

// connection settles the connection to address a of h: it picks the
// source address (one of ip-strategy.source-ips of a's family, spread by
// the group's random source), evaluates the connection-phase settings,
// and finds the connection-level throttles. This is the one place those
// are decided: the dry-run shows them, and delivery uses them as they are.
func (r *run) connection(g *Group, h *Host, a netip.Addr, i int, tr *policies.Trace) *Connect {
	set := r.s.set
	env := r.env()
	c := &Connect{RemoteIP: a}
	n := 0 // source addresses of a's family
	for _, s := range h.SourceIPs {
		if s.Is4() == a.Is4() {
			n++
		}
	}
	if n > 0 {
		k := 0
		if n > 1 {
			k = int(r.cfg.rand() % uint64(n))
		}
		for _, s := range h.SourceIPs {
			if s.Is4() == a.Is4() {
				if k == 0 {
					c.source = s
					break
				}
				k--
			}
		}
		c.SourceIP = &c.source
	}
	if k := r.s.conn; k != nil && tr == nil {
		// Nothing to evaluate: no need to write the addresses out for
		// the environment.
		c.EHLOHostname, c.Timeouts = cmp.Or(k.ehlo, h.EHLOHostname), k.timeouts
		return c
	}
	env.RemoteIP = a.String()
	if c.SourceIP != nil {
		env.LocalIP = c.SourceIP.String()
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
	label := func() string { return "address " + a.String() + " of " + h.Name }
	flush(g, tr, label)
	r.connThrottles(g, c, i == 0, tr)
	flush(g, tr, label)
	return c
}

// connConst are the connection-phase settings of a policy in which none
// depends on the connection: each is a literal or not set, and no
// throttle is counted per connection.
type connConst struct {
	ehlo     string // "" means the host's hostname
	timeouts Timeouts
}

// constConnection returns the policy's connection-phase settings when they
// are all constant, nil otherwise.
func constConnection(set *policies.Set) *connConst {
	for _, t := range set.Limits.Throttles {
		if t.Phase == expr.Connection {
			return nil
		}
	}
	ehlo, ok := set.IPStrategy.EHLOHostname.Literal()
	if !ok {
		return nil
	}
	k := &connConst{ehlo: ehlo}
	t := &set.Limits.Timeouts
	for _, f := range []struct {
		v   *policies.Value[time.Duration]
		out *Duration
	}{{t.Connect, &k.timeouts.Connect}, {t.Greeting, &k.timeouts.Greeting}, {t.EHLO, &k.timeouts.EHLO},
		{t.MailFrom, &k.timeouts.MailFrom}, {t.RcptTo, &k.timeouts.RcptTo}, {t.Data, &k.timeouts.Data}} {
		d, ok := f.v.Literal()
		if !ok {
			return nil
		}
		*f.out = Duration(d)
	}
	return k
}
