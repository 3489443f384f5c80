package smtpd

import "net/netip"

// IPv6ClientPrefix is the length of the IPv6 network blocks that the
// per-client limits count as one client: a listener's
// max-connections-per-ip and the AUTH failures per address. An IPv6 host
// usually holds a whole /64 and may take a new address in it at will;
// counted address by address, it would pass every per-client limit. 84
// is Postfix's default for the same purpose (smtpd_client_ipv6_prefix_length,
// Postfix 3.8): a compromise between a host's /64 and the many hosts a
// provider may put in one. IPv4 clients count address by address.
const IPv6ClientPrefix = 84

// clientBlock is the key the per-client limits count ip under: an IPv4
// address (also one written v4-mapped) as it is, an IPv6 address as its
// IPv6ClientPrefix network, without a zone.
func clientBlock(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if !ip.Is6() {
		return ip
	}
	p, err := ip.Prefix(IPv6ClientPrefix)
	if err != nil {
		return ip
	}
	return p.Addr()
}
