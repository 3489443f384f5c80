package engine_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestDecisionJSONReadable: the dry-run JSON is read by people, and
// conditions are full of "<", ">" and "&&": they are written as they are,
// in the trace and everywhere else in a group (a relay's secret source),
// not as \u003c escapes. The output stays valid JSON.
func TestDecisionJSONReadable(t *testing.T) {
	policy := `version: 1
routing:
  route:
    - if: retry_num < 3 && rcpt_domain != "example.org"
      then: esp
    - else: mx
  routes:
    esp:
      type: relay
      address: 192.0.2.9
      auth:
        username: u
        secret: {env: POSTERN_TEST_UNSET_SECRET}
`
	e := staticEngine(t, policy, "", false)
	d := evaluate(t, e, "a@example.org", "b@example.com")
	var b bytes.Buffer
	if err := d.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{`"if": "retry_num < 3 && rcpt_domain != \"example.org\""`, `"secret": "<from env POSTERN_TEST_UNSET_SECRET>"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the JSON has no %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `\u00`) {
		t.Errorf("the JSON escapes characters it need not:\n%s", out)
	}
	if !json.Valid(b.Bytes()) {
		t.Errorf("not valid JSON:\n%s", out)
	}
}
