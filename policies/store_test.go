package policies

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// limits.store: memory or a Redis URL (redis://, rediss://, several hosts
// for a Cluster), with the password only from a secret; every misuse is a
// load error that says what to write instead, and never shows a password.
func TestLimitsStore(t *testing.T) {
	t.Setenv("REDIS_PW", "hunter2-not-shown")
	for _, tt := range []struct {
		name, store string
		want        string // error substring; "" for a policy that loads
		check       func(*testing.T, *Set)
	}{
		{name: "memory", store: "memory", check: func(t *testing.T, s *Set) {
			if s.Limits.Store != "memory" || s.Limits.OnStoreError != "defer" {
				t.Errorf("store %q, on-store-error %q", s.Limits.Store, s.Limits.OnStoreError)
			}
		}},
		{name: "redis URL", store: "redis://127.0.0.1:6379/2"},
		{name: "rediss URL", store: "rediss://redis.internal:6380/0"},
		{name: "cluster, several hosts", store: "redis://10.0.0.1:7000,10.0.0.2:7000"},
		{name: "mapping with a password from env, cluster", store: "\n    url: redis://127.0.0.1:7000\n    password: {env: REDIS_PW}\n    cluster: true",
			check: func(t *testing.T, s *Set) {
				if s.Limits.StorePassword.Source() != "<from env REDIS_PW>" || !s.Limits.StoreCluster {
					t.Errorf("password %s cluster %v", s.Limits.StorePassword, s.Limits.StoreCluster)
				}
				out, err := Marshal(s)
				if err != nil || strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "<from env REDIS_PW>") {
					t.Errorf("printed policy:\n%s (%v)", out, err)
				}
			}},
		{name: "password in the URL", store: "redis://:hunter2@127.0.0.1:6379/0", want: "write store: {url: redis://127.0.0.1:6379/0, password: {env: NAME}}"},
		{name: "lease-ttl", store: "\n    url: redis://127.0.0.1:6379\n    lease-ttl: 10s", check: func(t *testing.T, s *Set) {
			if s.Limits.StoreLeaseTTL != 10*time.Second {
				t.Errorf("lease-ttl %v", s.Limits.StoreLeaseTTL)
			}
		}},
		{name: "lease-ttl too short", store: "\n    url: redis://127.0.0.1:6379\n    lease-ttl: 1s", want: "limits.store.lease-ttl: 1s is out of range: between 3s and 1h"},
		{name: "user and password in the URL", store: "redis://bob:hunter2@127.0.0.1:6379/0", want: "write store: {url: redis://bob@127.0.0.1:6379/0, password: {env: NAME}}"},
		{name: "literal password", store: "\n    url: redis://127.0.0.1:6379\n    password: hunter2", want: "limits.store.password: the Redis password is never written in the policy"},
		{name: "mapping without url", store: "\n    password: {env: REDIS_PW}", want: "limits.store.url: missing"},
		{name: "other scheme", store: "memcached://127.0.0.1:11211", want: "is not memory, redis://HOST:PORT/DB or rediss://"},
		{name: "no port", store: "redis://127.0.0.1/0", want: `"127.0.0.1" is not HOST:PORT`},
		{name: "database not a number", store: "redis://127.0.0.1:6379/zero", want: "the Redis database must be a number"},
		{name: "query", store: "redis://127.0.0.1:6379/0?cluster=true", want: "no query or fragment is read"},
		{name: "unknown key", store: "\n    url: redis://127.0.0.1:6379\n    tls: true", want: `unknown key "tls" in limits.store`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  store: "+tt.store+"\n"), Options{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("does not load: %v", err)
				}
				if tt.check != nil {
					tt.check(t, set)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	if _, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  on-store-error: ignore\n"), Options{}); err == nil || !strings.Contains(err.Error(), "expected defer or allow") {
		t.Errorf("on-store-error ignore: %v", err)
	}
	if s, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  on-store-error: allow\n"), Options{}); err != nil || s.Limits.OnStoreError != "allow" {
		t.Errorf("on-store-error allow: %v %v", s, err)
	}
}

// Throttle keys site and meta.NAME, and limits.sites: what loads, and what
// check explains.
func TestSiteAndMetaKeys(t *testing.T) {
	ok := "version: 1\nlimits:\n  sites:\n    google: [\"*.google.com\", aspmx.l.google.com.]\n  throttles:\n" +
		"    - name: p\n      match: site == \"google\" && route == \"mx\"\n      key: [site, meta.tenant]\n      concurrency: 5\n"
	s, err := Parse("p.yaml", []byte(ok), Options{})
	if err != nil {
		t.Fatal(err)
	}
	th := s.Limits.Throttles[0]
	if !th.AfterMX || th.Phase.String() != "recipient" || !s.Limits.NeedSite || s.Limits.Sites[0].Patterns[1] != "aspmx.l.google.com" {
		t.Errorf("throttle %+v, sites %+v", th, s.Limits.Sites)
	}
	if !s.Limits.Sites[0].Matches("alt1.aspmx.l.google.com") || s.Limits.Sites[0].Matches("google.com.evil.example") {
		t.Error("site patterns match wrongly")
	}
	if s, err := Parse("p.yaml", []byte("version: 1\n"), Options{}); err != nil || s.Limits.NeedSite {
		t.Errorf("a policy without site needs it: %v", err)
	}
	if s, err := Parse("p.yaml", []byte("version: 1\nhostname: {expr: 'site == \"x\" ? \"a.example\" : \"b.example\"'}\n"), Options{}); err != nil || !s.Limits.NeedSite {
		t.Errorf("an expression reading site does not make the engine work it out: %v", err)
	}
	for _, tt := range []struct{ policy, want string }{
		{"limits:\n  throttles:\n    - name: p\n      match: site == \"google\"\n      key: [rcpt_domain]\n      rate: 1/1m\n",
			"add site to key to check it per group after the MX lookup"},
		{"limits:\n  throttles:\n    - name: p\n      match: mx == \"a\"\n      key: [site]\n      rate: 1/1m\n",
			"checked per group after the MX lookup because its key has site (add mx or remote_ip to key to check it per connection)"},
		{"limits:\n  throttles:\n    - name: p\n      key: [meta]\n      rate: 1/1m\n", `"meta" is not a throttle key`},
		{"limits:\n  throttles:\n    - name: p\n      key: [\"meta[tenant]\"]\n      rate: 1/1m\n", "a meta key is written meta.NAME"},
		{"limits:\n  sites:\n    google: [\"*.*.google.com\"]\n", "is not an MX host pattern"},
		{"limits:\n  sites:\n    google: [\"*\"]\n", "is not an MX host pattern"},
		{"limits:\n  sites: [google]\n", "expected a map of site name to MX host patterns"},
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+tt.policy), Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.policy, err, tt.want)
		}
	}
}

// Hints for people coming from Stalwart, and "did you mean" for enum
// values and expression names.
func TestHints(t *testing.T) {
	for _, tt := range []struct{ policy, want string }{
		{"routing:\n  route:\n    - if: ends_with(rcpt_domain, \".x\")\n      then: mx\n    - else: local\n", `unknown name ends_with: write x endsWith "suffix"`},
		{"routing:\n  route:\n    - if: rcpt_domain = \"x\"\n      then: mx\n    - else: local\n", "comparison is written =="},
		{"routing:\n  route:\n    - if: matches(\"a\", rcpt)\n      then: mx\n    - else: local\n", "there are no $1 captures"},
		{"routing:\n  route:\n    - if: rcpt_domian == \"x\"\n      then: mx\n    - else: local\n", "unknown name rcpt_domian: did you mean rcpt_domain?"},
		{"routing:\n  route:\n    - else: \"'mx'\"\n", `route "'mx'" is not defined: the quotes are part of the name here, write mx`},
		{"tls:\n  dane: optinal\n", `"optinal" is not one of disable, optional, require: did you mean "optional"?`},
		{"routing:\n  route:\n    - if: !is_local_domain(rcpt_domain)\n      then: mx\n    - else: local\n", "YAML reads !is_local_domain(rcpt_domain) as a tag, not as part of the expression: quote the expression ('!is_local_domain(rcpt_domain)'), or write not instead of !"},
		{"tls:\n\tstarttls: require\n", "YAML indents with spaces, never tabs, and this line has a tab"},
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+tt.policy), Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.policy, err, tt.want)
		}
	}
}

// Lints: a repeated condition never matches; an upper-case literal never
// equals a lower-cased variable. Both load, with a warning that says why.
func TestLints(t *testing.T) {
	for _, tt := range []struct{ policy, want string }{
		{"routing:\n  route:\n    - if: rcpt_domain == \"a.example\"\n      then: mx\n    - if: rcpt_domain  ==  \"a.example\"\n      then: local\n    - else: mx\n",
			"p.yaml:6:11: routing.route[1].if: warning: this rule can never match: the rule at line 4 has the same condition and comes first"},
		{"routing:\n  route:\n    - if: rcpt_domain == \"Example.COM\"\n      then: local\n    - else: mx\n",
			`rcpt_domain is always lower-case, so comparing it with "Example.COM" never matches: write "example.com"`},
		{"tls:\n  starttls:\n    - if: mx endsWith \".Outlook.com\" || sender_domain in [\"a.example\", \"B.example\"]\n      then: require\n",
			`mx is always lower-case, so comparing it with ".Outlook.com" never matches`},
		{"tls:\n  starttls:\n    - if: mx endsWith \".Outlook.com\" || sender_domain in [\"a.example\", \"B.example\"]\n      then: require\n",
			`sender_domain is always lower-case, so comparing it with "B.example" never matches`},
	} {
		s, err := Parse("p.yaml", []byte("version: 1\n"+tt.policy), Options{})
		if err != nil {
			t.Fatalf("%q does not load: %v", tt.policy, err)
		}
		var all []string
		for _, w := range s.Warnings {
			all = append(all, w.String())
		}
		if !strings.Contains(strings.Join(all, "\n"), tt.want) {
			t.Errorf("%q: warnings %q, want %q", tt.policy, all, tt.want)
		}
	}
	// Lower-case literals and other variables: no warning.
	s, err := Parse("p.yaml", []byte("version: 1\nrouting:\n  route:\n    - if: rcpt_domain == \"example.com\" || rcpt == \"Bob@example.com\"\n      then: local\n    - else: mx\n"), Options{})
	if err != nil || len(s.Warnings) != 0 {
		t.Errorf("clean policy: %v %v", err, s.Warnings)
	}
}

// A relay that authenticates while its certificate may go unchecked is
// warned about; one on loopback (a local content filter) is not.
func TestLintCredentialsWithoutVerification(t *testing.T) {
	t.Setenv("RELAY_PW", "x")
	relay := func(addr, extra string) string {
		return "routing:\n  route: r\n  routes:\n    r:\n      type: relay\n      address: " + addr + "\n      port: 587\n" + extra +
			"      auth:\n        username: u\n        secret: {env: RELAY_PW}\n"
	}
	for _, tt := range []struct {
		policy string
		warn   bool
	}{
		{relay("smtp.example.net", "      allow-invalid-certs: true\n"), true},
		{relay("smtp.example.net", "") + "tls:\n  allow-invalid-certs: {expr: 'retry_num > 2'}\n", true},
		{relay("smtp.example.net", ""), false},
		{relay("127.0.0.1", "      allow-invalid-certs: true\n"), false},
	} {
		s, err := Parse("p.yaml", []byte("version: 1\n"+tt.policy), Options{})
		if err != nil {
			t.Fatalf("%q: %v", tt.policy, err)
		}
		got := false
		for _, w := range s.Warnings {
			got = got || strings.Contains(w.Message, "sends credentials but")
		}
		if got != tt.warn {
			t.Errorf("%q: warned %v, want %v (%v)", tt.policy, got, tt.warn, s.Warnings)
		}
	}
}

// Source addresses and EHLO names chosen without looking at the route
// reach a relay on loopback too: warned about; guarded rules, rules about
// hosts, and relays elsewhere are not.
func TestLintLoopbackRelay(t *testing.T) {
	relay := func(addr string) string {
		return "routing:\n  route: store\n  routes:\n    store:\n      type: relay\n      address: " + addr + "\n      port: 24\n      protocol: lmtp\n"
	}
	const bySender = "ip-strategy:\n  source-ips:\n    - if: sender_domain == \"bulk.example\"\n      then: [192.0.2.10]\n"
	for _, tt := range []struct {
		name, policy string
		want         []string // settings warned about
	}{
		{"rule on the sender", relay("127.0.0.1") + bySender, []string{"ip-strategy.source-ips"}},
		{"localhost", relay("localhost") + bySender, []string{"ip-strategy.source-ips"}},
		{"::1 and a literal", relay("::1") + "ip-strategy:\n  source-ips: [192.0.2.10]\n", []string{"ip-strategy.source-ips"}},
		{"guarded", relay("127.0.0.1") + "ip-strategy:\n  source-ips:\n    - if: route_type != \"mx\"\n      then: []\n    - if: sender_domain == \"bulk.example\"\n      then: [192.0.2.10]\n", nil},
		{"about hosts", relay("127.0.0.1") + "ip-strategy:\n  source-ips:\n    - if: mx endsWith \".google.com\"\n      then: [192.0.2.10]\n", nil},
		{"expression on the route", relay("127.0.0.1") + "ip-strategy:\n  source-ips: {expr: 'route == \"mx\" ? [\"192.0.2.10\"] : []'}\n", nil},
		{"ehlo on the sender", relay("127.0.0.1") + "ip-strategy:\n  ehlo-hostname:\n    - if: sender_domain == \"bulk.example\"\n      then: out1.example.org\n", []string{"ip-strategy.ehlo-hostname"}},
		{"ehlo on the source address", relay("127.0.0.1") + "ip-strategy:\n  ehlo-hostname:\n    - if: local_ip == \"192.0.2.10\"\n      then: out1.example.org\n", nil},
		{"relay elsewhere", relay("192.0.2.60") + bySender, nil},
	} {
		s, err := Parse("p.yaml", []byte("version: 1\n"+tt.policy), Options{})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []string
		for _, w := range s.Warnings {
			if strings.Contains(w.Message, "(a relay on loopback, ") {
				got = append(got, w.Setting)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: warnings about %v, want %v (%v)", tt.name, got, tt.want, s.Warnings)
		}
	}
}
