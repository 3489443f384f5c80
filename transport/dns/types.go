package dns

import (
	"context"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Resolver answers the questions outbound delivery asks. *Client, *Cache
// and *Static implement it; all are safe for concurrent use.
//
// Names may be given with or without a trailing dot, in any case. Failures
// are always an *[Error]; use errors.Is with [ErrNotFound], [ErrNoData],
// [ErrTemporary] or [ErrBogus] to tell them apart.
//
// A result returned with an error holds no records, but its Info tells
// how the error was obtained where that is known: for a negative answer
// (NotFound, NoData) the TTL it may be kept and the Server that gave it,
// or Cached when a [Cache] answered from a fresh negative entry. A Cache
// never answers NotFound or NoData from an expired entry: when the
// upstream fails and only an expired negative entry is left (within
// CacheConfig.StaleGrace), the error is Temporary with [Error.Stale] set,
// and Info has Cached and Stale set. (Positive answers are served stale,
// without an error, with Info.Stale set.)
//
// The slices inside a result may be shared with a cache and must not be
// modified.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) (MXResult, error)
	LookupA(ctx context.Context, host string) (AddrResult, error)
	LookupAAAA(ctx context.Context, host string) (AddrResult, error)
	LookupTLSA(ctx context.Context, name string) (TLSAResult, error) // name like "_25._tcp.mx.example.com"
	LookupTXT(ctx context.Context, name string) (TXTResult, error)
}

// Immediate is implemented by resolvers that can tell, without blocking,
// whether a question would be answered at once, from memory: a [*Static]
// always, a [*Cache] when it holds a fresh answer. A caller with several
// questions asks those inline, and only the others concurrently: a
// goroutine costs more than a cache hit. typ is "MX", "A", "AAAA", "TLSA",
// "TXT" or "PTR" (name is then the reverse name, such as
// "1.0.0.127.in-addr.arpa", that [ReverseName] returns).
type Immediate interface {
	Immediate(name, typ string) bool
}

// Validating is implemented by resolvers that can say whether their
// answers can ever be DNSSEC-secure: a [*Client] when it sets the DO bit
// and at least one of its servers is one whose AD bit it trusts (loopback
// or DNS over TLS), a [*Cache] as its upstream, a [*Static] always (its
// zone file says what is secure). An answer that is not Secure proves the
// zone insecure only when Validates is true: otherwise it says nothing,
// and DANE's require (RFC 7672) must not turn it into a bounce.
type Validating interface {
	Validates() bool
}

// Validates reports whether some answer of c can be Secure: see
// [Validating].
func (c *Client) Validates() bool {
	if !c.dnssec {
		return false
	}
	for _, s := range c.servers {
		if trustAD(s.Server) {
			return true
		}
	}
	return false
}

// Validates is true: a static zone's secure flag is the truth.
func (s *Static) Validates() bool { return true }

// Validates passes the question to the upstream; an upstream that does
// not say is trusted.
func (c *Cache) Validates() bool {
	if v, ok := c.up.(Validating); ok {
		return v.Validates()
	}
	return true
}

// qtypeOf maps the record types of [Immediate] to their codes (0 for
// another word).
func qtypeOf(typ string) uint16 {
	switch typ {
	case "MX":
		return mdns.TypeMX
	case "A":
		return mdns.TypeA
	case "AAAA":
		return mdns.TypeAAAA
	case "TLSA":
		return mdns.TypeTLSA
	case "TXT":
		return mdns.TypeTXT
	case "PTR":
		return mdns.TypePTR
	}
	return 0
}

// Info tells how an answer was obtained, for the dry-run trace.
type Info struct {
	Cached bool          // served from the cache
	Stale  bool          // served stale after an upstream failure (RFC 8767); with an error, see Error.Stale
	TTL    time.Duration // TTL left at the time of the answer
	Server string        // upstream that answered ("" when cached/static)
}

// MX is one mail exchanger.
type MX struct {
	Host       string // lower-cased, no trailing dot
	Preference uint16
}

// MXResult is the answer to an MX question.
type MXResult struct {
	// Records are in answer order; the caller sorts and shuffles. A
	// record whose host is "." is never listed here.
	Records []MX
	// NullMX is set when the domain publishes the single record "0 ."
	// (RFC 7505: the domain accepts no mail). Records is then empty.
	NullMX bool
	Secure bool // DNSSEC-authenticated by a trusted validating upstream
	Info   Info
}

// AddrResult is the answer to an A or AAAA question.
type AddrResult struct {
	Addrs []netip.Addr
	// Canonical is the name the addresses were found at when the answer
	// came through CNAMEs (the fully expanded name, lower-cased, no
	// trailing dot); empty when the asked name holds them itself. DANE
	// (RFC 7672 section 2.2.2) takes it as the TLSA base domain when the
	// answer is Secure: Secure then covers every step of the expansion.
	Canonical string
	Secure    bool
	Info      Info
}

// TLSA is one TLSA record (RFC 6698).
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte // certificate association data
}

// TLSAResult is the answer to a TLSA question.
type TLSAResult struct {
	Records []TLSA
	Secure  bool
	Info    Info
}

// TXTResult is the answer to a TXT question.
type TXTResult struct {
	Records []string // each record's character-strings joined
	Secure  bool
	Info    Info
}

// PTRResult is the answer to a reverse (PTR) question.
type PTRResult struct {
	// Names are the PTR targets in answer order, lower-cased, without the
	// trailing dot. They are what the owner of the address's reverse zone
	// claims: nothing checks that they point back to the address (see
	// [Reverse]).
	Names  []string
	Secure bool
	Info   Info
}

// response is the normalised, type-specific content of one answer, shared
// by the resolvers and stored in the cache. Only the field matching the
// question's type is set.
type response struct {
	mx     []MX
	nullMX bool
	addrs  []netip.Addr
	tlsa   []TLSA
	txt    []string
	ptr    []string
	secure bool
	// canonical is the CNAME-expanded name holding the records, "" when
	// the asked name holds them.
	canonical string
	// ttl is, for a positive answer, the smallest TTL of the records used
	// (CNAMEs included); for a negative answer, the RFC 2308 negative TTL
	// (smaller of the SOA's TTL and MINIMUM), valid only when hasTTL.
	ttl    uint32
	hasTTL bool
	server string
}

// querier is what the generic lookups below need: an answer for a
// normalised name (lower-case, no trailing dot) and a type, and how it was
// obtained.
type querier interface {
	lookup(ctx context.Context, name string, qtype uint16) (*response, Info, error)
}

const maxCNAME = 8 // CNAME hops followed per question

// normalize lower-cases name and removes one trailing dot. It does not
// allocate for names that are already normal.
func normalize(name string) string {
	name = strings.ToLower(name)
	if len(name) > 1 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	return name
}

// fqdn turns a normalised name into the form used on the wire.
func fqdn(name string) string {
	if name == "." || name == "" {
		return "."
	}
	return name + "."
}

func typeName(qtype uint16) string {
	if s, ok := mdns.TypeToString[qtype]; ok {
		return s
	}
	return "TYPE?"
}

// negativeInfo is the Info of a failed query: for a negative answer
// (r non-nil), its negative TTL and server; else nothing.
func negativeInfo(r *response) Info {
	if r == nil {
		return Info{}
	}
	info := Info{Server: r.server}
	if r.hasTTL {
		info.TTL = time.Duration(r.ttl) * time.Second
	}
	return info
}

// The lookups below return, with an error, an empty result carrying the
// querier's Info.

func lookupMX(ctx context.Context, q querier, domain string) (MXResult, error) {
	r, info, err := q.lookup(ctx, normalize(domain), mdns.TypeMX)
	if err != nil {
		return MXResult{Info: info}, err
	}
	return MXResult{Records: r.mx, NullMX: r.nullMX, Secure: r.secure, Info: info}, nil
}

func lookupAddr(ctx context.Context, q querier, host string, qtype uint16) (AddrResult, error) {
	r, info, err := q.lookup(ctx, normalize(host), qtype)
	if err != nil {
		return AddrResult{Info: info}, err
	}
	return AddrResult{Addrs: r.addrs, Canonical: r.canonical, Secure: r.secure, Info: info}, nil
}

func lookupTLSA(ctx context.Context, q querier, name string) (TLSAResult, error) {
	r, info, err := q.lookup(ctx, normalize(name), mdns.TypeTLSA)
	if err != nil {
		return TLSAResult{Info: info}, err
	}
	return TLSAResult{Records: r.tlsa, Secure: r.secure, Info: info}, nil
}

func lookupTXT(ctx context.Context, q querier, name string) (TXTResult, error) {
	r, info, err := q.lookup(ctx, normalize(name), mdns.TypeTXT)
	if err != nil {
		return TXTResult{Info: info}, err
	}
	return TXTResult{Records: r.txt, Secure: r.secure, Info: info}, nil
}

func lookupPTR(ctx context.Context, q querier, ip netip.Addr) (PTRResult, error) {
	name, err := ReverseName(ip)
	if err != nil {
		return PTRResult{}, &Error{Kind: NotFound, Name: ip.String(), Type: "PTR", Err: err}
	}
	r, info, err := q.lookup(ctx, name, mdns.TypePTR)
	if err != nil {
		return PTRResult{Info: info}, err
	}
	return PTRResult{Names: r.ptr, Secure: r.secure, Info: info}, nil
}

// collector accumulates the records of one type into a response.
type collector struct {
	resp  response
	qtype uint16
	n     int
}

// add appends rr's data when it is of the collected type; it reports
// whether it was.
func (c *collector) add(rr mdns.RR) bool {
	switch v := rr.(type) {
	case *mdns.MX:
		if c.qtype != mdns.TypeMX {
			return false
		}
		c.n++
		host := normalize(v.Mx)
		if host == "." || host == "" {
			c.resp.nullMX = true
			return true
		}
		c.resp.mx = append(c.resp.mx, MX{Host: host, Preference: v.Preference})
	case *mdns.A:
		if c.qtype != mdns.TypeA {
			return false
		}
		a, ok := netip.AddrFromSlice(v.A.To4())
		if !ok {
			return false
		}
		c.n++
		c.resp.addrs = append(c.resp.addrs, a)
	case *mdns.AAAA:
		if c.qtype != mdns.TypeAAAA {
			return false
		}
		a, ok := netip.AddrFromSlice(v.AAAA.To16())
		if !ok {
			return false
		}
		c.n++
		c.resp.addrs = append(c.resp.addrs, a)
	case *mdns.TLSA:
		if c.qtype != mdns.TypeTLSA {
			return false
		}
		data, err := decodeHex(v.Certificate)
		if err != nil {
			return false
		}
		c.n++
		c.resp.tlsa = append(c.resp.tlsa, TLSA{Usage: v.Usage, Selector: v.Selector, MatchingType: v.MatchingType, Data: data})
	case *mdns.TXT:
		if c.qtype != mdns.TypeTXT {
			return false
		}
		c.n++
		c.resp.txt = append(c.resp.txt, strings.Join(v.Txt, ""))
	case *mdns.PTR:
		if c.qtype != mdns.TypePTR {
			return false
		}
		c.n++
		c.resp.ptr = append(c.resp.ptr, normalize(v.Ptr))
	default:
		return false
	}
	return true
}

// finish applies RFC 7505: a null MX is only the single "." record. A "."
// mixed with real exchangers is dropped (it cannot receive mail), and the
// real ones are kept.
func (c *collector) finish() {
	if c.resp.nullMX && len(c.resp.mx) > 0 {
		c.resp.nullMX = false
	}
}
