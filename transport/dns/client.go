package dns

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	ednsBufSize = 1232 // RFC 6891 buffer; the DNS Flag Day 2020 value, avoids IP fragmentation
)

// Client asks upstream resolvers over the network, without caching. Build
// it with [NewClient]; wrap it in a [Cache] (or use [New]) for production.
//
// For each question it tries the servers in order (starting one further
// along on every question when resolv.conf says "rotate"), moving to the
// next server when one fails, for Attempts rounds. NOERROR and NXDOMAIN
// end the search; SERVFAIL, REFUSED, other error codes, timeouts and
// network errors move on. A SERVFAIL is checked for a DNSSEC failure:
// an Extended DNS Error code 6-12 in the answer, or a repeat of the
// question with the CD bit set that gets an answer while the plain
// question still fails, makes the result [ErrBogus] at once (a
// validation failure is not cured by asking another server).
//
// CNAME chains are followed (8 hops at most), within an answer and by
// asking again for the target when an answer ends in a CNAME. An NXDOMAIN
// answer is NotFound even when records of the asked type come with it:
// only its CNAMEs are followed, to the name that does not exist (RFC 6604).
type Client struct {
	servers    []upstreamServer
	attempts   int
	rotate     bool
	tcpOnError bool
	edns       bool
	dnssec     bool
	sem        chan struct{}
	next       atomic.Uint32
	udp, tcp   *mdns.Client
}

type upstreamServer struct {
	Server
	name string       // Server.String(), precomputed
	addr string       // host:port to dial
	tls  *mdns.Client // for Proto "tls"
}

// NewClient builds a network resolver from cfg (KindStatic is refused:
// use [NewStatic]). For KindSystem it reads resolv.conf now. It contacts
// no server.
func NewClient(cfg Config) (*Client, error) {
	kind := cfg.Kind
	if kind == "" {
		kind = KindSystem
	}
	var servers []Server
	timeout, attempts, rotate := cfg.Timeout, cfg.Attempts, false
	switch kind {
	case KindSystem:
		if len(cfg.Servers) > 0 {
			return nil, fmt.Errorf("dns: resolver system takes its servers from resolv.conf; use resolver custom to list servers")
		}
		path := cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		rc, err := readResolvConf(path)
		if err != nil {
			return nil, err
		}
		servers, rotate = rc.servers, rc.rotate
		if timeout == 0 {
			timeout = rc.timeout
		}
		if attempts == 0 {
			attempts = rc.attempts
		}
	case KindCustom:
		if len(cfg.Servers) == 0 {
			return nil, fmt.Errorf("dns: resolver custom needs at least one server")
		}
		for _, s := range cfg.Servers {
			srv, err := ParseServer(s)
			if err != nil {
				return nil, err
			}
			servers = append(servers, srv)
		}
	case KindCloudflare, KindGoogle, KindQuad9:
		if len(cfg.Servers) > 0 {
			return nil, fmt.Errorf("dns: resolver %s has fixed servers; use resolver custom to list servers", kind)
		}
		for _, s := range wellKnown[kind] {
			srv, err := ParseServer(s)
			if err != nil {
				return nil, err
			}
			servers = append(servers, srv)
		}
	case KindStatic:
		return nil, fmt.Errorf("dns: resolver static has no network client; use NewStatic or New")
	default:
		return nil, fmt.Errorf("dns: unknown resolver %q (want system, custom, cloudflare, google, quad9 or static)", cfg.Kind)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	c := &Client{
		attempts:   attempts,
		rotate:     rotate,
		tcpOnError: cfg.TCPOnError,
		edns:       cfg.EDNS,
		dnssec:     cfg.DNSSEC,
		sem:        make(chan struct{}, conc),
		udp:        &mdns.Client{Net: "udp", UDPSize: ednsBufSize, Timeout: timeout},
		tcp:        &mdns.Client{Net: "tcp", Timeout: timeout},
	}
	for _, s := range servers {
		us := upstreamServer{Server: s, name: s.String(), addr: s.Addr.String()}
		if s.Proto == "tls" {
			name := s.ServerName
			if name == "" {
				name = s.Addr.Addr().String()
			}
			us.tls = &mdns.Client{Net: "tcp-tls", Timeout: timeout, TLSConfig: &tls.Config{
				ServerName: name,
				RootCAs:    cfg.RootCAs,
				MinVersion: tls.VersionTLS12,
			}}
		}
		c.servers = append(c.servers, us)
	}
	return c, nil
}

// Servers returns the upstreams in order of preference.
func (c *Client) Servers() []Server {
	out := make([]Server, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.Server
	}
	return out
}

// LookupMX implements [Resolver].
func (c *Client) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	return lookupMX(ctx, c, domain)
}

// LookupA implements [Resolver].
func (c *Client) LookupA(ctx context.Context, host string) (AddrResult, error) {
	return lookupAddr(ctx, c, host, mdns.TypeA)
}

// LookupAAAA implements [Resolver].
func (c *Client) LookupAAAA(ctx context.Context, host string) (AddrResult, error) {
	return lookupAddr(ctx, c, host, mdns.TypeAAAA)
}

// LookupTLSA implements [Resolver].
func (c *Client) LookupTLSA(ctx context.Context, name string) (TLSAResult, error) {
	return lookupTLSA(ctx, c, name)
}

// LookupTXT implements [Resolver].
func (c *Client) LookupTXT(ctx context.Context, name string) (TXTResult, error) {
	return lookupTXT(ctx, c, name)
}

func (c *Client) lookup(ctx context.Context, name string, qtype uint16) (*response, Info, error) {
	r, err := c.query(ctx, name, qtype)
	if err != nil {
		return nil, negativeInfo(r), err
	}
	return r, Info{TTL: time.Duration(r.ttl) * time.Second, Server: r.server}, nil
}

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

// exchange asks the servers in turn until one gives a usable answer
// (NOERROR or NXDOMAIN). The returned error has Kind and Server set.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*mdns.Msg, *upstreamServer, *Error) {
	n := len(c.servers)
	start := 0
	if c.rotate && n > 1 {
		start = int((c.next.Add(1) - 1) % uint32(n))
	}
	var last *Error
	for a := 0; a < c.attempts; a++ {
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				srv := ""
				if last != nil {
					srv = last.Server
				}
				return nil, nil, &Error{Kind: Temporary, Server: srv, Err: err}
			}
			srv := &c.servers[(start+i)%n]
			msg, err := c.ask(ctx, srv, name, qtype, false)
			if err != nil {
				last = &Error{Kind: Temporary, Server: srv.name, Err: err}
				continue
			}
			switch msg.Rcode {
			case mdns.RcodeSuccess, mdns.RcodeNameError:
				return msg, srv, nil
			case mdns.RcodeServerFailure:
				if ede := bogusEDE(msg); ede != nil {
					return nil, srv, &Error{Kind: Bogus, Server: srv.name,
						Err: fmt.Errorf("SERVFAIL with extended error %d (%s)%s", ede.InfoCode, mdns.ExtendedErrorCodeToString[ede.InfoCode], extraText(ede))}
				}
				// A validating resolver answers SERVFAIL for bogus data; with
				// CD set it returns the data unchecked. Data that comes back
				// with CD while the plain question still fails shows a
				// validation failure. (The plain question is repeated so a
				// SERVFAIL that was only transient is not taken for bogus.)
				if cd, err := c.ask(ctx, srv, name, qtype, true); err == nil &&
					(cd.Rcode == mdns.RcodeSuccess || cd.Rcode == mdns.RcodeNameError) {
					again, err := c.ask(ctx, srv, name, qtype, false)
					if err == nil && (again.Rcode == mdns.RcodeSuccess || again.Rcode == mdns.RcodeNameError) {
						return again, srv, nil
					}
					if err == nil && again.Rcode == mdns.RcodeServerFailure {
						return nil, srv, &Error{Kind: Bogus, Server: srv.name,
							Err: errors.New("SERVFAIL, but the answer comes back with checking disabled (DNSSEC validation failed)")}
					}
				}
				last = &Error{Kind: Temporary, Server: srv.name, Err: errors.New("SERVFAIL")}
			default:
				last = &Error{Kind: Temporary, Server: srv.name, Err: errors.New(rcodeName(msg.Rcode))}
			}
		}
	}
	if last == nil {
		last = &Error{Kind: Temporary, Err: errors.New("no servers")}
	}
	return nil, nil, last
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

func extraText(ede *mdns.EDNS0_EDE) string {
	if ede.ExtraText == "" {
		return ""
	}
	return ": " + ede.ExtraText
}

// bogusEDE returns an Extended DNS Error (RFC 8914) of the DNSSEC family
// (6 DNSSEC Bogus ... 12 NSEC Missing) in m, if any.
func bogusEDE(m *mdns.Msg) *mdns.EDNS0_EDE {
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if ede, ok := o.(*mdns.EDNS0_EDE); ok &&
			ede.InfoCode >= mdns.ExtendedErrorCodeDNSBogus && ede.InfoCode <= mdns.ExtendedErrorCodeNSECMissing {
			return ede
		}
	}
	return nil
}

// ask sends one question to one server: over UDP first for "udp" servers,
// over TCP or TLS otherwise. With TCPOnError a UDP question is repeated
// over TCP when the answer is truncated or the UDP exchange fails with an
// error that is not a timeout (port unreachable, a reply that cannot be
// parsed): a server that does not answer over UDP is unlikely to answer
// over TCP, and waiting for it twice would double what it costs. It
// checks that the reply answers the question.
func (c *Client) ask(ctx context.Context, srv *upstreamServer, name string, qtype uint16, cd bool) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.CheckingDisabled = cd
	if c.dnssec {
		m.AuthenticatedData = true
	}
	if c.edns {
		m.SetEdns0(ednsBufSize, c.dnssec)
	}
	var (
		r   *mdns.Msg
		err error
	)
	switch srv.Proto {
	case "tls":
		r, err = c.roundTrip(ctx, srv.tls, srv.addr, m)
	case "tcp":
		r, err = c.roundTrip(ctx, c.tcp, srv.addr, m)
	default:
		r, err = c.roundTrip(ctx, c.udp, srv.addr, m)
		switch {
		case err != nil && c.tcpOnError && ctx.Err() == nil && !isTimeout(err):
			r, err = c.roundTrip(ctx, c.tcp, srv.addr, m)
			if err != nil {
				err = fmt.Errorf("over UDP and then TCP: %w", err)
			}
		case err == nil && r.Truncated && c.tcpOnError:
			r, err = c.roundTrip(ctx, c.tcp, srv.addr, m)
		case err == nil && r.Truncated:
			return nil, errors.New("truncated answer over UDP (TCP fallback is off)")
		}
	}
	if err != nil {
		return nil, err
	}
	if !r.Response || r.Opcode != mdns.OpcodeQuery {
		return nil, errors.New("malformed reply: not a query response")
	}
	if len(r.Question) > 0 {
		q := r.Question[0]
		if len(r.Question) != 1 || q.Qtype != qtype || !strings.EqualFold(q.Name, name) {
			return nil, fmt.Errorf("reply is for another question (%s %s)", q.Name, typeName(q.Qtype))
		}
	} else if r.Rcode == mdns.RcodeSuccess || r.Rcode == mdns.RcodeNameError {
		return nil, errors.New("malformed reply: no question section")
	}
	return r, nil
}

// isTimeout reports whether err is an exchange that ran out of time: a
// network timeout, or the per-exchange deadline.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// roundTrip does one exchange within the per-exchange timeout and the
// concurrency limit, abandoning it when ctx is done.
func (c *Client) roundTrip(ctx context.Context, mc *mdns.Client, addr string, m *mdns.Msg) (*mdns.Msg, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	ctx, cancel := context.WithTimeout(ctx, mc.Timeout)
	defer cancel()
	conn, err := mc.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r, _, err := mc.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, err
	}
	return r, nil
}
