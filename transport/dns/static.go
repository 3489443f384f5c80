package dns

import (
	"context"
	"fmt"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Static answers from an RFC 1035 zone file held in memory. It never
// touches the network; its answers carry Info.Server "" and Info.Cached
// false, and Secure is the flag given to [NewStatic].
//
// Semantics follow an authoritative server: NXDOMAIN when no record of any
// type exists at the name (empty non-terminals do exist, and a wildcard
// "*.parent" covers missing names below the closest existing ancestor,
// RFC 4592); NODATA when the name exists without the asked type; CNAMEs
// are followed within the data, up to 8 hops, and a CNAME loop is a
// Temporary error (what a resolver reports as SERVFAIL). NS records are
// data only: there are no zone cuts.
type Static struct {
	secure bool
	// names maps every existing name (normalised) to its answers.
	names map[string]*staticNode
	// apexes are the owners of SOA records, longest first.
	apexes []staticApex
}

type staticNode struct {
	answers  map[uint16]*response // per supported type
	cname    string               // target, normalised, "" if none
	ttl      uint32               // TTL of the CNAME
	cnameRec int                  // rank in the file of the CNAME record, for errors
}

type staticApex struct {
	name   string
	negTTL uint32
}

func (s *Static) node(name string) *staticNode {
	n := s.names[name]
	if n == nil {
		n = &staticNode{answers: make(map[uint16]*response)}
		s.names[name] = n
	}
	return n
}

// apexFor returns the closest enclosing SOA owner of name, or a zero apex.
func (s *Static) apexFor(name string) staticApex {
	for _, a := range s.apexes {
		if name == a.name || strings.HasSuffix(name, "."+a.name) {
			return a
		}
	}
	return staticApex{}
}

// find returns the node for name, synthesising from a wildcard when name
// does not exist (RFC 4592: the wildcard at the closest encloser).
func (s *Static) find(name string) *staticNode {
	if n := s.names[name]; n != nil {
		return n
	}
	for p := parent(name); p != ""; p = parent(p) {
		wild := "*." + p
		if p == "." {
			wild = "*"
		}
		if n := s.names[wild]; n != nil {
			return n
		}
		if s.names[p] != nil {
			return nil // closest encloser has no wildcard
		}
	}
	return nil
}

// LookupMX implements [Resolver].
func (s *Static) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	return lookupMX(ctx, s, domain)
}

// LookupA implements [Resolver].
func (s *Static) LookupA(ctx context.Context, host string) (AddrResult, error) {
	return lookupAddr(ctx, s, host, mdns.TypeA)
}

// LookupAAAA implements [Resolver].
func (s *Static) LookupAAAA(ctx context.Context, host string) (AddrResult, error) {
	return lookupAddr(ctx, s, host, mdns.TypeAAAA)
}

// LookupTLSA implements [Resolver].
func (s *Static) LookupTLSA(ctx context.Context, name string) (TLSAResult, error) {
	return lookupTLSA(ctx, s, name)
}

// LookupTXT implements [Resolver].
func (s *Static) LookupTXT(ctx context.Context, name string) (TXTResult, error) {
	return lookupTXT(ctx, s, name)
}

// Immediate implements [Immediate]: a zone in memory answers at once.
func (s *Static) Immediate(name, typ string) bool { return true }

func (s *Static) lookup(ctx context.Context, name string, qtype uint16) (*response, Info, error) {
	r, err := s.query(ctx, name, qtype)
	if err != nil {
		return nil, negativeInfo(r), err
	}
	return r, Info{TTL: time.Duration(r.ttl) * time.Second}, nil
}

func (s *Static) query(_ context.Context, name string, qtype uint16) (*response, error) {
	cur := name
	ttl := ^uint32(0)
	for hop := 0; ; hop++ {
		n := s.find(cur)
		if n == nil {
			return s.negative(name, cur, qtype, NotFound, ttl)
		}
		if r := n.answers[qtype]; r != nil {
			if hop == 0 {
				return r, nil
			}
			out := *r
			out.ttl, out.canonical = min(out.ttl, ttl), cur
			return &out, nil
		}
		if n.cname == "" || qtype == mdns.TypeCNAME {
			return s.negative(name, cur, qtype, NoData, ttl)
		}
		if hop == maxCNAME {
			return nil, &Error{Kind: Temporary, Name: name, Type: typeName(qtype),
				Err: fmt.Errorf("CNAME chain longer than %d at %s", maxCNAME, cur)}
		}
		ttl = min(ttl, n.ttl)
		cur = n.cname
	}
}

// negative returns the RFC 2308 negative answer for cur (reached from
// name), with the SOA-derived TTL when an SOA encloses cur.
func (s *Static) negative(name, cur string, qtype uint16, kind ErrorKind, ttl uint32) (*response, error) {
	r := &response{secure: s.secure}
	if a := s.apexFor(cur); a.name != "" {
		r.ttl, r.hasTTL = min(a.negTTL, ttl), true
	}
	var cause error
	if cur != name {
		cause = fmt.Errorf("via CNAME %s", cur)
	}
	return r, &Error{Kind: kind, Name: name, Type: typeName(qtype), Err: cause}
}

// parent returns name without its first label: "a.b" -> "b", "b" -> ".",
// "." -> "".
func parent(name string) string {
	if name == "." || name == "" {
		return ""
	}
	if i := strings.IndexByte(name, '.'); i >= 0 && i < len(name)-1 {
		return name[i+1:]
	}
	return "."
}

func labels(name string) int {
	if name == "." || name == "" {
		return 0
	}
	return strings.Count(name, ".") + 1
}
