package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const quickstart = "../../examples/quickstart/policy.yaml"

func writeCases(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cases.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTestCommandExamples runs every example's cases through the command,
// as `make test` does with the binary.
func TestTestCommandExamples(t *testing.T) {
	for _, env := range []string{"SMARTHOST_SECRET", "SMARTHOST_PASSWORD", "BRAND_A_RELAY_SECRET"} {
		t.Setenv(env, "test-secret")
	}
	dirs, _ := filepath.Glob("../../examples/*/cases.yaml")
	if len(dirs) == 0 {
		t.Fatal("no examples with cases")
	}
	for _, cases := range dirs {
		dir := filepath.Dir(cases)
		code, out, errs := runCLI(t, "test", "-c", filepath.Join(dir, "policy.yaml"), cases)
		if code != 0 || !strings.HasPrefix(out, "ok  \t"+cases+"\t") || errs != "" {
			t.Errorf("%s: exit %d, stdout:\n%s\nstderr:\n%s", dir, code, out, errs)
		}
	}
}

func TestTestCommandPassing(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	cases := writeCases(t, `- name: others direct
  from: alice@example.org
  to: [bob@example.com]
  groups:
    - rcpt: bob@example.com
      route: mx
      hosts: [mx1.example.com, mx2.example.com]
- name: microsoft via the smarthost
  from: alice@example.org
  to: [bob@outlook.com]
  groups:
    - rcpt: bob@outlook.com
      route: smarthost
`)
	code, out, errs := runCLI(t, "test", "-c", quickstart, cases)
	if want := "ok  \t" + cases + "\t2 cases\n"; code != 0 || out != want || errs != "" {
		t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, out, want, errs)
	}
	code, out, _ = runCLI(t, "test", "-v", "-run", "microsoft", "-c", quickstart, cases)
	if want := "--- PASS: microsoft via the smarthost\nok  \t" + cases + "\t1 case\n"; code != 0 || out != want {
		t.Errorf("-v -run: exit %d, stdout %q, want %q", code, out, want)
	}
}

// TestTestCommandFailing compares the whole report of a failing case:
// each fact with got and want and the trace steps that decided it, the
// dry-run to rerun, the file's FAIL line, exit 1.
func TestTestCommandFailing(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	cases := writeCases(t, `- name: passes
  from: alice@example.org
  to: [carol@example.org]
  groups:
    - rcpt: carol@example.org
      route: local
- name: wrong route and TLS
  from: alice@example.org
  to: [bob@example.com]
  vars: {retry_num: "3", last_error: tls}
  groups:
    - rcpt: bob@example.com
      route: smarthost
      host: mx2.example.com
      starttls: require
`)
	code, out, errs := runCLI(t, "test", "-c", quickstart, cases)
	want := `--- FAIL: wrong route and TLS (` + cases + `:7)
    bob@example.com: route
        got:  "mx"
        want: "smarthost"
        routing.route                rule 1  if is_local_domain(rcpt_domain)  => no  ../../examples/quickstart/policy.yaml:25 [rcpt bob@example.com]
        routing.route                rule 2  if in_list("microsoft", rcpt_domain)  => no  ../../examples/quickstart/policy.yaml:27 [rcpt bob@example.com]
        routing.route                else  => mx  ../../examples/quickstart/policy.yaml:29 [rcpt bob@example.com]
    bob@example.com: host mx2.example.com: starttls
        got:  "optional"
        want: "require"
        tls.starttls                 rule 1  if retry_num > 2 && last_error == "tls"  => YES -> optional  ../../examples/quickstart/policy.yaml:43 [host mx2.example.com]
    rerun: postern dry-run -c ../../examples/quickstart/policy.yaml --from alice@example.org --to bob@example.com --var last_error=tls --var retry_num=3 --seed 1
FAIL	` + cases + `	1 of 2 cases failed
FAIL
`
	if code != 1 || out != want || errs != "" {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errs, out, want)
	}
}

func TestTestCommandBadInput(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	typo := writeCases(t, "- name: typo\n  from: a@example.org\n  to: [b@example.com]\n  groups:\n    - rcpt: b@example.com\n      starttsl: require\n")
	code, out, _ := runCLI(t, "test", "-c", quickstart, typo)
	if want := typo + `:6: unknown fact "starttsl": did you mean "starttls"?`; code != 1 || !strings.HasPrefix(out, want) ||
		!strings.Contains(out, "FAIL\t"+typo+"\tcases file does not load\n") {
		t.Errorf("typo: exit %d, stdout %q, want it to start %q", code, out, want)
	}
	other := writeCases(t, "- name: other rcpt\n  from: a@example.org\n  to: [b@example.com]\n  groups:\n    - rcpt: c@example.com\n      route: mx\n")
	if code, out, _ := runCLI(t, "test", "-c", quickstart, other); code != 1 || !strings.Contains(out, "groups item 1 is about c@example.com, which the case does not send to") {
		t.Errorf("rcpt not sent to: exit %d, stdout %q", code, out)
	}
	badVar := writeCases(t, "- name: bad var\n  from: a@example.org\n  to: [b@example.com]\n  vars: {last_error: timeout}\n")
	if code, out, _ := runCLI(t, "test", "-c", quickstart, badVar); code != 1 || !strings.Contains(out, `:1: case "bad var": vars: last_error: "timeout" is not one of`) {
		t.Errorf("bad var: exit %d, stdout %q", code, out)
	}
	for _, args := range [][]string{{"test"}, {"test", "-c", quickstart}, {"test", typo}, {"test", "-run", "(", "-c", quickstart, typo}} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errs := runCLI(t, "test", "-c", "missing.yaml", typo); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing policy: exit %d, stderr %q", code, errs)
	}
}
