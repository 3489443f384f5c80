package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writePolicy(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckExitCodes(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	if code, out, errs := runCLI(t, "check", "-c", "../../examples/quickstart/policy.yaml"); code != 0 || !strings.HasSuffix(out, ": ok\n") || errs != "" {
		t.Errorf("valid policy: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	bad := writePolicy(t, "version: 1\ntls:\n  starttls:\n    - if: mx == \"a\"\n      then: requir\nlimits:\n  mx: many\n")
	code, _, errs := runCLI(t, "check", "-c", bad)
	want := bad + ":5:13: tls.starttls[0].then: \"requir\" is not one of disable, optional, require: did you mean \"require\"?\n" +
		bad + ":7:7: limits.mx: \"many\" is not an integer\n" +
		bad + ": 2 errors\n"
	if code != 1 || errs != want {
		t.Errorf("bad policy: exit %d, stderr:\n%s\nwant:\n%s", code, errs, want)
	}
	if code, _, errs := runCLI(t, "check", "-c", filepath.Join(t.TempDir(), "missing.yaml")); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
	for _, args := range [][]string{{"check"}, {"check", "-x"}, {"check", "-c", bad, "extra"}, {"frobnicate"}, {}} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestCheckWarningsStillExitZero(t *testing.T) {
	p := writePolicy(t, "version: 1\nlists:\n  unused: [a.example]\n")
	code, out, errs := runCLI(t, "check", "-c", p)
	// The warning, then the verdict, on one stream.
	w := strings.Index(out, "warning: list unused is never used")
	if code != 0 || errs != "" || w < 0 || !strings.HasSuffix(out, "ok (1 warning)\n") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// check also reports the engine's warnings: tls.dane require with a
// resolver that cannot validate DNSSEC (a plain remote server; nothing is
// contacted to find out).
func TestCheckWarnsDANERequireWithoutValidation(t *testing.T) {
	p := writePolicy(t, "version: 1\ntls:\n  dane: require\ndns:\n  resolver: custom\n  servers: [udp://192.0.2.1:53]\n")
	code, out, errs := runCLI(t, "check", "-c", p)
	if code != 0 || !strings.Contains(out, "ok (1 warning)") || !strings.Contains(out, "tls.dane: warning: require needs a resolver that validates DNSSEC") || errs != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	p = writePolicy(t, "version: 1\ntls:\n  dane: require\ndns:\n  resolver: custom\n  servers: [udp://127.0.0.1:53]\n")
	if code, out, errs := runCLI(t, "check", p); code != 0 || strings.Contains(out, "warning") || errs != "" {
		t.Errorf("loopback resolver: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestPrintDefaultsLoads(t *testing.T) {
	code, out, _ := runCLI(t, "check", "--print-defaults")
	if code != 0 || !strings.Contains(out, "starttls: optional") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	p := writePolicy(t, out)
	if code, _, errs := runCLI(t, "check", "-c", p); code != 0 || errs != "" {
		t.Errorf("printed defaults: exit %d, stderr %q", code, errs)
	}
}

func TestDryRun(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "top-secret-value")
	args := []string{"dry-run", "-c", "../../examples/quickstart/policy.yaml", "--from", "alice@example.org",
		"--to", "bob@example.com", "--to", "dave@outlook.com", "--to", "info@parked.example", "--seed", "7"}
	code, text, errs := runCLI(t, args...)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"via mx: DELIVER", "via smarthost: DELIVER", "parked.example via mx: FAIL",
		"=> no", "<from env SMARTHOST_SECRET>"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
	code, js, _ := runCLI(t, append(args, "--format", "json")...)
	if code != 0 {
		t.Fatalf("json: exit %d", code)
	}
	var doc struct {
		Groups []struct {
			Outcome string
			Route   struct{ Name string }
		}
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil || len(doc.Groups) != 3 || doc.Groups[2].Outcome != "fail" {
		t.Errorf("json: %v, %+v", err, doc)
	}
	if strings.Contains(text+js, "top-secret-value") {
		t.Error("the secret's value was printed")
	}
	// The same seed gives the same output.
	_, again, _ := runCLI(t, args...)
	if again != text {
		t.Error("two runs with --seed 7 differ")
	}
	// A retry after TLS failures: starttls becomes optional.
	_, retry, _ := runCLI(t, "dry-run", "-c", "../../examples/quickstart/policy.yaml", "--from", "a@example.org",
		"--to", "bob@example.com", "--var", "retry_num=3", "--var", "last_error=tls")
	if !strings.Contains(retry, "rule 1  if retry_num > 2 && last_error == \"tls\"  => YES -> optional") || !strings.Contains(retry, "tls: starttls optional") {
		t.Errorf("retry run:\n%s", retry)
	}
	// --no-dns: recipient-phase decisions only, no lookups, no hosts.
	_, nodns, _ := runCLI(t, "dry-run", "-c", "../../examples/quickstart/policy.yaml", "--from", "a@example.org",
		"--to", "bob@example.com", "--no-dns")
	if strings.Contains(nodns, "hosts:") || strings.Contains(nodns, "dns:") || !strings.Contains(nodns, "routing.route") {
		t.Errorf("--no-dns run:\n%s", nodns)
	}
}

func TestDryRunUsage(t *testing.T) {
	base := []string{"dry-run", "-c", "../../examples/quickstart/policy.yaml", "--from", "a@example.org"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "b@example.com", "--var", "retry_num=x"}, `--var retry_num: "x" is not an integer`},
		{[]string{"--to", "b@example.com", "--var", "mx=a"}, "--var mx: a host-phase variable"},
		{[]string{"--to", "b@example.com", "--var", "nope=1"}, "unknown variable (recipient-phase variables: sender,"},
		{[]string{"--to", "b@example.com", "--var", "last_error=tsl"}, `"tsl" is not one of none, dns,`},
		{[]string{"--to", "b@example.com", "--meta", "novalue"}, `--meta "novalue": write K=V`},
		{[]string{"--to", "b@example.com", "--format", "xml"}, `--format "xml"`},
		{[]string{"--to", "b@example.com", "--seed", "-1"}, `--seed "-1"`},
		{nil, "at least one --to is required"},
	} {
		code, _, errs := runCLI(t, append(append([]string{}, base...), tc.args...)...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
	bad := writePolicy(t, "version: 2\n")
	if code, _, errs := runCLI(t, "dry-run", "-c", bad, "--from", "a@b.example", "--to", "c@d.example"); code != 1 || !strings.Contains(errs, "version") {
		t.Errorf("bad policy: exit %d, %q", code, errs)
	}
}

// check --strict fails on warnings; --format json gives one object with
// the verdict, errors and warnings, positioned; the file may be the
// argument.
func TestCheckStrictAndJSON(t *testing.T) {
	warn := writePolicy(t, "version: 1\nlists:\n  unused: [a.example]\n")
	code, out, errs := runCLI(t, "check", "--strict", warn)
	if code != 1 || out != "" || !strings.Contains(errs, "list unused is never used") || !strings.HasSuffix(errs, ": 1 warning (--strict: warnings fail)\n") {
		t.Errorf("--strict: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	type problem struct {
		Line    int    `json:"line"`
		Setting string `json:"setting"`
		Message string `json:"message"`
	}
	var report struct {
		File     string    `json:"file"`
		OK       bool      `json:"ok"`
		Errors   []problem `json:"errors"`
		Warnings []problem `json:"warnings"`
	}
	code, out, _ = runCLI(t, "check", "--format", "json", warn)
	if err := json.Unmarshal([]byte(out), &report); err != nil || code != 0 || !report.OK || report.File != warn ||
		len(report.Errors) != 0 || len(report.Warnings) != 1 || report.Warnings[0].Line != 3 || report.Warnings[0].Setting != "lists.unused" {
		t.Errorf("json, warnings: exit %d, %v, %+v\n%s", code, err, report, out)
	}
	bad := writePolicy(t, "version: 1\ntls:\n  starttls: sometimes\n")
	code, out, _ = runCLI(t, "check", "--format", "json", "-c", bad)
	if err := json.Unmarshal([]byte(out), &report); err != nil || code != 1 || report.OK || len(report.Errors) != 1 ||
		report.Errors[0].Setting != "tls.starttls" || report.Errors[0].Line != 3 {
		t.Errorf("json, error: exit %d, %v, %+v\n%s", code, err, report, out)
	}
	if code, _, _ := runCLI(t, "check", "--format", "yaml", bad); code != exitUsage {
		t.Errorf("--format yaml: exit %d", code)
	}
	if code, _, _ := runCLI(t, "check", bad, "extra"); code != exitUsage {
		t.Errorf("two files: exit %d", code)
	}
}

// -h and --help print the usage and exit 0, for every command; --version
// is version.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"check", "-h"}, {"dry-run", "--help"}, {"send", "-h"}, {"tlsrpt", "-help"}, {"--help"}, {"help"}} {
		code, out, errs := runCLI(t, args...)
		if code != 0 || !strings.Contains(out+errs, "usage:") {
			t.Errorf("%v: exit %d, output %q", args, code, out+errs)
		}
	}
	if code, out, _ := runCLI(t, "--version"); code != 0 || !strings.HasPrefix(out, "postern ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// dry-run --brief: one line per recipient, in order, with the route, the
// outcome, the first host, address, TLS in effect and source, or why not.
func TestDryRunBrief(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	code, out, errs := runCLI(t, "dry-run", "-c", "../../examples/quickstart/policy.yaml", "--seed", "1", "--brief",
		"--from", "alice@example.org", "--to", "bob@example.com", "--to", "carol@example.org", "--to", "info@parked.example", "--to", "bob@example.com")
	want := "bob@example.com route=mx deliver host=mx1.example.com addr=192.0.2.25 tls=required/pkix source=-\n" +
		"carol@example.org route=local local\n" +
		"info@parked.example route=mx fail class=dns \"parked.example does not accept mail (null MX, RFC 7505)\"\n" +
		"bob@example.com route=mx deliver host=mx1.example.com addr=192.0.2.25 tls=required/pkix source=-\n"
	if code != 0 || errs != "" || out != want {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errs, out, want)
	}
}

// Flags come before and after the arguments, as people write them; "--"
// ends them.
func TestFlagsAfterArguments(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	if code, out, errs := runCLI(t, "check", "../../examples/quickstart/policy.yaml", "--format", "json", "--strict"); code != 0 ||
		!strings.Contains(out, `"strict": true,`) {
		t.Errorf("check POLICY --format json --strict: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "check", "--", "-strict"); code != 1 || !strings.Contains(errs, "-strict") {
		t.Errorf(`check -- -strict: exit %d (want 1: "-strict" is the file), stderr %q`, code, errs)
	}
	if code, _, errs := runCLI(t, "check", "../../examples/quickstart/policy.yaml", "--bogus"); code != 2 || !strings.Contains(errs, "flag provided but not defined: -bogus") {
		t.Errorf("check POLICY --bogus: exit %d, stderr %q", code, errs)
	}
}
