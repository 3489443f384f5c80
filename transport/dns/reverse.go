package dns

import (
	"context"
	"errors"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// Reverse is implemented by resolvers that can name an address: they ask
// for the PTR records of its reverse name, under in-addr.arpa for IPv4
// (RFC 1035 section 3.5) and under ip6.arpa for IPv6 (RFC 3596 section
// 2.5). [*Client], [*Cache] and [*Static] implement it. It is not part of
// [Resolver], which embedders implement: check for it with a type
// assertion.
//
// The question goes through the same path as the others: the same
// servers, retries, CNAME chasing (which classless reverse delegation,
// RFC 2317, relies on) and, for a Cache, the same entries, TTLs, negative
// caching and counters. Failures are an *[Error] whose Name is the reverse
// name and whose Type is "PTR": an address without reverse DNS is
// [ErrNotFound] (or [ErrNoData]); an invalid address (the zero
// netip.Addr) is NotFound too, without a question being asked.
//
// A PTR record is only a claim, made by whoever controls the address's
// reverse zone. Before a name is taken as the host's, its A or AAAA
// records should be looked up and one of them found to be the address
// (forward-confirmed reverse DNS, as MTAs do for their clients).
type Reverse interface {
	LookupPTR(ctx context.Context, ip netip.Addr) (PTRResult, error)
}

// errNotIP is the cause of a reverse lookup for an invalid address.
var errNotIP = errors.New("not an IP address")

// ReverseName returns the name whose PTR records name ip, lower-case and
// without the trailing dot: "1.0.0.127.in-addr.arpa" for 127.0.0.1
// (RFC 1035 section 3.5), 32 nibble labels under "ip6.arpa" for an IPv6
// address (RFC 3596 section 2.5). An IPv4-mapped IPv6 address
// (::ffff:192.0.2.1) is named as the IPv4 address it holds; an IPv6 zone
// ("%eth0") is ignored. The zero netip.Addr is an error.
func ReverseName(ip netip.Addr) (string, error) {
	if !ip.IsValid() {
		return "", errNotIP
	}
	name, err := mdns.ReverseAddr(ip.WithZone("").Unmap().String())
	if err != nil {
		return "", err
	}
	return normalize(name), nil
}

// LookupPTR implements [Reverse].
func (c *Client) LookupPTR(ctx context.Context, ip netip.Addr) (PTRResult, error) {
	return lookupPTR(ctx, c, ip)
}

// LookupPTR implements [Reverse]; answers are cached like those of the
// other types.
func (c *Cache) LookupPTR(ctx context.Context, ip netip.Addr) (PTRResult, error) {
	return lookupPTR(ctx, c, ip)
}

// LookupPTR implements [Reverse], from the PTR records of the zone file.
func (s *Static) LookupPTR(ctx context.Context, ip netip.Addr) (PTRResult, error) {
	return lookupPTR(ctx, s, ip)
}

// The resolvers of this package answer reverse questions.
var (
	_ Reverse = (*Client)(nil)
	_ Reverse = (*Cache)(nil)
	_ Reverse = (*Static)(nil)
)
