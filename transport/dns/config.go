package dns

import (
	"crypto/x509"
	"fmt"
	"time"
)

// Kind selects where answers come from; the values are the words of the
// policy's `dns.resolver` setting.
type Kind string

// The resolver kinds.
const (
	// KindSystem asks the name servers of resolv.conf (Config.ResolvConf,
	// default /etc/resolv.conf), honouring its timeout, attempts and
	// rotate options for the Config fields left zero.
	KindSystem Kind = "system"
	// KindCustom asks Config.Servers.
	KindCustom Kind = "custom"
	// KindCloudflare asks 1.1.1.1 and 1.0.0.1 over DNS over TLS
	// (certificate name cloudflare-dns.com).
	KindCloudflare Kind = "cloudflare"
	// KindGoogle asks 8.8.8.8 and 8.8.4.4 over DNS over TLS (dns.google).
	KindGoogle Kind = "google"
	// KindQuad9 asks 9.9.9.9 and 149.112.112.112 over DNS over TLS
	// (dns.quad9.net).
	KindQuad9 Kind = "quad9"
	// KindStatic answers from Config.ZoneFile; see [Static].
	KindStatic Kind = "static"
)

// wellKnown lists the public resolvers. They are used over DNS over TLS so
// that their AD bit can be trusted (see trustAD) and the answers cannot
// be altered on the way.
var wellKnown = map[Kind][]string{
	KindCloudflare: {"tls://1.1.1.1:853#cloudflare-dns.com", "tls://1.0.0.1:853#cloudflare-dns.com"},
	KindGoogle:     {"tls://8.8.8.8:853#dns.google", "tls://8.8.4.4:853#dns.google"},
	KindQuad9:      {"tls://9.9.9.9:853#dns.quad9.net", "tls://149.112.112.112:853#dns.quad9.net"},
}

// Client defaults, used for zero fields of [Config]. They are the
// defaults of the policy format too (the engine checks that they agree).
const (
	DefaultTimeout     = 5 * time.Second
	DefaultAttempts    = 2
	DefaultConcurrency = 8
)

// Config describes a resolver; it mirrors the `dns:` block of a policy.
// The zero value is usable: the system resolver, without EDNS, DNSSEC or
// TCP fallback, and a default cache. [DefaultConfig] returns the policy
// defaults.
type Config struct {
	// Kind selects the upstreams; "" means KindSystem.
	Kind Kind
	// Servers are the upstreams of KindCustom, in order of preference, in
	// the forms [ParseServer] reads ("udp://IP:PORT", "tcp://IP:PORT",
	// "tls://IP:PORT#server-name", or a bare IP). Other kinds reject a
	// non-empty list.
	Servers []string
	// ResolvConf is the resolv.conf read by KindSystem; "" means
	// /etc/resolv.conf.
	ResolvConf string
	// ZoneFile is the RFC 1035 zone file of KindStatic.
	ZoneFile string
	// ZoneFileMaxSize caps the size of ZoneFile in bytes; a larger file is
	// refused. Zero means [DefaultZoneFileMaxSize].
	ZoneFileMaxSize int64
	// Secure marks the answers of KindStatic as DNSSEC-authenticated.
	Secure bool

	// Timeout bounds one exchange with one server. Zero means the
	// resolv.conf value for KindSystem (glibc default 5s), else
	// DefaultTimeout.
	Timeout time.Duration
	// Attempts is how many times the whole server list is tried. Zero
	// means the resolv.conf value for KindSystem (glibc default 2), else
	// DefaultAttempts.
	Attempts int
	// Concurrency caps the exchanges in flight to upstreams at once; the
	// rest wait (respecting their context). Zero means
	// DefaultConcurrency.
	Concurrency int
	// TCPOnError repeats a UDP question over TCP when the UDP answer is
	// truncated or the UDP exchange fails with an error other than a
	// timeout (such as port unreachable, or a reply that cannot be
	// parsed). A UDP timeout is not repeated over TCP: the next server is
	// asked instead, so a dead server costs one Timeout, not two. Without
	// it a truncated answer is a Temporary error.
	TCPOnError bool
	// EDNS adds an EDNS0 OPT record (RFC 6891) advertising a 1232-byte
	// UDP buffer; without it answers over UDP are limited to 512 bytes.
	EDNS bool
	// DNSSEC asks for DNSSEC (the DO bit with EDNS, and the AD bit in the
	// query, RFC 6840 section 5.7) and lets answers be marked Secure when
	// the upstream set AD and is trusted: loopback or DNS over TLS.
	// Without it, Secure is always false.
	DNSSEC bool
	// RootCAs verifies DNS-over-TLS servers; nil means the system roots.
	RootCAs *x509.CertPool

	// Cache configures the cache [New] puts in front of the network
	// resolver (not used for KindStatic).
	Cache CacheConfig
}

// DefaultConfig returns the defaults of the policy format: the system
// resolver with TCP fallback, EDNS0 and DNSSEC, and the default cache.
func DefaultConfig() Config {
	return Config{Kind: KindSystem, TCPOnError: true, EDNS: true, DNSSEC: true}
}

// New builds the resolver a Config describes: for KindStatic a [*Static];
// for the other kinds a [*Client] wrapped in a [*Cache] (so the dynamic
// type is *Cache, whose Stats and Close the caller may use). It contacts
// no server.
func New(cfg Config) (Resolver, error) {
	if cfg.Kind == KindStatic {
		if cfg.ZoneFile == "" {
			return nil, fmt.Errorf("dns: resolver static needs a zone file")
		}
		return NewStatic(cfg.ZoneFile, cfg.Secure, cfg.ZoneFileMaxSize)
	}
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return NewCache(c, cfg.Cache), nil
}
