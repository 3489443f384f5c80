package engine

import (
	"net/netip"

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
	var fam []netip.Addr
	for _, s := range h.SourceIPs {
		if s.Is4() == a.Is4() {
			fam = append(fam, s)
		}
	}
	if len(fam) > 0 {
		pick := fam[0]
		if len(fam) > 1 {
			pick = fam[int(r.cfg.rand()%uint64(len(fam)))]
		}
		c.SourceIP = &pick
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
