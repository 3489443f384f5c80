package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCheckBuildsTheEngine: check used to stat the zone file only, so
// `zone-file: /etc/hostname` passed check and failed dry-run. It now
// builds what the engine builds. An error about a file shows where and
// what, never the file's content: the zone parser used to echo the
// offending token, which put root's shadow line on the screen of
// whoever wrote the policy.
func TestCheckBuildsTheEngine(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "shadow")
	if err := os.WriteFile(secret, []byte("root:$y$j9T$SECRETHASH:19000:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, zone, want string
	}{
		{"not a zone file", secret, ":4:14: dns.zone-file: " + secret + ":1:"},
		{"a FIFO", fifo, "not a regular file (a FIFO)"},
		{"a device", "/dev/zero", "not a regular file (a device)"},
		{"missing", filepath.Join(dir, "nope.zone"), "no such file or directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := writePolicy(t, "version: 1\ndns:\n  resolver: static\n  zone-file: "+tt.zone+"\n")
			for _, cmd := range [][]string{{"check", "-c", p}, {"dry-run", "-c", p, "--from", "a@example.org", "--to", "b@example.com"}} {
				code, out, errs := runCLI(t, cmd...)
				if code != 1 || !strings.Contains(errs, tt.want) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", cmd[0], code, out, errs, tt.want)
				}
				if strings.Contains(errs+out, "SECRETHASH") || strings.Contains(errs+out, "root:") {
					t.Errorf("%s printed the file's content:\n%s", cmd[0], errs)
				}
			}
		})
	}
	// A list or a secret file that is a FIFO or a device: refused at
	// once, never read.
	for _, policy := range []string{
		"lists:\n  l: {file: " + fifo + "}\n",
		"lists:\n  l: {file: /dev/urandom}\n",
		"routing:\n  route: r\n  routes:\n    r: {type: relay, address: 192.0.2.1, auth: {username: u, secret: {file: " + fifo + "}}}\n",
	} {
		p := writePolicy(t, "version: 1\n"+policy)
		if code, _, errs := runCLI(t, "check", "-c", p); code != 1 || !strings.Contains(errs, "not a regular file") {
			t.Errorf("exit %d, stderr %q", code, errs)
		}
	}
}

// TestSendTimeoutReachesTheEvaluation: an expression that would run for
// minutes used to ignore send --timeout (no context reached the
// evaluator). Now the recipient is deferred when the time is up.
func TestSendTimeoutReachesTheEvaluation(t *testing.T) {
	dir := sendDir(t, "limits:\n  expressions:\n    max-steps: 100000000\nrouting:\n  route:\n"+
		"    - if: 'let x = 1..2000; all(x, all(x, all(x, # > 0)))'\n      then: local\n    - else: mx\n")
	r := runSend(t, dir, "", nil, "-c", "policy.yaml", "--from", "alice@sender.test", "--to", "bob@dest.test", "--timeout", "2s", "msg.eml")
	if r.code != 3 || !strings.Contains(r.stdout, "bob@dest.test TEMPORARY 451 ") || !strings.Contains(r.stdout, "evaluation interrupted") {
		t.Errorf("want exit 3 and a temporary failure of the route:\n%s", r)
	}
}

// TestSendCAFileBounded: --ca-file is read as a regular file of bounded
// size, like every file Postern reads (/dev/zero used to grow memory
// until the process died).
func TestSendCAFileBounded(t *testing.T) {
	dir := sendDir(t, "")
	r := runSend(t, dir, "", nil, "-c", "policy.yaml", "--from", "alice@sender.test", "--to", "bob@dest.test", "--ca-file", "/dev/zero", "msg.eml")
	if r.code != 1 || !strings.Contains(r.stderr, "--ca-file: /dev/zero: not a regular file (a device)") {
		t.Errorf("want exit 1 naming the file:\n%s", r)
	}
}
