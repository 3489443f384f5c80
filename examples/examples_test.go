// Package examples_test checks the example policies users copy: every
// examples/*/policy.yaml loads with exactly the warnings its README
// describes, `postern check` accepts it, its zone file is valid RFC 1035
// and answers for every host the policy depends on, and its settings decide
// what the README says they decide.
package examples_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
)

// example is what the tests know about one example directory.
type example struct {
	// env holds the environment variables the policy's {env:} secrets
	// name. With them set the policy loads without any warning; without
	// them it warns once per variable use, at the settings in unsetWarnings.
	env           map[string]string
	unsetWarnings []string
	// cases are decisions the README promises.
	cases []decision
}

// decision is one evaluation: for message env, setting has value want (as
// the dry-run trace prints it). The pseudo-setting "throttles" is the
// comma-separated names of the throttles whose match is true.
type decision struct {
	name    string
	env     expr.Env
	setting string
	want    string
}

var examples = map[string]example{
	"quickstart": {
		env:           map[string]string{"SMARTHOST_SECRET": "test-secret"},
		unsetWarnings: []string{"routing.routes.smarthost.auth.secret.env"},
		cases: []decision{
			{"own domain stays local", msg("alice@example.org", "carol@example.org"), "routing.route", "local"},
			{"microsoft via smarthost", msg("alice@example.org", "bob@Hotmail.com"), "routing.route", "smarthost"},
			{"others direct", msg("alice@example.org", "bob@example.com"), "routing.route", "mx"},
			{"starttls required first", host(msg("alice@example.org", "bob@example.com"), "mx", "mx1.example.com"), "tls.starttls", "require"},
			{"starttls relaxed after 3 tls failures", host(retry(msg("alice@example.org", "bob@example.com"), 3, "tls"), "mx", "mx1.example.com"), "tls.starttls", "optional"},
			{"starttls still required after other failures", host(retry(msg("alice@example.org", "bob@example.com"), 5, "connection"), "mx", "mx1.example.com"), "tls.starttls", "require"},
			{"per-domain throttle", msg("alice@example.org", "bob@example.com"), "throttles", "per-domain"},
		},
	},
	"smarthost-split": {
		env: map[string]string{"SMARTHOST_PASSWORD": "test-secret"},
		unsetWarnings: []string{
			"routing.routes.smarthost-backup.auth.secret.env",
			"routing.routes.smarthost.auth.secret.env",
		},
		cases: []decision{
			{"listed domain via relay", msg("alice@example.org", "bob@outlook.com"), "routing.route", "smarthost"},
			{"list file is case-insensitive", msg("alice@example.org", "bob@YAHOO.com"), "routing.route", "smarthost"},
			{"backup after connection failure", retry(msg("alice@example.org", "bob@outlook.com"), 1, "connection"), "routing.route", "smarthost-backup"},
			{"other domains direct", msg("alice@example.org", "bob@example.com"), "routing.route", "mx"},
			{"direct retried", retry(msg("alice@example.org", "bob@example.com"), 2, "unexpected-reply"), "routing.route", "mx"},
			{"direct gives up after 3", retry(msg("alice@example.org", "bob@example.com"), 3, "unexpected-reply"), "routing.route", "smarthost"},
			{"tls failures are not routed around", retry(msg("alice@example.org", "bob@example.com"), 4, "tls"), "routing.route", "mx"},
			{"local", msg("alice@example.org", "carol@example.org"), "routing.route", "local"},
			{"relay needs TLS", host(msg("alice@example.org", "bob@outlook.com"), "smarthost", "smtp.relay.example.net"), "tls.starttls", "require"},
			{"direct is opportunistic", host(msg("alice@example.org", "bob@example.com"), "mx", "mx1.example.com"), "tls.starttls", "optional"},
			{"relay min TLS", host(msg("alice@example.org", "bob@outlook.com"), "smarthost", "smtp.relay.example.net"), "tls.min-version", "1.2"},
			{"direct min TLS", host(msg("alice@example.org", "bob@example.com"), "mx", "mx1.example.com"), "tls.min-version", "1.0"},
			{"relay connection reuse", host(msg("alice@example.org", "bob@outlook.com"), "smarthost-backup", "smtp-backup.relay.example.net"), "limits.messages-per-connection", "100"},
			{"relay account throttle", host(msg("alice@example.org", "bob@outlook.com"), "smarthost", "smtp.relay.example.net"), "throttles", "relay-account"},
			{"direct throttle", host(msg("alice@example.org", "bob@example.com"), "mx", "mx1.example.com"), "throttles", "direct-per-domain"},
		},
	},
	"per-sender-relays": {
		env:           map[string]string{"BRAND_A_RELAY_SECRET": "test-secret"},
		unsetWarnings: []string{"routing.routes.relay-brand-a.auth.secret.env"},
		cases: []decision{
			{"brand A", msg("news@brand-a.example", "bob@example.com"), "routing.route", "relay-brand-a"},
			{"brand A subdomain", msg("billing@eu.brand-a.example", "bob@example.com"), "routing.route", "relay-brand-a"},
			{"brand B", msg("hello@brand-b.example", "bob@example.com"), "routing.route", "relay-brand-b"},
			{"brand B newsletter domain", msg("weekly@news.brand-b.example", "bob@example.com"), "routing.route", "relay-brand-b"},
			{"look-alike is not brand A", msg("x@notbrand-a.example", "bob@example.com"), "routing.route", "mx"},
			{"internal recipient", msg("hello@brand-b.example", "it@corp.example"), "routing.route", "mailstore"},
			{"bounce goes direct", msg("", "bob@example.com"), "routing.route", "mx"},
			{"EHLO brand A", host(msg("news@brand-a.example", "bob@example.com"), "relay-brand-a", "smtp.esp-one.example"), "hostname", "mta.brand-a.example"},
			{"EHLO brand B", host(msg("hello@brand-b.example", "bob@example.com"), "relay-brand-b", "smtp.esp-two.example"), "hostname", "mta.brand-b.example"},
			{"EHLO others", host(msg("", "bob@example.com"), "mx", "mx1.example.com"), "hostname", "mta.example.org"},
			{"no TLS to mailstore", host(msg("x@brand-a.example", "it@corp.example"), "mailstore", "192.0.2.60"), "tls.starttls", "disable"},
			{"TLS to providers", host(msg("hello@brand-b.example", "bob@example.com"), "relay-brand-b", "smtp.esp-two.example"), "tls.starttls", "require"},
			{"direct opportunistic", host(msg("", "bob@example.com"), "mx", "mx1.example.com"), "tls.starttls", "optional"},
			{"LMTP batch", msg("x@brand-a.example", "it@corp.example"), "limits.recipients", "1000"},
			{"provider batch", msg("x@brand-a.example", "bob@example.com"), "limits.recipients", "50"},
			{"brand B quota", host(msg("hello@brand-b.example", "bob@example.com"), "relay-brand-b", "smtp.esp-two.example"), "throttles", "esp-two-brand-b"},
		},
	},
	"strict-partners": {
		cases: []decision{
			{"partner MTA-STS", msg("alice@example.org", "ops@bank-partner.example"), "tls.mta-sts", "require"},
			{"legacy partner MTA-STS", msg("alice@example.org", "ops@legacy-partner.example"), "tls.mta-sts", "optional"},
			{"others MTA-STS", msg("alice@example.org", "bob@example.com"), "tls.mta-sts", "optional"},
			{"DANE partner", host(msg("alice@example.org", "ops@bank-partner.example"), "mx", "mx1.bank-partner.example"), "tls.dane", "require"},
			{"no DANE requirement", host(msg("alice@example.org", "claims@insurer.example"), "mx", "inbound.mailhost.example"), "tls.dane", "optional"},
			{"partner STARTTLS", host(msg("alice@example.org", "claims@insurer.example"), "mx", "inbound.mailhost.example"), "tls.starttls", "require"},
			{"legacy first attempt strict", host(msg("alice@example.org", "ops@legacy-partner.example"), "mx", "mail.legacy-partner.example"), "tls.starttls", "require"},
			{"legacy relaxed after tls failure", host(retry(msg("alice@example.org", "ops@legacy-partner.example"), 1, "tls"), "mx", "mail.legacy-partner.example"), "tls.starttls", "optional"},
			{"legacy not relaxed after other failure", host(retry(msg("alice@example.org", "ops@legacy-partner.example"), 1, "connection"), "mx", "mail.legacy-partner.example"), "tls.starttls", "require"},
			{"other partner never relaxed", host(retry(msg("alice@example.org", "claims@insurer.example"), 4, "tls"), "mx", "inbound.mailhost.example"), "tls.starttls", "require"},
			{"others opportunistic", host(msg("alice@example.org", "bob@example.com"), "mx", "mx1.example.com"), "tls.starttls", "optional"},
			{"legacy TLS 1.0", host(msg("alice@example.org", "ops@legacy-partner.example"), "mx", "mail.legacy-partner.example"), "tls.min-version", "1.0"},
			{"default TLS 1.2", host(msg("alice@example.org", "ops@bank-partner.example"), "mx", "mx1.bank-partner.example"), "tls.min-version", "1.2"},
			{"legacy certs on relaxed retry", host(retry(msg("alice@example.org", "ops@legacy-partner.example"), 2, "tls"), "mx", "mail.legacy-partner.example"), "tls.allow-invalid-certs", "true"},
			{"certs checked first", host(msg("alice@example.org", "ops@legacy-partner.example"), "mx", "mail.legacy-partner.example"), "tls.allow-invalid-certs", "false"},
			{"legacy throttle", host(msg("alice@example.org", "ops@legacy-partner.example"), "mx", "mail.legacy-partner.example"), "throttles", "legacy-partner"},
		},
	},
	"ip-pools": {
		cases: []decision{
			{"google over IPv4", host(msg("alice@example.org", "bob@gmail-like.example"), "mx", "gmail-smtp-in.l.google.com"), "ip-strategy.lookup", "ipv4_only"},
			{"microsoft over IPv4", host(msg("alice@example.org", "bob@m365-customer.example"), "mx", "m365-customer-example.mail.protection.outlook.com"), "ip-strategy.lookup", "ipv4_only"},
			{"others IPv6 first", host(msg("alice@example.org", "bob@example.com"), "mx", "mx1.example.com"), "ip-strategy.lookup", "ipv6_then_ipv4"},
			{"transactional pool", host(msg("receipts@example.org", "bob@example.com"), "mx", "mx1.example.com"), "ip-strategy.source-ips", "[192.0.2.10, 192.0.2.11, 2001:db8::10]"},
			{"bulk pool by sender", host(msg("weekly@news.example.org", "bob@example.com"), "mx", "mx1.example.com"), "ip-strategy.source-ips", "[198.51.100.20, 198.51.100.21, 2001:db8:100::20]"},
			{"bulk pool by meta", host(meta(msg("alice@example.org", "bob@example.com"), "stream", "bulk"), "mx", "mx1.example.com"), "ip-strategy.source-ips", "[198.51.100.20, 198.51.100.21, 2001:db8:100::20]"},
			{"EHLO out1 v4", conn(msg("alice@example.org", "bob@example.com"), "mx1.example.com", "192.0.2.25", "192.0.2.10"), "ip-strategy.ehlo-hostname", "out1.example.org"},
			{"EHLO out1 v6", conn(msg("alice@example.org", "bob@example.com"), "mx1.example.com", "2001:db8::25", "2001:db8::10"), "ip-strategy.ehlo-hostname", "out1.example.org"},
			{"EHLO out2", conn(msg("alice@example.org", "bob@example.com"), "mx1.example.com", "192.0.2.25", "192.0.2.11"), "ip-strategy.ehlo-hostname", "out2.example.org"},
			{"EHLO bulk v4", conn(msg("weekly@news.example.org", "bob@example.com"), "mx1.example.com", "192.0.2.25", "198.51.100.21"), "ip-strategy.ehlo-hostname", "bulk21.news.example.org"},
			{"EHLO bulk v6", conn(msg("weekly@news.example.org", "bob@example.com"), "mx1.example.com", "2001:db8::25", "2001:db8:100::20"), "ip-strategy.ehlo-hostname", "bulk6.news.example.org"},
			{"EHLO kernel-chosen", conn(msg("alice@example.org", "bob@example.com"), "mx1.example.com", "192.0.2.25", ""), "ip-strategy.ehlo-hostname", ""},
			{"google connection reuse", host(msg("alice@example.org", "bob@gmail-like.example"), "mx", "aspmx.l.google.com"), "limits.messages-per-connection", "100"},
			{"default connection reuse", host(msg("alice@example.org", "bob@example.com"), "mx", "mx1.example.com"), "limits.messages-per-connection", "20"},
			{"google throttle", conn(msg("alice@example.org", "bob@workspace-customer.example"), "aspmx.l.google.com", "203.0.113.30", "192.0.2.10"), "throttles", "google"},
			{"bulk to google", conn(msg("weekly@news.example.org", "bob@gmail-like.example"), "gmail-smtp-in.l.google.com", "203.0.113.26", "198.51.100.20"), "throttles", "google,bulk-warm-up"},
			{"no throttle", conn(msg("alice@example.org", "bob@example.com"), "mx1.example.com", "2001:db8::25", "2001:db8::10"), "throttles", ""},
		},
	},
}

// msg is the recipient-phase environment of a first delivery attempt.
func msg(from, to string) expr.Env {
	domain := func(a string) string {
		if i := strings.LastIndexByte(a, '@'); i >= 0 {
			return strings.ToLower(a[i+1:])
		}
		return ""
	}
	return expr.Env{Sender: from, SenderDomain: domain(from), Rcpt: to, RcptDomain: domain(to),
		Recipients: []string{to}, LastError: "none", Source: "authenticated"}
}

// retry makes e a later attempt after a failure of class lastError.
func retry(e expr.Env, n int, lastError string) expr.Env {
	e.RetryNum, e.LastError = n, lastError
	return e
}

// meta adds an embedder-supplied value.
func meta(e expr.Env, k, v string) expr.Env {
	e.Meta = map[string]string{k: v}
	return e
}

// host adds the host-phase variables for a host of route.
func host(e expr.Env, route, mx string) expr.Env {
	e.Route, e.MX = route, mx
	e.RouteType = map[string]string{"mx": "mx", "local": "local"}[route]
	if e.RouteType == "" {
		e.RouteType = "relay"
	}
	return e
}

// conn adds the connection-phase variables for a direct delivery.
func conn(e expr.Env, mx, remote, local string) expr.Env {
	e = host(e, "mx", mx)
	e.RemoteIP, e.LocalIP = remote, local
	return e
}

// exampleDirs returns the example directories that have a policy.yaml.
func exampleDirs(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("*/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, p := range paths {
		dirs = append(dirs, filepath.Dir(p))
	}
	for name := range examples {
		if !slices.Contains(dirs, name) {
			t.Errorf("example %s is listed in examples_test.go but %s/policy.yaml does not exist", name, name)
		}
	}
	if len(dirs) == 0 {
		t.Fatal("no examples found")
	}
	return dirs
}

// setEnv sets (or, when set is false, removes) the example's environment
// for the rest of the test.
func setEnv(t *testing.T, env map[string]string, set bool) {
	for k, v := range env {
		t.Setenv(k, v) // restores the old value after the test
		if !set {
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func load(t *testing.T, dir string) *policies.Set {
	t.Helper()
	s, err := policies.LoadFile(filepath.Join(dir, "policy.yaml"), policies.Options{Hostname: "mta.example.org"})
	if err != nil {
		t.Fatalf("%s does not load:\n%v", dir, err)
	}
	return s
}

func warningSettings(s *policies.Set) []string {
	var out []string
	for _, w := range s.Warnings {
		out = append(out, w.Setting)
	}
	slices.Sort(out)
	return out
}

// TestLoad: each example loads; with its environment set it has no warning
// at all, and without it exactly the documented "not set" warnings.
func TestLoad(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			ex := examples[dir]
			if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
				t.Errorf("every example needs a README.md: %v", err)
			}

			setEnv(t, ex.env, true)
			if got := warningSettings(load(t, dir)); len(got) != 0 {
				t.Errorf("with %v set, warnings at %v; want none", keys(ex.env), got)
			}

			setEnv(t, ex.env, false)
			s := load(t, dir)
			want := slices.Clone(ex.unsetWarnings)
			slices.Sort(want)
			if got := warningSettings(s); !slices.Equal(got, want) {
				t.Errorf("without %v, warnings at %v; want %v", keys(ex.env), got, want)
			}
			for _, w := range s.Warnings {
				if !strings.Contains(w.Message, "is not set") {
					t.Errorf("unexpected warning: %v", w)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDecisions evaluates the settings the READMEs talk about.
func TestDecisions(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		ex := examples[dir]
		if len(ex.cases) == 0 {
			continue
		}
		t.Run(dir, func(t *testing.T) {
			setEnv(t, ex.env, true)
			s := load(t, dir)
			eval := evaluators(s)
			funcs := s.Library().Funcs(expr.Hooks{})
			for _, c := range ex.cases {
				f, ok := eval[c.setting]
				if !ok {
					t.Fatalf("%s: no evaluator for setting %s", c.name, c.setting)
				}
				env := c.env
				env.Funcs = funcs
				got, err := f(&env)
				if err != nil {
					t.Errorf("%s: %s: %v", c.name, c.setting, err)
				}
				if got != c.want {
					t.Errorf("%s: %s = %q, want %q", c.name, c.setting, got, c.want)
				}
			}
		})
	}
}

// evaluators returns, per setting path, a function giving the setting's
// value for an environment, as text.
func evaluators(s *policies.Set) map[string]func(*expr.Env) (string, error) {
	return map[string]func(*expr.Env) (string, error){
		"hostname":                       text(s.Hostname),
		"routing.route":                  text(s.Route),
		"tls.mta-sts":                    text(s.TLS.MTASTS),
		"tls.dane":                       text(s.TLS.DANE),
		"tls.starttls":                   text(s.TLS.STARTTLS),
		"tls.allow-invalid-certs":        text(s.TLS.AllowInvalidCerts),
		"tls.min-version":                text(s.TLS.MinVersion),
		"ip-strategy.lookup":             text(s.IPStrategy.Lookup),
		"ip-strategy.source-ips":         text(s.IPStrategy.SourceIPs),
		"ip-strategy.ehlo-hostname":      text(s.IPStrategy.EHLOHostname),
		"limits.mx":                      text(s.Limits.MX),
		"limits.recipients":              text(s.Limits.Recipients),
		"limits.messages-per-connection": text(s.Limits.MessagesPerConnection),
		"throttles": func(env *expr.Env) (string, error) {
			var m expr.VM
			var names []string
			for _, th := range s.Limits.Throttles {
				if th.Match != nil {
					ok, err := th.Match.Bool(&m, env)
					if err != nil {
						return "", err
					}
					if !ok {
						continue
					}
				}
				names = append(names, th.Name)
			}
			return strings.Join(names, ","), nil
		},
	}
}

// text evaluates v and renders the result the way traces do.
func text[T any](v *policies.Value[T]) func(*expr.Env) (string, error) {
	return func(env *expr.Env) (string, error) {
		var m expr.VM
		var tr policies.Trace
		got, err := v.Eval(&m, env, &tr)
		if len(tr.Entries) == 0 {
			return fmt.Sprint(got), err
		}
		return tr.Entries[len(tr.Entries)-1].Value, err
	}
}

// documentation address ranges (RFC 5737, RFC 3849): the only addresses an
// example may mention.
var docRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func isDocAddr(a netip.Addr) bool {
	for _, p := range docRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TestZoneFiles: the zone file of each static-resolver example parses as
// RFC 1035 (no $INCLUDE), uses only documentation addresses, and answers for
// every MX target and every relay host name the policy needs.
func TestZoneFiles(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			s := load(t, dir)
			if s.DNS.Resolver != "static" {
				if _, listed := examples[dir]; listed {
					t.Fatalf("resolver is %q: examples use resolver: static so that dry-runs are offline", s.DNS.Resolver)
				}
				return
			}
			f, err := os.Open(s.DNS.ZoneFile)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()

			addrs := map[string]bool{} // names with an A or AAAA record
			var mxTargets []string
			zp := dns.NewZoneParser(f, ".", s.DNS.ZoneFile)
			n := 0
			for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
				n++
				name := strings.ToLower(rr.Header().Name)
				switch rr := rr.(type) {
				case *dns.A:
					addrs[name] = true
					checkDocAddr(t, rr.String(), rr.A.String())
				case *dns.AAAA:
					addrs[name] = true
					checkDocAddr(t, rr.String(), rr.AAAA.String())
				case *dns.MX:
					if rr.Mx != "." {
						mxTargets = append(mxTargets, strings.ToLower(rr.Mx))
					}
				}
			}
			if err := zp.Err(); err != nil {
				t.Fatalf("zone file: %v", err)
			}
			if n == 0 {
				t.Fatal("zone file has no records")
			}
			for _, mx := range mxTargets {
				if !addrs[mx] {
					t.Errorf("MX target %s has no A or AAAA record in the zone file", mx)
				}
			}
			for _, r := range s.Routes {
				if r.Address == "" {
					continue
				}
				if r.AddressIP.IsValid() {
					checkDocAddr(t, "route "+r.Name, r.AddressIP.String())
					continue
				}
				if !addrs[dns.Fqdn(r.Address)] {
					t.Errorf("route %s: relay %s has no A or AAAA record in the zone file", r.Name, r.Address)
				}
			}
		})
	}
}

func checkDocAddr(t *testing.T, what, addr string) {
	t.Helper()
	a, err := netip.ParseAddr(addr)
	if err != nil || !isDocAddr(a) {
		t.Errorf("%s: %s is not a documentation address (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)", what, addr)
	}
}

// TestCheckCommand runs the real `postern check` on every example: exit
// status 0 and nothing on stderr (no warning) when the secrets' environment
// variables are set.
func TestCheckCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/postern")
	}
	bin := filepath.Join(t.TempDir(), "postern")
	build := exec.Command("go", "build", "-o", bin, "github.com/postern-mta/postern/cmd/postern")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/postern: %v\n%s", err, out)
	}
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			cmd := exec.Command(bin, "check", "-c", filepath.Join(dir, "policy.yaml"))
			cmd.Env = os.Environ()
			for k, v := range examples[dir].env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("postern check -c %s/policy.yaml: %v\nstdout:\n%s\nstderr:\n%s", dir, err, stdout.String(), stderr.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("postern check -c %s/policy.yaml printed to stderr:\n%s", dir, stderr.String())
			}
		})
	}
}
