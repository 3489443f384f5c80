package engine

import (
	"testing"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// TestResolverDefaultsAgree: the policy format and the dns package each
// have defaults (the dns package's are for its zero values, when it is
// used on its own). They must be the same numbers: a policy that writes
// nothing gets what dns would choose.
func TestResolverDefaultsAgree(t *testing.T) {
	set := policies.Defaults(policies.Options{Hostname: "mta.test"})
	resolver := set.DNS.Resolver
	set.DNS.Resolver = "custom" // the system resolver leaves timeout and attempts to resolv.conf
	got := resolverConfig(set)
	def := dns.DefaultConfig()
	for _, c := range []struct {
		setting   string
		got, want any
	}{
		{"dns.timeout", got.Timeout, dns.DefaultTimeout},
		{"dns.attempts", got.Attempts, dns.DefaultAttempts},
		{"dns.concurrency", got.Concurrency, dns.DefaultConcurrency},
		{"dns.tcp-on-error", got.TCPOnError, def.TCPOnError},
		{"dns.edns", got.EDNS, def.EDNS},
		{"dns.dnssec", got.DNSSEC, def.DNSSEC},
		{"dns.cache.size", got.Cache.Size, dns.DefaultCacheSize},
		{"dns.cache.min-ttl", got.Cache.MinTTL, time.Duration(0)},
		{"dns.cache.max-ttl", got.Cache.MaxTTL, dns.DefaultMaxTTL},
		{"dns.cache.negative-ttl", got.Cache.NegativeTTL, dns.DefaultNegativeTTL},
	} {
		if c.got != c.want {
			t.Errorf("%s defaults to %v in the policy format, %v in the dns package", c.setting, c.got, c.want)
		}
	}
	if dns.Kind(resolver) != def.Kind {
		t.Errorf("dns.resolver defaults to %s in the policy format, %s in the dns package", resolver, def.Kind)
	}
}

// TestResolverConfigTranslations: with resolver: system, a timeout or
// attempts the policy does not write is left to resolv.conf; one it
// writes is kept; negative-ttl 0s means no negative caching.
func TestResolverConfigTranslations(t *testing.T) {
	load := func(dnsBlock string) dns.Config {
		t.Helper()
		set, err := policies.Parse("p.yaml", []byte("version: 1\ndns:\n"+dnsBlock), policies.Options{Hostname: "mta.test"})
		if err != nil {
			t.Fatal(err)
		}
		return resolverConfig(set)
	}
	if c := load("  resolver: system\n"); c.Timeout != 0 || c.Attempts != 0 {
		t.Errorf("system, nothing written: timeout %v attempts %d, want both zero (resolv.conf's)", c.Timeout, c.Attempts)
	}
	if c := load("  resolver: system\n  timeout: 3s\n  attempts: 4\n"); c.Timeout != 3*time.Second || c.Attempts != 4 {
		t.Errorf("system, written: timeout %v attempts %d, want 3s and 4", c.Timeout, c.Attempts)
	}
	if c := load("  cache:\n    negative-ttl: 0s\n"); c.Cache.NegativeTTL >= 0 {
		t.Errorf("negative-ttl 0s gives NegativeTTL %v, want a negative value (not cached)", c.Cache.NegativeTTL)
	}
	if c := load("  cache:\n    negative-ttl: 30s\n"); c.Cache.NegativeTTL != 30*time.Second {
		t.Errorf("negative-ttl 30s gives NegativeTTL %v", c.Cache.NegativeTTL)
	}
}
