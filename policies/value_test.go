package policies

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/expr"
)

func mustParse(t testing.TB, policy string) *Set {
	t.Helper()
	s, err := Parse("p.yaml", []byte(policy), Options{Hostname: "mta.test"})
	if err != nil {
		t.Fatalf("policy does not load:\n%v", err)
	}
	return s
}

func newEnv(s *Set) *expr.Env {
	return &expr.Env{Funcs: s.Library().Funcs(expr.Hooks{})}
}

func TestRulesAndTrace(t *testing.T) {
	s := mustParse(t, `version: 1
local-domains: [example.org]
tls:
  starttls:
    - if: mx endsWith ".legacy.example"
      then: optional
    - if: retry_num > 2 && last_error == "tls"
      then: disable
    - else: require
`)
	var m expr.VM
	env := newEnv(s)
	env.MX, env.RetryNum, env.LastError = "mx.partner.example", 3, "tls"
	var tr Trace
	got, err := s.TLS.STARTTLS.Eval(&m, env, &tr)
	if err != nil || got != TLSDisable {
		t.Fatalf("got %v, %v; want disable", got, err)
	}
	want := []TraceEntry{
		{Setting: "tls.starttls", Phase: "host", Kind: KindRule, Rule: 1, At: Pos{File: "p.yaml", Line: 5, Column: 7}, If: `mx endsWith ".legacy.example"`},
		{Setting: "tls.starttls", Phase: "host", Kind: KindRule, Rule: 2, At: Pos{File: "p.yaml", Line: 7, Column: 7}, If: `retry_num > 2 && last_error == "tls"`, Matched: true, Value: "disable"},
	}
	if fmt.Sprint(tr.Entries) != fmt.Sprint(want) {
		t.Errorf("trace:\n%v\nwant:\n%v", tr.Entries, want)
	}
	env.RetryNum = 0
	tr = Trace{}
	if got, _ := s.TLS.STARTTLS.Eval(&m, env, &tr); got != TLSRequire {
		t.Errorf("else: got %v", got)
	}
	if last := tr.Entries[len(tr.Entries)-1]; last.Kind != KindElse || last.Rule != 3 || last.At.String() != "p.yaml:9:7" || last.Value != "require" {
		t.Errorf("else entry: %+v", last)
	}
	// The default route is a rule list too.
	env.RcptDomain = "example.org"
	if got, _ := s.Route.Eval(&m, env, nil); got != "local" {
		t.Errorf("default route for a local domain = %q", got)
	}
	env.RcptDomain = "example.com"
	if got, _ := s.Route.Eval(&m, env, nil); got != "mx" {
		t.Errorf("default route for a remote domain = %q", got)
	}
	// Settings not written take their default, and say so.
	tr = Trace{}
	if got, _ := s.TLS.DANE.Eval(&m, env, &tr); got != TLSOptional || tr.Entries[0].Kind != KindDefault {
		t.Errorf("dane = %v, trace %+v", got, tr.Entries)
	}
}

// TestRunTimeErrorNeverWeakensTLS: a TLS setting that fails takes its
// strictest value; other settings take their default; the error is in the
// trace.
func TestRunTimeErrorNeverWeakensTLS(t *testing.T) {
	s := mustParse(t, `version: 1
routing:
  route:
    expr: 'recipients[3]'
tls:
  starttls:
    - if: recipients[3] == "x"
      then: disable
    - else: disable
  allow-invalid-certs:
    expr: 'recipients[9] == ""'
  min-version:
    - if: 'true'
      then: {expr: 'recipients[9]'}
  mta-sts:
    expr: 'route == "mx" ? "disable" : recipients[4]'
limits:
  mx: {expr: 'len(recipients[7])'}
`)
	var m expr.VM
	env := newEnv(s)
	env.Recipients = []string{"a@x"}
	env.Route = "relay"
	var tr Trace
	check := func(name string, got, want any, err error) {
		t.Helper()
		if got != want || err == nil {
			t.Errorf("%s = %v (err %v), want %v and an error", name, got, err, want)
		}
	}
	v1, err := s.TLS.STARTTLS.Eval(&m, env, &tr)
	check("starttls", v1, TLSRequire, err)
	v2, err := s.TLS.AllowInvalidCerts.Eval(&m, env, &tr)
	check("allow-invalid-certs", v2, false, err)
	v3, err := s.TLS.MinVersion.Eval(&m, env, &tr)
	check("min-version", v3, TLSVersion("1.3"), err)
	v4, err := s.TLS.MTASTS.Eval(&m, env, &tr)
	check("mta-sts", v4, TLSRequire, err)
	v5, err := s.Limits.MX.Eval(&m, env, &tr)
	check("limits.mx", v5, 5, err)
	v6, err := s.Route.Eval(&m, env, &tr)
	check("route", v6, "", err)
	for _, e := range tr.Entries {
		if e.Error == "" {
			t.Errorf("trace entry without error: %+v", e)
		}
	}
	if !strings.Contains(tr.Entries[0].Error, "p.yaml:7:") {
		t.Errorf("error does not point at the rule: %s", tr.Entries[0].Error)
	}
	// A value of the right type but not valid for the setting.
	s2 := mustParse(t, "version: 1\ntls:\n  dane: {expr: 'rcpt_domain'}\nrouting:\n  route: {expr: 'rcpt_domain'}\n")
	env = newEnv(s2)
	env.RcptDomain = "requir"
	got, err := s2.TLS.DANE.Eval(&m, env, nil)
	if got != TLSRequire || err == nil || !strings.Contains(err.Error(), `"requir" is not one of disable, optional, require`) {
		t.Errorf("dane = %v, %v", got, err)
	}
	env.RcptDomain = "nowhere"
	if r, err := s2.Route.Eval(&m, env, nil); r != "" || err == nil || !strings.Contains(err.Error(), `route "nowhere" is not defined`) {
		t.Errorf("route = %q, %v", r, err)
	}
}

func TestRelativePathsAndSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("lists/blocked.txt", "# blocked\nBad.example\n\nworse.example # trailing comment\n")
	write("secrets/relay", "s3cret-from-file\n")
	write("zones/z.zone", "$ORIGIN example.\n")
	write("policy.yaml", `version: 1
lists:
  blocked: {file: lists/blocked.txt}
routing:
  route:
    - if: in_list("blocked", rcpt_domain)
      then: r
    - else: mx
  routes:
    r:
      type: relay
      address: "[192.0.2.5]"
      auth: {username: u, secret: {file: secrets/relay}}
dns:
  resolver: static
  zone-file: zones/z.zone
`)
	t.Chdir(t.TempDir()) // relative to the policy, not the working directory
	s, err := LoadFile(filepath.Join(dir, "policy.yaml"), Options{Hostname: "mta.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Lists["blocked"], ","); got != "Bad.example,worse.example" {
		t.Errorf("list = %q", got)
	}
	if s.DNS.ZoneFile != filepath.Join(dir, "zones/z.zone") {
		t.Errorf("zone file = %q", s.DNS.ZoneFile)
	}
	r := s.Routes["r"]
	if r.Address != "192.0.2.5" || !r.AddressIP.IsValid() || r.Port != 25 || r.Protocol != "smtp" {
		t.Errorf("route = %+v", r)
	}
	v, err := r.Auth.Secret.Resolve()
	if err != nil || v != "s3cret-from-file" {
		t.Errorf("secret = %q, %v", v, err)
	}
	for _, shown := range []string{fmt.Sprint(r.Auth.Secret), fmt.Sprintf("%v %+v %#v %s %q", r.Auth, r.Auth, r.Auth, r.Auth.Secret, r.Auth.Secret)} {
		if strings.Contains(shown, "s3cret") {
			t.Errorf("secret printed: %s", shown)
		}
	}
	if got := r.Auth.Secret.Source(); got != "<from file secrets/relay>" {
		t.Errorf("source = %q", got)
	}
	var m expr.VM
	env := newEnv(s)
	env.RcptDomain = "BAD.example"
	if got, _ := s.Route.Eval(&m, env, nil); got != "r" {
		t.Errorf("route for a blocked domain = %q", got)
	}
	t.Setenv("POSTERN_TEST_SECRET", "from-env")
	if v, err := EnvSecret("POSTERN_TEST_SECRET").Resolve(); err != nil || v != "from-env" {
		t.Errorf("env secret = %q, %v", v, err)
	}
	if _, err := EnvSecret("POSTERN_TEST_UNSET_SECRET").Resolve(); err == nil {
		t.Error("unset env secret resolved")
	}
}

func TestLiteralForms(t *testing.T) {
	s := mustParse(t, `version: 1
hostname: MTA.Example.ORG.
ip-strategy:
  source-ips: 192.0.2.10
  ehlo-hostname:
    - if: local_ip == "192.0.2.10"
      then: out1.example.org
limits:
  timeouts:
    data: 1d2h
  throttles:
    - name: mx-rate
      key: [mx]
      rate: 10/m
    - name: all
      concurrency: 3
`)
	if h, ok := s.Hostname.Literal(); !ok || h != "mta.example.org" {
		t.Errorf("hostname = %q", h)
	}
	if ips, _ := s.IPStrategy.SourceIPs.Literal(); len(ips) != 1 || ips[0].String() != "192.0.2.10" {
		t.Errorf("source-ips = %v", ips)
	}
	if d, _ := s.Limits.Timeouts.Data.Literal(); d.Hours() != 26 {
		t.Errorf("data timeout = %v", d)
	}
	th := s.Limits.Throttles
	if th[0].Phase != expr.Connection || th[0].Rate.String() != "10/1m0s" || th[1].Phase != expr.Recipient || len(th[1].Key) != 0 {
		t.Errorf("throttles = %+v %+v", th[0], th[1])
	}
	var m expr.VM
	env := newEnv(s)
	env.LocalIP = "192.0.2.11"
	if got, _ := s.IPStrategy.EHLOHostname.Eval(&m, env, nil); got != "" {
		t.Errorf("ehlo-hostname with no match = %q, want the default (empty)", got)
	}
}

func TestParseHelpers(t *testing.T) {
	for in, want := range map[string]string{"90s": "1m30s", "2d": "48h0m0s", "1d12h": "36h0m0s", "0": "0s", "0s": "0s"} {
		d, err := ParseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"", "d", "5", "-5m", "1x", "2d-1h", "1.5d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
	for in, want := range map[time.Duration]string{90 * time.Second: "1m30s", 5 * time.Minute: "5m", 2 * time.Hour: "2h",
		90 * time.Minute: "1h30m", 48 * time.Hour: "2d", 0: "0s", 1500 * time.Millisecond: "1.5s"} {
		if got := FormatDuration(in); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"100/1m": "100/1m0s", "5/1s": "5/1s", "10/m": "10/1m0s", "1000/1d": "1000/24h0m0s"} {
		r, err := ParseRate(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for _, bad := range []string{"100", "0/1m", "x/1m", "5/0s", "5/-1m"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) succeeded", bad)
		}
	}
}
