package dns

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/postern-mta/postern/internal/safefile"
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

// DefaultZoneFileMaxSize is the largest zone file [NewStatic] reads when
// given no cap (and [New] when Config.ZoneFileMaxSize is zero).
const DefaultZoneFileMaxSize = 64 << 20

// NewStatic reads the zone file at path, which must be a regular file of
// at most maxSize bytes (zero means [DefaultZoneFileMaxSize]): a FIFO, a
// device, a directory or a socket is refused with an error wrapping
// [safefile.ErrNotRegular], a larger file with one wrapping
// [safefile.ErrTooLarge]. secure marks every answer as
// DNSSEC-authenticated. Errors give positions (file:line:column) and the
// kind of problem, never text read from the file: a path that names a
// file which is not a zone file (such as /etc/shadow) must not have its
// content shown in a message or a log.
func NewStatic(path string, secure bool, maxSize int64) (*Static, error) {
	if maxSize < 0 {
		return nil, fmt.Errorf("dns: static zone %s: negative size cap %d", path, maxSize)
	}
	if maxSize == 0 {
		maxSize = DefaultZoneFileMaxSize
	}
	f, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: static zone: %w", err)
	}
	defer f.Close()
	// Refuse a file already too large before parsing any of it; the capped
	// reader catches one that grows while it is read.
	if fi, err := f.Stat(); err == nil && fi.Size() > maxSize {
		return nil, fmt.Errorf("dns: static zone: %s: %w (the limit is %d bytes)", path, safefile.ErrTooLarge, maxSize)
	}
	return NewStaticFromReader(safefile.Reader(f, path, maxSize), path, secure)
}

// NewStaticFromReader reads a zone from r; name is the file name used in
// error messages. The initial origin is the root: relative names need an
// $ORIGIN line. $INCLUDE is not allowed. A read error from r is returned
// wrapped. Like those of [NewStatic], its errors never quote the zone's
// text: parse errors give file:line:column and the kind of problem (the
// underlying *dns.ParseError of github.com/miekg/dns, which does quote
// it, stays reachable with errors.As), and errors found in the records
// give the record's number (its rank among the file's records, counting
// from 1) and type.
func NewStaticFromReader(r io.Reader, name string, secure bool) (*Static, error) {
	src := &readErrReader{r: r}
	s, err := newStatic(src, name, secure)
	if src.err != nil {
		// The parser may have stopped on a half-read record and reported
		// that instead; the read error is the real cause.
		return nil, fmt.Errorf("dns: static zone: %w", src.err)
	}
	return s, err
}

// readErrReader remembers the first error, other than io.EOF, of r.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func newStatic(r io.Reader, name string, secure bool) (*Static, error) {
	zp := mdns.NewZoneParser(r, ".", name)
	zp.SetDefaultTTL(3600)
	s := &Static{secure: secure, names: make(map[string]*staticNode)}
	type key struct {
		name  string
		qtype uint16
	}
	collectors := make(map[key]*collector)
	var owners []string
	// Errors found in the records name them by rank (n), never by owner
	// or data: those are text from the file.
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		n++
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
				return nil, fmt.Errorf("dns: static zone %s: record %d (CNAME): a second CNAME, with another target, for the owner of record %d", name, n, node.cnameRec)
			}
			node.cname, node.ttl = normalize(v.Target), h.Ttl
			if node.cnameRec == 0 {
				node.cnameRec = n
			}
			continue
		case *mdns.SOA:
			s.apexes = append(s.apexes, staticApex{name: owner, negTTL: min(h.Ttl, v.Minttl)})
			continue
		case *mdns.TLSA:
			if _, err := decodeHex(v.Certificate); err != nil {
				return nil, fmt.Errorf("dns: static zone %s: record %d (TLSA): %w", name, n, err)
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
		return nil, zoneError(name, err)
	}
	for k, c := range collectors {
		c.finish()
		resp := c.resp
		s.names[k.name].answers[k.qtype] = &resp
	}
	// A CNAME owner has no other data (RFC 1034 section 3.6.2). The
	// first offending CNAME in file order is reported (map order varies).
	bad := 0
	for _, node := range s.names {
		if node.cname != "" && len(node.answers) > 0 && (bad == 0 || node.cnameRec < bad) {
			bad = node.cnameRec
		}
	}
	if bad != 0 {
		return nil, fmt.Errorf("dns: static zone %s: record %d (CNAME): its owner has other records too", name, bad)
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

// zonePosRE matches the end of miekg/dns's parse error message, the
// position: " at line: L:C".
var zonePosRE = regexp.MustCompile(` at line: (\d+):(\d+)$`)

// zoneError rewrites a zone parse error of file name as "FILE:LINE:COL:
// dns: static zone: MSG", the position first like every configuration
// error, keeping the original in the chain.
//
// miekg/dns words it "FILE: dns: MSG: "TOKEN" at line: L:C", where TOKEN
// (quoted by strconv.QuoteToASCII) is the text the parser choked on. That
// is content of the file, and the file may be anything a policy names
// (/etc/shadow), so TOKEN is dropped. A message of another form is not
// shown at all: "FILE: dns: static zone: not a valid zone file".
func zoneError(name string, err error) error {
	const invalid = "not a valid zone file"
	generic := &posError{pos: name, msg: invalid, err: err}
	var pe *mdns.ParseError
	if !errors.As(err, &pe) {
		return generic
	}
	prefix := "dns: "
	if name != "" {
		prefix = name + ": dns: "
	}
	rest, ok := strings.CutPrefix(pe.Error(), prefix)
	if !ok {
		return generic
	}
	loc := zonePosRE.FindStringSubmatchIndex(rest)
	if loc == nil {
		return generic
	}
	pos := rest[loc[2]:loc[3]] + ":" + rest[loc[4]:loc[5]]
	if name != "" {
		pos = name + ":" + pos
	}
	msg, ok := dropQuotedToken(rest[:loc[0]])
	if !ok {
		return generic
	}
	if msg == "" {
		msg = invalid
	}
	return &posError{pos: pos, msg: msg, err: err}
}

// dropQuotedToken splits `MSG: "TOKEN"` and returns MSG. TOKEN is a Go
// double-quoted string, in which every '"' but the first and the last is
// escaped by a backslash: the first '"' after ": " from which the rest of
// s is one valid quoted string opens it.
func dropQuotedToken(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] != '"' || !strings.HasSuffix(s[:i], ": ") {
			continue
		}
		if _, err := strconv.Unquote(s[i:]); err == nil {
			return s[:i-len(": ")], true
		}
	}
	return "", false
}

// posError is an error at a position in a file; its message is ours.
type posError struct {
	pos, msg string // pos is "FILE:LINE:COL", or "FILE" alone
	err      error
}

func (e *posError) Error() string {
	if e.pos == "" {
		return "dns: static zone: " + e.msg
	}
	return e.pos + ": dns: static zone: " + e.msg
}
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
