package policydiff

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
)

// settings are the policy settings behind each field, most specific
// first: the trace steps of the first one whose value differs between
// the policies are the rule reported.
var settings = map[string][]string{
	"route":                          {"routing.route"},
	"outcome":                        {"routing.route"},
	"mta-sts":                        {"tls.mta-sts"},
	"limits.mx":                      {"limits.mx"},
	"limits.recipients":              {"limits.recipients"},
	"hosts":                          {"routing.route", "limits.mx"},
	"throttles":                      {"limits.throttles"},
	"tls.starttls":                   {"tls.starttls"},
	"tls.dane":                       {"tls.dane"},
	"tls.min-version":                {"tls.min-version"},
	"tls.allow-invalid-certs":        {"tls.allow-invalid-certs"},
	"tls":                            {"tls.starttls", "tls.dane", "tls.mta-sts", "tls.allow-invalid-certs"},
	"ip-strategy.lookup":             {"ip-strategy.lookup"},
	"addresses":                      {"ip-strategy.lookup", "limits.multihomed", "ip-strategy.refuse-private"},
	"limits.messages-per-connection": {"limits.messages-per-connection"},
	"source-ip":                      {"ip-strategy.source-ips", "ip-strategy.source-ipv4", "ip-strategy.source-ipv6"},
	"ehlo":                           {"ip-strategy.ehlo-hostname", "hostname"},
	"limits.timeouts":                {"limits.timeouts"},
}

// differences collects the changed facts of one pair of groups. Values
// are compared as they are and rendered as text only when they differ:
// most facts of most recipients do not change.
type differences struct {
	out []Change
}

// add records a change; the same change (field, old, new) at another host
// or address joins the first one's At.
func (d *differences) add(field string, at *Place, old, new string) {
	if at != nil {
		for i := range d.out {
			c := &d.out[i]
			if c.Field == field && c.Old == old && c.New == new && len(c.At) > 0 {
				c.At = append(c.At, *at)
				return
			}
		}
	}
	c := Change{Field: field, Old: old, New: new}
	if at != nil {
		c.At = []Place{*at}
	}
	d.out = append(d.out, c)
}

// str compares two strings.
func (d *differences) str(field string, at *Place, old, new string) {
	if old != new {
		d.add(field, at, old, new)
	}
}

// num compares two integers.
func (d *differences) num(field string, at *Place, old, new int) {
	if old != new {
		d.add(field, at, strconv.Itoa(old), strconv.Itoa(new))
	}
}

// diffGroups compares two groups' facts: the group's, then those of each
// host both have (in the new order), then those of each address both
// hosts have. A host or address only one side has shows in hosts or
// addresses.
func diffGroups(og, ng *engine.Group) []Change {
	var d differences
	d.str("route", nil, og.Route.Name, ng.Route.Name)
	if og.Outcome != ng.Outcome || !sameError(og.Error, ng.Error) {
		d.add("outcome", nil, outcome(og), outcome(ng))
	}
	d.num("limits.recipients", nil, og.Limits.Recipients, ng.Limits.Recipients)
	if !slices.EqualFunc(og.Hosts, ng.Hosts, func(a, b *engine.Host) bool { return a.Name == b.Name }) {
		d.add("hosts", nil, hostList(og), hostList(ng))
	}
	if !slices.EqualFunc(og.Throttles, ng.Throttles, sameThrottle) {
		d.add("throttles", nil, throttleList(og), throttleList(ng))
	}
	if og.Route.Type == policies.RouteMX && ng.Route.Type == policies.RouteMX {
		// MTA-STS and limits.mx apply to MX delivery only; a route that
		// changes type shows in route and hosts.
		d.str("mta-sts", nil, og.MTASTS.Setting, ng.MTASTS.Setting)
		d.num("limits.mx", nil, og.Limits.MX, ng.Limits.MX)
	}
	common := false
	for _, nh := range ng.Hosts {
		if oh := findHost(og, nh.Name); oh != nil {
			d.host(oh, nh, false)
			common = true
		}
	}
	if !common {
		// Other hosts altogether (a route that changed, say): compare
		// the first host each side would try, so that what the first
		// connection gets (TLS, source address, EHLO) shows too.
		if oh, nh := firstTried(og), firstTried(ng); oh != nil && nh != nil {
			d.host(oh, nh, true)
		}
	}
	return d.out
}

// firstTried is the first host not skipped, nil when there is none.
func firstTried(g *engine.Group) *engine.Host {
	for _, h := range g.Hosts {
		if h.Skipped == nil {
			return h
		}
	}
	return nil
}

// host compares the facts of two hosts: the same host, or the first host
// of each side (paired: their connections are compared in order, not by
// address).
func (d *differences) host(oh, nh *engine.Host, paired bool) {
	at := &Place{Host: nh.Name}
	if paired {
		at.OldHost = oh.Name
	}
	if oh.Skipped != nil || nh.Skipped != nil {
		if o, n := skipped(oh), skipped(nh); o != n {
			d.add("tls", at, o, n)
		}
		return
	}
	ot, nt := oh.TLS, nh.TLS
	d.str("tls.starttls", at, string(ot.STARTTLS), string(nt.STARTTLS))
	d.str("tls.dane", at, string(ot.DANE), string(nt.DANE))
	d.str("tls.min-version", at, string(ot.MinVersion), string(nt.MinVersion))
	if ot.AllowInvalidCerts != nt.AllowInvalidCerts {
		d.add("tls.allow-invalid-certs", at, strconv.FormatBool(ot.AllowInvalidCerts), strconv.FormatBool(nt.AllowInvalidCerts))
	}
	if ot.Required != nt.Required || ot.Verify != nt.Verify || (ot.STARTTLS == policies.TLSDisable) != (nt.STARTTLS == policies.TLSDisable) {
		d.add("tls", at, tlsInEffect(oh), tlsInEffect(nh))
	}
	d.str("ip-strategy.lookup", at, string(oh.IPLookup), string(nh.IPLookup))
	if !paired && !slices.Equal(oh.Addresses, nh.Addresses) {
		d.add("addresses", at, addrList(oh), addrList(nh)) // other hosts have other addresses
	}
	d.num("limits.messages-per-connection", at, oh.MessagesPerConnection, nh.MessagesPerConnection)
	for i, nc := range nh.Connections {
		var oc *engine.Connect
		cat := &Place{Host: nh.Name, Address: nc.RemoteIP.String()}
		switch {
		case !paired:
			oc = findConn(oh, nc.RemoteIP)
		case i < len(oh.Connections):
			oc = oh.Connections[i]
			cat.OldHost, cat.OldAddress = oh.Name, oc.RemoteIP.String()
		}
		if oc == nil {
			continue
		}
		if o, n := source(oc), source(nc); o != n {
			d.add("source-ip", cat, o, n)
		}
		d.str("ehlo", cat, oc.EHLOHostname, nc.EHLOHostname)
		if oc.Timeouts != nc.Timeouts {
			d.add("limits.timeouts", cat, timeouts(oc.Timeouts), timeouts(nc.Timeouts))
		}
	}
}

func findHost(g *engine.Group, name string) *engine.Host {
	for _, h := range g.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

func findConn(h *engine.Host, ip netip.Addr) *engine.Connect {
	for _, c := range h.Connections {
		if c.RemoteIP == ip {
			return c
		}
	}
	return nil
}

func sameError(a, b *engine.GroupError) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Class == b.Class && a.Temporary == b.Temporary
}

func sameThrottle(a, b engine.ThrottleInfo) bool {
	return a.Name == b.Name && a.Key == b.Key && a.Concurrency == b.Concurrency && a.Rate == b.Rate
}

// outcome is the outcome with its error class: "deliver", "fail (dns)".
func outcome(g *engine.Group) string {
	if g.Error != nil {
		return string(g.Outcome) + " (" + string(g.Error.Class) + ")"
	}
	return string(g.Outcome)
}

func skipped(h *engine.Host) string {
	if h.Skipped != nil {
		return "skipped: " + *h.Skipped
	}
	return tlsInEffect(h)
}

func source(c *engine.Connect) string {
	if c.SourceIP == nil {
		return "kernel's choice"
	}
	return c.SourceIP.String()
}

func timeouts(t engine.Timeouts) string {
	return "connect " + t.Connect.String() + ", greeting " + t.Greeting.String() + ", ehlo " + t.EHLO.String() +
		", mail-from " + t.MailFrom.String() + ", rcpt-to " + t.RcptTo.String() + ", data " + t.Data.String()
}

func hostList(g *engine.Group) string {
	names := make([]string, len(g.Hosts))
	for i, h := range g.Hosts {
		names[i] = h.Name
	}
	return strings.Join(names, ", ")
}

func addrList(h *engine.Host) string {
	addrs := make([]string, len(h.Addresses))
	for i, a := range h.Addresses {
		addrs[i] = a.String()
	}
	return strings.Join(addrs, ", ")
}

// throttleList names the throttles that apply, each with its key and
// limits, in the order the decision lists them.
func throttleList(g *engine.Group) string {
	parts := make([]string, 0, len(g.Throttles))
	for _, th := range g.Throttles {
		p := th.Name + " " + strconv.Quote(th.Key)
		if th.Concurrency > 0 {
			p += " concurrency " + strconv.Itoa(th.Concurrency)
		}
		if th.Rate != (policies.Rate{}) {
			p += " rate " + th.Rate.String()
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// tlsInEffect is what delivery will do: "required, verify pkix",
// "opportunistic", "off".
func tlsInEffect(h *engine.Host) string {
	switch {
	case h.TLS.Required:
		return "required, verify " + h.TLS.Verify
	case h.TLS.STARTTLS == policies.TLSDisable:
		return "off"
	}
	return "opportunistic"
}
