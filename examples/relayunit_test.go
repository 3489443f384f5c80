package examples_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/testbed"
)

// TestRelaySystemdUnit: examples/relay/postern-relay.service passes
// systemd-analyze verify with a real postern binary in place of
// /usr/local/bin/postern, and its ExecStart is a command line `postern
// relay` accepts (with a policy that does not exist, it stops at the
// policy: exit 1, not a usage error).
func TestRelaySystemdUnit(t *testing.T) {
	analyze := testbed.Require(t, "systemd-analyze")
	dir := t.TempDir()
	bin := filepath.Join(dir, "postern")
	build := exec.Command("go", "build", "-o", bin, "../cmd/postern")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unit, err := os.ReadFile("relay/postern-relay.service")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/postern", bin)
	path := filepath.Join(dir, "postern-relay.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// The unit's user need not exist on a test machine.
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, "postern") {
			continue
		}
		if l != "" && !strings.Contains(l, "user") && !strings.Contains(l, "User") {
			problems = append(problems, l)
		}
	}
	if len(problems) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}

	var execStart string
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			execStart = v
		}
	}
	args := strings.Fields(execStart)
	if len(args) < 2 || args[0] != bin || args[1] != "relay" {
		t.Fatalf("ExecStart=%q", execStart)
	}
	for i, a := range args {
		switch a {
		case "-c":
			args[i+1] = filepath.Join(dir, "missing.yaml")
		case "--spool":
			args[i+1] = filepath.Join(dir, "spool")
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "missing.yaml") {
		t.Errorf("ExecStart with a missing policy: %v, want exit 1 naming the policy\n%s", err, out)
	}
}
