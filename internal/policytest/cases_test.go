package policytest

import (
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/corpus"
)

func TestParseErrorsCarryLines(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"- name: a\n  to: [x@y]\n- name: b\n  too: [x@y]\n", `cases.yaml:4: unknown case key "too": did you mean "to"?`},
		{"- name: a\n  to: [x@y]\n  groups:\n    - rcpt: x@y\n      rout: mx\n", `cases.yaml:5: unknown fact "rout": did you mean "route"?`},
		{"- name: a\n  to: [x@y]\n  groups:\n    - route: mx\n", `cases.yaml:1: case "a": groups item 1 has no rcpt:`},
		{"- name: a\n  to: [x@y]\n  vars: {retry_num: soon}\n", `cases.yaml:1: case "a": vars: retry_num: "soon" is not an integer`},
		{"- to: [x@y]\n", `cases.yaml:1: a case needs a name`},
		{"- name: a\n", `cases.yaml:1: case "a": no recipients`},
		{"name: a\n", `cases.yaml:1: the file is a YAML list of cases`},
		{"- name: a\n  to: x@y\n", `cases.yaml:1: case:`},
	} {
		_, err := Parse([]byte(c.doc), "cases.yaml")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error starting %q", c.doc, err, c.want)
		}
	}
}

// TestParseKeepsGoodCases: every bad case is reported, the good ones
// are read with their lines.
func TestParseKeepsGoodCases(t *testing.T) {
	cases, err := Parse([]byte("- name: a\n  to: [x@y]\n- name: b\n  to: [x@y]\n  bogus: 1\n- name: c\n  to: [z@y]\n  seed: 7\n"), "f.yaml")
	if err == nil || !strings.Contains(err.Error(), `f.yaml:5: unknown case key "bogus"`) {
		t.Errorf("error %v", err)
	}
	if len(cases) != 2 || cases[0].Line != 1 || cases[1].Line != 6 || cases[1].SeedValue() != 7 || cases[0].SeedValue() != 1 {
		t.Errorf("cases %+v", cases)
	}
}

func TestCommandQuotes(t *testing.T) {
	c := Case{From: "", To: []string{"a b@example.com", "c@example.com"}, Vars: map[string]corpus.Scalar{"queue_name": "it's"}}
	want := `postern dry-run -c p.yaml --from '' --to 'a b@example.com' --to c@example.com --var 'queue_name=it'\''s' --seed 1`
	if got := c.Command("p.yaml"); got != want {
		t.Errorf("Command = %s\nwant      %s", got, want)
	}
}
