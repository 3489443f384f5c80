package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoRun builds and runs the program as its README says, from the
// repository root, and checks every line it prints.
func TestGoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("go run compiles the program")
	}
	cmd := exec.Command("go", "run", "./examples/embed",
		"-from", "alice@example.org",
		"-to", "bob@example.com", "-to", "carol@example.org", "-to", "dave@outlook.com", "-to", "info@parked.example")
	cmd.Dir = "../.."
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run ./examples/embed: %v\n%s", err, stderr.String())
	}
	want := `example.com via mx (mx): deliver [bob@example.com] hosts mx1.example.com (192.0.2.25, 2001:db8::25; starttls require), mx2.example.com (192.0.2.26, 2001:db8::26; starttls require)
example.org via local (local): local [carol@example.org]
outlook.com via smarthost (relay): deliver [dave@outlook.com] hosts smtp.relay.example.net (198.51.100.25, 2001:db8:5100::25; starttls require)
parked.example via mx (mx): fail [info@parked.example] permanent dns: parked.example does not accept mail (null MX, RFC 7505)
`
	if got := stdout.String(); got != want {
		t.Errorf("go run ./examples/embed printed:\n%s\nwant:\n%s", got, want)
	}
}

// TestRun covers the other paths without compiling: a custom policy, a
// policy with errors, and bad usage.
func TestRun(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-c", "../strict-partners/policy.yaml", "-to", "ops@legacy-partner.example"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if want := "legacy-partner.example via mx (mx): deliver [ops@legacy-partner.example] hosts mail.legacy-partner.example (203.0.113.37; starttls require)\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"-c", "testdata/does-not-exist.yaml", "-to", "bob@example.com"}, &out, &errOut); code != 1 {
		t.Errorf("missing policy: exit %d, want 1", code)
	}
	if !strings.Contains(errOut.String(), "does-not-exist.yaml") {
		t.Errorf("missing policy: stderr %q does not name the file", errOut.String())
	}

	errOut.Reset()
	bad := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ntls:\n  starttls: requir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := run([]string{"-c", bad, "-to", "bob@example.com"}, &out, &errOut); code != 1 {
		t.Errorf("invalid policy: exit %d, want 1", code)
	}
	if want := bad + ":3:13: tls.starttls"; !strings.Contains(errOut.String(), want) {
		t.Errorf("invalid policy: stderr %q, want the positioned error %q...", errOut.String(), want)
	}

	errOut.Reset()
	if code := run([]string{"-c", "../quickstart/policy.yaml"}, &out, &errOut); code != 2 {
		t.Errorf("no -to: exit %d, want 2", code)
	}
}
