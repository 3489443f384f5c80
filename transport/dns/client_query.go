package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"

	mdns "github.com/miekg/dns"
)

// query answers one question for a normalised name. A negative answer
// (NotFound, NoData) comes with a response carrying its RFC 2308 TTL.
func (c *Client) query(ctx context.Context, name string, qtype uint16) (*response, error) {
	tname := typeName(qtype)
	if _, ok := mdns.IsDomainName(name); !ok || name == "" || name == "." {
		return nil, &Error{Kind: NotFound, Name: name, Type: tname, Err: errors.New("not a valid domain name")}
	}
	col := collector{qtype: qtype}
	secure := true
	ttl := ^uint32(0)
	cur := name
	hops := 0
	for {
		asked := cur
		msg, srv, err := c.exchange(ctx, fqdn(cur), qtype)
		if err != nil {
			err.Name, err.Type = name, tname
			return nil, err
		}
		secure = secure && c.dnssec && msg.AuthenticatedData && trustAD(srv.Server)
		// With NXDOMAIN only the CNAMEs of the answer count: they lead to
		// the name that does not exist (RFC 6604 section 2). Records of the
		// asked type next to an NXDOMAIN contradict it and are ignored.
		nx := msg.Rcode == mdns.RcodeNameError
		// Walk the answer from the asked name along any CNAMEs.
		for moved := true; moved; {
			moved = false
			for _, rr := range msg.Answer {
				h := rr.Header()
				if h.Class != mdns.ClassINET || !sameName(h.Name, cur) {
					continue
				}
				if h.Rrtype == qtype {
					if !nx && col.add(rr) {
						ttl = min(ttl, h.Ttl)
					}
					continue
				}
				if cn, ok := rr.(*mdns.CNAME); ok && col.n == 0 {
					hops++
					if hops > maxCNAME {
						return nil, &Error{Kind: Temporary, Name: name, Type: tname, Server: srv.name,
							Err: fmt.Errorf("CNAME chain longer than %d at %s", maxCNAME, cur)}
					}
					ttl = min(ttl, h.Ttl)
					cur = normalize(cn.Target)
					moved = true
					break
				}
			}
		}
		if col.n > 0 {
			col.finish()
			r := col.resp
			r.secure, r.ttl, r.server = secure, ttl, srv.name
			if cur != name {
				r.canonical = cur
			}
			return &r, nil
		}
		neg, hasSOA := negativeTTL(msg)
		if msg.Rcode == mdns.RcodeSuccess && cur != asked && !hasSOA {
			continue // the answer ended in a CNAME the server did not follow: ask for the target
		}
		kind := NoData
		if msg.Rcode == mdns.RcodeNameError {
			kind = NotFound
		}
		var cause error
		if cur != name {
			cause = fmt.Errorf("via CNAME %s", cur)
		}
		r := &response{server: srv.name, secure: secure}
		if hasSOA {
			r.ttl, r.hasTTL = min(neg, ttl), true
		}
		return r, &Error{Kind: kind, Name: name, Type: tname, Server: srv.name, Err: cause}
	}
}

// negativeTTL returns the RFC 2308 section 5 TTL of a negative answer:
// the smaller of the SOA record's TTL and its MINIMUM field.
func negativeTTL(m *mdns.Msg) (uint32, bool) {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}

func sameName(a, b string) bool {
	a = strings.TrimSuffix(a, ".")
	return strings.EqualFold(a, b)
}
