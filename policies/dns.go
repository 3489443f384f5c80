package policies

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// dnsFields declares the dns: block. It is literal-only: the resolver
// exists before any message does.
func dnsFields() []Field {
	return []Field{
		literalField("dns.resolver", resolverKind, func(s *Set) *string { return &s.DNS.Resolver }, "system",
			"Where DNS answers come from: resolv.conf, the servers below, a well-known public resolver (over TLS), or a zone file (offline dry-runs and tests)."),
		literalField("dns.servers", serversKind, func(s *Set) *[]string { return &s.DNS.Servers }, nil,
			"Upstream servers for resolver: custom."),
		literalField("dns.zone-file", pathKind, func(s *Set) *string { return &s.DNS.ZoneFile }, "",
			"RFC 1035 zone file answering for resolver: static (relative to the policy's directory).", storeZoneFile),
		literalField("dns.secure", dnsBool, func(s *Set) *bool { return &s.DNS.Secure }, false,
			"resolver: static only: mark the zone file's answers DNSSEC-authenticated."),
		literalField("dns.mta-sts-policies", pathKind, func(s *Set) *string { return &s.DNS.MTASTSPolicies }, "",
			"resolver: static only: a directory of MTA-STS policy files, DOMAIN.txt, each the body https://mta-sts.DOMAIN/.well-known/mta-sts.txt would serve (relative to the policy's directory). With a static resolver nothing is fetched: a domain whose _mta-sts record the zone publishes gets its policy from here, or none.", storeSTSPolicies),
		literalField("dns.timeout", dnsDuration, func(s *Set) *time.Duration { return &s.DNS.Timeout }, 5*time.Second,
			"Timeout of one query to one server. With resolver: system and no timeout here, resolv.conf's options timeout applies.", storeTimeout),
		literalField("dns.attempts", intKind(1, 10), func(s *Set) *int { return &s.DNS.Attempts }, 2,
			"Tries per query (rotating through the servers). With resolver: system and no attempts here, resolv.conf's options attempts applies.", storeAttempts),
		literalField("dns.concurrency", intKind(1, 1000), func(s *Set) *int { return &s.DNS.Concurrency }, 8,
			"Queries in flight to the upstreams."),
		literalField("dns.budget", dnsDuration, func(s *Set) *time.Duration { return &s.DNS.Budget }, 30*time.Second,
			"Time all the DNS lookups of one message may take together (MTA-STS record, MX, addresses and TLSA of every host, asked concurrently). When it runs out, what is left to look up fails as a temporary DNS error: the hosts concerned are skipped, and a group without a host is deferred.", storeBudget),
		literalField("dns.tcp-on-error", dnsBool, func(s *Set) *bool { return &s.DNS.TCPOnError }, true,
			"Retry over TCP on truncation or a UDP error."),
		literalField("dns.edns", dnsBool, func(s *Set) *bool { return &s.DNS.EDNS }, true,
			"Send EDNS0 (1232-byte buffer)."),
		literalField("dns.dnssec", dnsBool, func(s *Set) *bool { return &s.DNS.DNSSEC }, true,
			"Set the DO bit; the AD bit is trusted only from loopback or TLS upstreams."),
		literalField("dns.cache.size", intKind(1, 10000000), func(s *Set) *int { return &s.DNS.Cache.Size }, 10000,
			"Cache entries (LRU)."),
		literalField("dns.cache.min-ttl", dnsDuration, func(s *Set) *time.Duration { return &s.DNS.Cache.MinTTL }, 0,
			"Lower clamp of cached TTLs."),
		literalField("dns.cache.max-ttl", dnsDuration, func(s *Set) *time.Duration { return &s.DNS.Cache.MaxTTL }, 24*time.Hour,
			"Upper clamp of cached TTLs."),
		literalField("dns.cache.negative-ttl", dnsDuration, func(s *Set) *time.Duration { return &s.DNS.Cache.NegativeTTL }, 5*time.Minute,
			"How long NXDOMAIN/NODATA answers are cached (at most the SOA minimum); 0s: not cached."),
	}
}

// resolvers are the values of dns.resolver.
var resolvers = []string{"system", "custom", "cloudflare", "google", "quad9", "static"}

// The kinds of the dns: block. docs/policy.md names the types of the
// block more briefly than those of the Values ("bool", "duration").
var (
	resolverKind = enumKind(resolvers...).named(strings.Join(resolvers, " | "))
	serversKind  = stringListKind("list of udp://IP:PORT, tcp://IP:PORT, tls://IP:PORT#NAME", checkServer)
	dnsBool      = boolKind.named("bool")
	dnsDuration  = durationKind.named("duration")
)

// pathKind is a file path as written (storeZoneFile resolves it from the
// policy's directory); empty means not set. It is literal-only.
var pathKind = &kind[string]{
	name: "path",
	parse: func(n *yaml.Node) (string, error) {
		if n.Kind != yaml.ScalarNode {
			return "", errors.New("expected a file path")
		}
		return n.Value, nil
	},
	format: strNode,
}

// storeZoneFile resolves the zone file from the policy's directory and
// remembers where the policy names it, for the errors found when the
// zone is read.
func storeZoneFile(d *decoder, s *Set, n *yaml.Node, path string) error {
	if path != "" {
		s.DNS.ZoneFile, s.DNS.ZoneFileAt = d.path(path), d.pos(n)
	}
	return nil
}

// storeSTSPolicies resolves the policy-files directory from the policy's
// directory.
func storeSTSPolicies(d *decoder, s *Set, _ *yaml.Node, path string) error {
	if path != "" {
		s.DNS.MTASTSPolicies = d.path(path)
	}
	return nil
}

// storeSTSCache resolves the MTA-STS cache directory from the policy's
// directory.
func storeSTSCache(d *decoder, s *Set, _ *yaml.Node, path string) error {
	if path != "" {
		s.TLS.MTASTSCache = d.path(path)
	}
	return nil
}

// storeTimeout and storeAttempts also record that the policy wrote the
// setting: with resolver: system, unset ones come from resolv.conf's
// options.
func storeTimeout(_ *decoder, s *Set, _ *yaml.Node, v time.Duration) error {
	s.DNS.Timeout, s.DNS.TimeoutSet = v, true
	return nil
}

func storeAttempts(_ *decoder, s *Set, _ *yaml.Node, v int) error {
	s.DNS.Attempts, s.DNS.AttemptsSet = v, true
	return nil
}

func storeBudget(_ *decoder, s *Set, _ *yaml.Node, v time.Duration) error {
	if v <= 0 {
		return errors.New("the DNS budget must be more than 0s")
	}
	s.DNS.Budget = v
	return nil
}

// checkDNS validates the dns: block as a whole.
func (d *decoder) checkDNS(s *Set, root *yaml.Node) {
	c := &s.DNS
	at := d.literalAt["dns.resolver"]
	if at == nil {
		at = root
	}
	switch c.Resolver {
	case "custom":
		if len(c.Servers) == 0 {
			d.errorf(at, "dns.servers", "missing: resolver: custom needs at least one server (udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME)")
		}
	case "static":
		if c.ZoneFile == "" {
			d.errorf(at, "dns.zone-file", "missing: resolver: static answers from a zone file: add zone-file: PATH")
		}
		// The zone itself is read and checked where the resolver is
		// built (engine.New, which postern check runs too).
	}
	if c.Resolver != "static" {
		if n := d.literalAt["dns.zone-file"]; n != nil && c.ZoneFile != "" {
			d.warnf(n, "dns.zone-file", "only used with resolver: static (the resolver is %s)", c.Resolver)
		}
		if n := d.literalAt["dns.secure"]; n != nil && c.Secure {
			d.warnf(n, "dns.secure", "only used with resolver: static (the resolver is %s)", c.Resolver)
		}
		if n := d.literalAt["dns.mta-sts-policies"]; n != nil && c.MTASTSPolicies != "" {
			d.warnf(n, "dns.mta-sts-policies", "only used with resolver: static (the resolver is %s): policies are fetched over HTTPS", c.Resolver)
		}
	}
	if n := d.literalAt["dns.servers"]; n != nil && c.Resolver != "custom" && len(c.Servers) > 0 {
		d.warnf(n, "dns.servers", "only used with resolver: custom (the resolver is %s)", c.Resolver)
	}
	if c.Cache.MinTTL > c.Cache.MaxTTL {
		d.errorf(at, "dns.cache.min-ttl", "min-ttl (%s) is larger than max-ttl (%s)", FormatDuration(c.Cache.MinTTL), FormatDuration(c.Cache.MaxTTL))
	}
}

// checkServer validates udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME.
func checkServer(s string) error {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "udp" && scheme != "tcp" && scheme != "tls") {
		return fmt.Errorf("%q is not a DNS server: write udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME", s)
	}
	hostport, name, hasName := strings.Cut(rest, "#")
	if scheme == "tls" && (!hasName || !expr.IsHostname(name)) {
		return fmt.Errorf("%q: a DNS-over-TLS server needs the name on its certificate: tls://IP:PORT#NAME", s)
	}
	if scheme != "tls" && hasName {
		return fmt.Errorf("%q: #NAME is only for tls:// servers", s)
	}
	if _, err := netip.ParseAddrPort(hostport); err != nil {
		return fmt.Errorf("%q is not a DNS server: %s is not IP:PORT (IPv6 as [::1]:53)", s, hostport)
	}
	return nil
}
