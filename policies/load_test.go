package policies

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadPolicies compares the full text of every error: position, setting
// path, message and, for expressions, expr-lang's caret snippet.
func TestBadPolicies(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		want   string
	}{
		{
			name:   "unknown top-level key",
			policy: "version: 1\nrouting:\n  route: mx\nrouting-x: 1\n",
			want:   `p.yaml:4:1: routing-x: unknown key "routing-x" in the top level: did you mean "routing"?`,
		},
		{
			name:   "unknown key without a near match lists the known keys",
			policy: "version: 1\ndns:\n  cache:\n    ttl: 5m\n",
			want:   `p.yaml:4:5: dns.cache.ttl: unknown key "ttl" in dns.cache (known keys: size, min-ttl, max-ttl, negative-ttl)`,
		},
		{
			name:   "unknown key in a section, with a suggestion",
			policy: "version: 1\ntls:\n  startls: require\n",
			want:   `p.yaml:3:3: tls.startls: unknown key "startls" in tls: did you mean "starttls"?`,
		},
		{
			name:   "unknown key three levels deep",
			policy: "version: 1\nlimits:\n  timeouts:\n    conect: 5m\n",
			want:   `p.yaml:4:5: limits.timeouts.conect: unknown key "conect" in limits.timeouts: did you mean "connect"?`,
		},
		{
			name:   "unknown key inside a rule",
			policy: "version: 1\ntls:\n  starttls:\n    - if: retry_num > 1\n      than: optional\n    - else: require\n",
			want: "p.yaml:4:7: tls.starttls[0]: rule without then: add `then: VALUE` under the if\n" +
				`p.yaml:5:7: tls.starttls[0].than: unknown key "than" in tls.starttls[0]: did you mean "then"?`,
		},
		{
			name:   "unknown key in a route",
			policy: "version: 1\nrouting:\n  route: r\n  routes:\n    r:\n      type: relay\n      address: 192.0.2.1\n      prot: 2525\n",
			want:   `p.yaml:8:7: routing.routes.r.prot: unknown key "prot" in routing.routes.r: did you mean "port"?`,
		},
		{
			name:   "bad enum",
			policy: "version: 1\ntls:\n  starttls:\n    - if: mx == \"a.example\"\n      then: requir\n    - else: optional\n",
			want:   `p.yaml:5:13: tls.starttls[0].then: "requir" is not one of disable, optional, require: did you mean "require"?`,
		},
		{
			name:   "bad enum literal that looks like an expression",
			policy: "version: 1\nip-strategy:\n  lookup: \"retry_num > 1 ? 'ipv4_only' : 'ipv6_only'\"\n",
			want:   `p.yaml:3:11: ip-strategy.lookup: "retry_num > 1 ? 'ipv4_only' : 'ipv6_only'" is not one of ipv4_only, ipv6_only, ipv4_then_ipv6, ipv6_then_ipv4 (to compute the value, write {expr: ...} or a list of if/then rules)`,
		},
		{
			name:   "bad duration",
			policy: "version: 1\nlimits:\n  timeouts:\n    data: 10 minutes\n",
			want:   `p.yaml:4:11: limits.timeouts.data: "10 minutes" is not a duration: write it like 90s, 5m, 1h30m or 2d`,
		},
		{
			name:   "bad IP in a list",
			policy: "version: 1\nip-strategy:\n  source-ips: [192.0.2.10, 192.0.2.300]\n",
			want:   `p.yaml:3:15: ip-strategy.source-ips: "192.0.2.300" is not an IP address`,
		},
		{
			name:   "wrong expression type",
			policy: "version: 1\nlimits:\n  mx:\n    expr: 'rcpt_domain + \".x\"'\n",
			want:   `p.yaml:4:12: limits.mx: expected int, but got string`,
		},
		{
			name:   "expression whose type is only known at run time",
			policy: "version: 1\nlimits:\n  mx:\n    expr: 'rcpt_domain == \"a.example\" ? \"two\" : 5'\n",
			want:   `p.yaml:4:12: limits.mx: expected int, but the expression's type is only known at run time: make every branch of type int`,
		},
		{
			name:   "if that is not boolean",
			policy: "version: 1\ntls:\n  dane:\n    - if: retry_num\n      then: disable\n",
			want:   `p.yaml:4:11: tls.dane[0].if: expected bool, but got int`,
		},
		{
			name:   "syntax error inside a multi-line block scalar",
			policy: "version: 1\nrouting:\n  route:\n    - if: |\n        rcpt_domain == \"a.example\" &&\n          (size > 1000 ||\n           retry_num >)\n      then: mx\n",
			want: "p.yaml:7:23: routing.route[0].if: unexpected token Bracket(\")\") (3:15)\n" +
				" |    retry_num >)\n" +
				" | ..............^",
		},
		{
			name:   "host-phase variable in a recipient-phase setting",
			policy: "version: 1\nrouting:\n  route:\n    - if: mx endsWith \".example\"\n      then: local\n",
			want: "p.yaml:4:11: routing.route[0].if: mx is not known when routing.route is evaluated: the route decides which MX hosts exist (mx is a host-phase variable; routing.route is a recipient-phase setting) (1:1)\n" +
				" | mx endsWith \".example\"\n" +
				" | ^",
		},
		{
			name:   "connection-phase variable in a host-phase setting",
			policy: "version: 1\ntls:\n  starttls:\n    expr: 'remote_ip == \"192.0.2.1\" ? \"disable\" : \"require\"'\n",
			want: "p.yaml:4:12: tls.starttls: remote_ip is not known when tls.starttls is evaluated: it is decided per host, before the host's addresses are tried (remote_ip is a connection-phase variable; tls.starttls is a host-phase setting) (1:1)\n" +
				" | remote_ip == \"192.0.2.1\" ? \"disable\" : \"require\"\n" +
				" | ^",
		},
		{
			name:   "undefined route",
			policy: "version: 1\nrouting:\n  route:\n    - if: rcpt_domain == \"a.example\"\n      then: relay-eu\n    - else: mx\n",
			want:   `p.yaml:5:13: routing.route[0].then: route "relay-eu" is not defined (define it under routing.routes, or use mx or local)`,
		},
		{
			name:   "undefined list",
			policy: "version: 1\nlists:\n  big: [a.example]\nrouting:\n  route:\n    - if: in_list(\"bigg\", rcpt_domain)\n      then: local\n",
			want: "p.yaml:6:19: routing.route[0].if: in_list: no list named \"bigg\" (lists defined: big) (1:9)\n" +
				" | in_list(\"bigg\", rcpt_domain)\n" +
				" | ........^",
		},
		{
			name:   "bad CIDR literal",
			policy: "version: 1\nip-strategy:\n  lookup:\n    - if: is_ip_in_cidr(received_from_ip, \"10.0.0.0/33\")\n      then: ipv4_only\n",
			want: "p.yaml:4:43: ip-strategy.lookup[0].if: is_ip_in_cidr: \"10.0.0.0/33\" is not a CIDR prefix (like \"192.0.2.0/24\" or \"2001:db8::/32\") (1:33)\n" +
				" | is_ip_in_cidr(received_from_ip, \"10.0.0.0/33\")\n" +
				" | ................................^",
		},
		{
			name:   "missing version",
			policy: "tls:\n  starttls: require\n",
			want:   "p.yaml:1:1: version: missing: start the policy with `version: 1`",
		},
		{
			name:   "relay without address, secret half given",
			policy: "version: 1\nrouting:\n  route: r\n  routes:\n    r:\n      type: relay\n      auth:\n        username: u\n",
			want: "p.yaml:5:5: routing.routes.r.address: missing: a relay route needs the host name or IP address of the relay\n" +
				"p.yaml:8:9: routing.routes.r.auth.secret: missing: auth needs both username and secret (remove auth for no authentication)",
		},
		{
			name: "several errors in one file, sorted by position",
			policy: "version: 1\n" +
				"limits:\n  mx: 0\n  throttles:\n    - name: t\n      key: [rcpt_domian]\n      rate: 10/x\n" +
				"tls:\n  min-version: 1.4\n" +
				"dns:\n  resolver: custom\n  servers: [8.8.8.8]\n",
			want: "p.yaml:3:7: limits.mx: 0 is out of range: it must be between 1 and 100\n" +
				"p.yaml:6:12: limits.throttles[0].key[0]: \"rcpt_domian\" is not a throttle key (one of sender, sender_domain, rcpt, rcpt_domain, route, site, mx, remote_ip, local_ip, or meta.NAME)\n" +
				"p.yaml:7:13: limits.throttles[0].rate: \"10/x\" is not a rate: the period must be a positive duration like 1s, 1m, 1h\n" +
				"p.yaml:9:16: tls.min-version: \"1.4\" is not one of 1.0, 1.1, 1.2, 1.3\n" +
				"p.yaml:11:13: dns.servers: missing: resolver: custom needs at least one server (udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME)\n" +
				"p.yaml:12:13: dns.servers[0]: \"8.8.8.8\" is not a DNS server: write udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME",
		},
		{
			name:   "DNS settings of another resolver are pointed out",
			policy: "version: 1\ndns:\n  resolver: system\n  secure: true\n  servers: [udp://127.0.0.1:53]\n  cache: {min-ttl: 2h, max-ttl: 1h}\n",
			want:   "p.yaml:3:13: dns.cache.min-ttl: min-ttl (2h) is larger than max-ttl (1h)",
		},
		{
			name:   "list items are counted with the ones that are not strings",
			policy: "version: 1\nlocal-domains:\n  - {a: b}\n  - \"not a domain!\"\ndns:\n  resolver: custom\n  servers:\n    - [x]\n    - bogus\n",
			want: "p.yaml:3:5: local-domains[0]: expected a string, found a mapping\n" +
				"p.yaml:4:5: local-domains[1]: \"not a domain!\" is not a domain\n" +
				"p.yaml:6:13: dns.servers: missing: resolver: custom needs at least one server (udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME)\n" +
				"p.yaml:8:7: dns.servers[0]: expected a string, found a list\n" +
				"p.yaml:9:7: dns.servers[1]: \"bogus\" is not a DNS server: write udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME",
		},
		{
			name:   "YAML syntax error",
			policy: "version: 1\ntls:\n  starttls: [require\n",
			want:   "p.yaml:3:1: YAML syntax: did not find expected ',' or ']' (in the construct that starts on this line)",
		},
		{
			name:   "duplicate key",
			policy: "version: 1\ntls:\n  dane: require\n  dane: optional\n",
			want:   "p.yaml:4:3: tls.dane: duplicate key (first at line 3)",
		},
		{
			name:   "else not last",
			policy: "version: 1\ntls:\n  dane:\n    - else: require\n    - if: retry_num > 0\n      then: optional\n",
			want:   "p.yaml:4:7: tls.dane[0].else: else must be the last rule: the rules after it could never be reached",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("p.yaml", []byte(tt.policy), Options{Hostname: "mta.test"})
			if err == nil {
				t.Fatalf("loaded; want errors:\n%s", tt.want)
			}
			if s != nil {
				t.Errorf("got a Set along with the error")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			got := err.Error()
			if got != tt.want {
				t.Errorf("errors:\n%s\n\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	policy := `version: 1
lists:
  unused: [a.example]
routing:
  route:
    - if: true
      then: mx
    - if: rcpt_domain == "b.example"
      then: local
  routes:
    spare:
      type: relay
      address: 192.0.2.1
      auth:
        username: u
        secret: hunter2
`
	s, err := Parse("p.yaml", []byte(policy), Options{Hostname: "mta.test"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range s.Warnings {
		got = append(got, w.String())
	}
	want := []string{
		"p.yaml:3:3: lists.unused: warning: list unused is never used (no in_list(\"unused\", ...))",
		"p.yaml:8:7: routing.route[1]: warning: this rule can never be reached: the rule at line 6 always matches",
		"p.yaml:11:5: routing.routes.spare: warning: route spare is never chosen by routing.route",
		"p.yaml:16:17: routing.routes.spare.auth.secret: warning: literal secret in the policy file: prefer {env: NAME} or {file: PATH}",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range got {
		if strings.Contains(w, "hunter2") {
			t.Errorf("a warning shows the secret: %s", w)
		}
	}
	out, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("Marshal printed the literal secret")
	}
}

// TestDefaultsRoundTrip: the defaults printed by Marshal load back into the
// same settings.
func TestDefaultsRoundTrip(t *testing.T) {
	def := Defaults(Options{Hostname: "mta.test"})
	out, err := Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "defaults.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadFile(path, Options{Hostname: "other.test"})
	if err != nil {
		t.Fatalf("printed defaults do not load: %v\n%s", err, out)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("printed defaults have warnings: %v", s.Warnings)
	}
	for _, f := range Fields() {
		if f.Path == "hostname" {
			continue // left out, see below
		}
		a, b := nodeText(t, f.node(def)), nodeText(t, f.node(s))
		if a != b {
			t.Errorf("%s: defaults %q, reloaded %q", f.Path, a, b)
		}
	}
	// The host name is left out (commented): the file takes the name of
	// the machine that loads it, not the one that printed it.
	if !strings.Contains(string(out), "\n# hostname: mta.test ") {
		t.Errorf("the host name is not left out as a comment:\n%s", out)
	}
	if h, _ := s.Hostname.Literal(); h != "other.test" {
		t.Errorf("hostname = %q, want the loading machine's, other.test", h)
	}
	again, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(string(out), "hostname: mta.test", "hostname: other.test", 1); string(again) != want {
		t.Errorf("second print differs:\n%s\nfirst:\n%s", again, out)
	}
}

func TestDNSWarnings(t *testing.T) {
	t.Setenv("POSTERN_EMPTY", "")
	s := mustParse(t, `version: 1
routing:
  route: r
  routes:
    r: {type: relay, address: r.example, auth: {username: u, secret: {env: POSTERN_EMPTY}}}
dns:
  resolver: system
  secure: true
  zone-file: z.zone
  servers: [udp://127.0.0.1:53]
`)
	var got []string
	for _, w := range s.Warnings {
		got = append(got, w.String())
	}
	want := []string{
		"p.yaml:5:76: routing.routes.r.auth.secret.env: warning: environment variable POSTERN_EMPTY is set but empty here",
		"p.yaml:8:11: dns.secure: warning: only used with resolver: static (the resolver is system)",
		"p.yaml:9:14: dns.zone-file: warning: only used with resolver: static (the resolver is system)",
		"p.yaml:10:12: dns.servers: warning: only used with resolver: custom (the resolver is system)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The queue settings refuse what would make no schedule: no retry wait,
// a wait or an expiry of zero. No delay notification at all ([]) is fine.
func TestQueueSettings(t *testing.T) {
	for _, c := range []struct{ yaml, err string }{
		{"queue:\n  retry: []\n", "needs at least 1 duration"},
		{"queue:\n  retry: [2m, 0s]\n", "each duration must be positive"},
		{"queue:\n  expire: 0s\n", "must be above zero"},
		{"queue:\n  notify: []\n  retry: [1m]\n  expire: 1d\n", ""},
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+c.yaml), Options{})
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.err)
		}
	}
}
