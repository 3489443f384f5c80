package examples_test

// TestCases runs the dry-run cases of every example, examples/NAME/cases.yaml
// (the format is docs/testing.md), with the code of `postern test`: the
// example's policy is loaded as the CLI loads it, with its own static
// resolver (dns: resolver: static, zone-file: zone.txt). `make test` also
// runs each file through the command itself.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/policytest"
)

func TestCases(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			cases, err := policytest.ReadFile(filepath.Join(dir, "cases.yaml"))
			if err != nil {
				t.Fatalf("every example needs dry-run cases that load: %v", err)
			}
			policy := filepath.Join(dir, "policy.yaml")
			eng, err := engine.LoadFile(policy, engine.Options{Hostname: "mta.example.org"})
			if err != nil {
				t.Fatalf("%s does not load:\n%v", dir, err)
			}
			for i := range cases {
				c := &cases[i]
				t.Run(c.Name, func(t *testing.T) {
					res, err := policytest.Run(context.Background(), eng, c)
					if err != nil {
						t.Fatal(err)
					}
					if res.Passed() {
						return
					}
					var lines []string
					for _, p := range res.Problems {
						lines = append(lines, p.Rcpt+" "+p.Host+" "+p.Fact+": got "+p.Got+", want "+p.Want)
					}
					var text strings.Builder
					_ = res.Decision.WriteText(&text)
					t.Errorf("%s:%d: %s\n  %s\n\ndecision:\n%s", c.File, c.Line, c.Command(policy),
						strings.Join(lines, "\n  "), text.String())
				})
			}
		})
	}
}
