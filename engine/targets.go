package engine

import (
	"net/netip"
)

// Where mail to an MX host may connect. A domain's owner chooses its MX
// hosts and their addresses, so DNS can point delivery anywhere: at this
// machine (loopback, 0.0.0.0), at the local link, at a multicast group,
// or, through an IPv6 form that embeds an IPv4 address, at any of these
// behind a NAT64 gateway. Those addresses are never connected to for MX
// hosts; relays are configured by the operator and exempt. Private ranges
// are refused only when ip-strategy.refuse-private says so (an MTA inside
// a private network may well deliver to private MX hosts).

// prefixReason is a range of addresses and why they are never connected to.
type prefixReason struct {
	p      netip.Prefix
	reason string
}

var (
	// Never connected to for MX hosts (IPv4, and the IPv4 forms embedded
	// in IPv6 addresses).
	forbidden4 = []prefixReason{
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	}
	forbidden6 = []prefixReason{
		{netip.MustParsePrefix("::/128"), "unspecified"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("fe80::/10"), "link-local"},
		{netip.MustParsePrefix("ff00::/8"), "multicast"},
	}
	// Private: refused with ip-strategy.refuse-private.
	private4 = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"), // RFC 6598 shared address space
	}
	private6 = []netip.Prefix{
		netip.MustParsePrefix("fc00::/7"),       // RFC 4193 unique local
		netip.MustParsePrefix("fec0::/10"),      // RFC 3879 site-local (deprecated)
		netip.MustParsePrefix("64:ff9b:1::/48"), // RFC 8215 local-use NAT64: its IPv4 mapping is the network's own
	}
	nat64 = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
)

// embeddedIPv4 returns the IPv4 address an IPv6 address stands for: an
// IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d, RFC 4291
// section 2.5.5.1) or NAT64 (64:ff9b::a.b.c.d, RFC 6052) address.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	if nat64.Contains(a) {
		return v4, true
	}
	for _, x := range b[:12] {
		if x != 0 {
			return netip.Addr{}, false
		}
	}
	// ::a.b.c.d; but :: and ::1 are the IPv6 unspecified and loopback
	// addresses, judged as such.
	if v4.As4()[0] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1 {
		return netip.Addr{}, false
	}
	return v4, true
}

// refusedTarget says why an MX host's address a must not be connected to
// ("" when it may be): never for the forbidden kinds, and for private
// ranges when refusePrivate.
func refusedTarget(a netip.Addr, refusePrivate bool) string {
	v4, embedded := embeddedIPv4(a)
	check := a
	if embedded {
		check = v4
	}
	if check.Is4() {
		for _, f := range forbidden4 {
			if f.p.Contains(check) {
				return f.reason + form(embedded)
			}
		}
		if refusePrivate {
			for _, p := range private4 {
				if p.Contains(check) {
					return "private" + form(embedded)
				}
			}
		}
		return ""
	}
	for _, f := range forbidden6 {
		if f.p.Contains(check) {
			return f.reason
		}
	}
	if refusePrivate {
		for _, p := range private6 {
			if p.Contains(check) {
				return "private"
			}
		}
	}
	return ""
}

func form(embedded bool) string {
	if embedded {
		return ", embedded in IPv6"
	}
	return ""
}
