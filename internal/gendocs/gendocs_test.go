package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/postern-mta/postern/policies"
)

// TestDocsUpToDate fails when a generated file — docs/policy.md,
// docs/variables.md, docs/policy.schema.json — differs from what the code
// generates.
func TestDocsUpToDate(t *testing.T) {
	dir := t.TempDir()
	if err := write(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		want, err := os.ReadFile(filepath.Join(dir, d.name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "..", "docs", d.name))
		if err != nil {
			t.Errorf("docs/%s: %v: run make docs", d.name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("docs/%s is out of date (%s): run make docs", d.name, firstDiff(got, want))
		}
	}
}

// firstDiff describes the first line where the committed file differs
// from the generated one.
func firstDiff(committed, generated []byte) string {
	c, g := strings.Split(string(committed), "\n"), strings.Split(string(generated), "\n")
	for i := 0; i < len(c) && i < len(g); i++ {
		if c[i] != g[i] {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, c[i], g[i])
		}
	}
	return fmt.Sprintf("committed %d lines, generated %d", len(c), len(g))
}

var (
	yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")
	fileRef   = regexp.MustCompile(`\{file: ([^}]+)\}`)
)

// TestCompletePoliciesLoad loads every YAML block of the generated docs
// that is a whole policy (starts with "version: 1"), except the four that
// show load errors: the reference must not show a policy the loader refuses. Files the policies name ({file: PATH})
// are created empty next to them.
func TestCompletePoliciesLoad(t *testing.T) {
	n := 0
	for _, d := range docs {
		b, err := d.render()
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
			policy := m[1]
			if !strings.HasPrefix(policy, "version: 1\n") || policy == policyErrorsExample || policy == phaseErrorExample || policy == sessionErrorExample || policy == relayGuardExample {
				continue // a fragment, or meant to fail (renderPolicy checks that it does)
			}
			n++
			dir := t.TempDir()
			for _, ref := range fileRef.FindAllStringSubmatch(policy, -1) {
				path := filepath.Join(dir, ref[1])
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte("x\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			name := filepath.Join(dir, "policy.yaml")
			_, err := policies.Parse(name, []byte(policy), policies.Options{Hostname: "mta.example.org"})
			if err != nil {
				t.Errorf("%s, YAML block %d does not load:\n%s\n%v", d.name, i+1, policy, err)
			}
		}
	}
	if n < 5 {
		t.Errorf("found %d complete policies in the docs; the generator or this test lost them", n)
	}
}

// TestCode checks inline code with backticks inside.
func TestCode(t *testing.T) {
	for in, want := range map[string]string{
		"a":      "`a`",
		"a`b":    "``a`b``",
		"`a`":    "`` `a` ``",
		"x || y": "`x || y`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
	if got := cell("a | b\nc"); got != `a \| b c` {
		t.Errorf("cell: %q", got)
	}
}
