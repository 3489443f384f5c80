package dns

import (
	"context"
	"crypto/tls"
	"fmt"
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
