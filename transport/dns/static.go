package dns

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
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
	answers map[uint16]*response // per supported type
	cname   string               // target, normalised, "" if none
	ttl     uint32               // TTL of the CNAME
}

type staticApex struct {
	name   string
	negTTL uint32
}

// NewStatic reads the zone file at path. Parse errors carry file:line.
// secure marks every answer as DNSSEC-authenticated.
func NewStatic(path string, secure bool) (*Static, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: static zone: %w", err)
	}
	defer f.Close()
	return NewStaticFromReader(f, path, secure)
}

// NewStaticFromReader reads a zone from r; name is the file name used in
// error messages. The initial origin is the root: relative names need an
// $ORIGIN line. $INCLUDE is not allowed.
func NewStaticFromReader(r io.Reader, name string, secure bool) (*Static, error) {
	zp := mdns.NewZoneParser(r, ".", name)
	zp.SetDefaultTTL(3600)
	s := &Static{secure: secure, names: make(map[string]*staticNode)}
	type key struct {
		name  string
		qtype uint16
	}
	collectors := make(map[key]*collector)
	var owners []string
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		if h.Class != mdns.ClassINET {
			continue
		}
		owner := normalize(h.Name)
		node := s.node(owner)
		owners = append(owners, owner)
		switch v := rr.(type) {
		case *mdns.CNAME:
			if node.cname != "" && node.cname != normalize(v.Target) {
				return nil, fmt.Errorf("dns: static zone %s: %s has more than one CNAME", name, owner)
			}
			node.cname, node.ttl = normalize(v.Target), h.Ttl
			continue
		case *mdns.SOA:
			s.apexes = append(s.apexes, staticApex{name: owner, negTTL: min(h.Ttl, v.Minttl)})
			continue
		case *mdns.TLSA:
			if _, err := decodeHex(v.Certificate); err != nil {
				return nil, fmt.Errorf("dns: static zone %s: TLSA at %s: %w", name, owner, err)
			}
		}
		k := key{owner, h.Rrtype}
		c := collectors[k]
		if c == nil {
			c = &collector{qtype: h.Rrtype, resp: response{secure: secure, ttl: h.Ttl}}
		}
		if c.add(rr) {
			c.resp.ttl = min(c.resp.ttl, h.Ttl)
			collectors[k] = c
		}
	}
	if err := zp.Err(); err != nil {
		return nil, zoneError(err)
	}
	for k, c := range collectors {
		c.finish()
		resp := c.resp
		s.names[k.name].answers[k.qtype] = &resp
	}
	for name, node := range s.names {
		if node.cname != "" && len(node.answers) > 0 {
			return nil, fmt.Errorf("dns: static zone %s: %s has a CNAME and other data", name, name)
		}
	}
	// Longest apex first, so the closest enclosing zone wins.
	for i := 1; i < len(s.apexes); i++ {
		for j := i; j > 0 && labels(s.apexes[j].name) > labels(s.apexes[j-1].name); j-- {
			s.apexes[j], s.apexes[j-1] = s.apexes[j-1], s.apexes[j]
		}
	}
	// Empty non-terminals: every ancestor of an owner exists, up to the
	// enclosing zone's apex (or, outside any SOA, up to a TLD).
	for _, owner := range owners {
		stop := s.apexFor(owner).name
		for p := parent(owner); p != "" && p != "." && len(p) >= len(stop); p = parent(p) {
			if stop == "" && !strings.Contains(p, ".") {
				break
			}
			s.node(p)
			if p == stop {
				break
			}
		}
	}
	return s, nil
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

func (s *Static) lookup(ctx context.Context, name string, qtype uint16) (*response, Info, error) {
	r, err := s.query(ctx, name, qtype)
	if err != nil {
		return nil, Info{}, err
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
			out.ttl = min(out.ttl, ttl)
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

// zoneParseRE splits miekg/dns's "FILE: dns: MSG at line: L:C".
var zoneParseRE = regexp.MustCompile(`^(.*): dns: (.*) at line: (\d+):(\d+)$`)

// zoneError rewrites a zone parse error as "FILE:LINE:COL: dns: static
// zone: MSG", the position first like every configuration error, keeping
// the original in the chain.
func zoneError(err error) error {
	m := zoneParseRE.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("dns: static zone: %w", err)
	}
	return &posError{pos: m[1] + ":" + m[3] + ":" + m[4], msg: m[2], err: err}
}

type posError struct {
	pos, msg string
	err      error
}

func (e *posError) Error() string { return e.pos + ": dns: static zone: " + e.msg }
func (e *posError) Unwrap() error { return e.err }

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

func decodeHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("certificate data is not hex")
	}
	return b, nil
}
