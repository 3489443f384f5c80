package tlsrpt

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath is the report's JSON Schema, docs/tlsrpt-report.schema.json.
var schemaPath = filepath.Join("..", "..", "docs", "tlsrpt-report.schema.json")

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat() // date-time, email, ipv4/ipv6 and uri are checked
	abs, err := filepath.Abs(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(abs)
	if err != nil {
		t.Fatalf("%s does not compile: %v", schemaPath, err)
	}
	return s
}

// recordedResults is a realistic day of one sender towards example.net and
// example.org: successes, an MTA-STS policy fetch error, a DANE mismatch,
// a server without STARTTLS, and a domain without any policy.
func recordedResults(t *testing.T) []Result {
	day := at(t, "2026-04-01T00:00:00Z")
	mx2IP := netip.MustParseAddr("2001:db8:2::25")
	rs := []Result{
		{PolicyType: STS, PolicyDomain: "example.net", PolicyStrings: stsLines, MXHost: "*.mail.example.net",
			SendingIP: sender1, ReceivingIP: mx1IP, ReceivingMXHostname: "mx1.mail.example.net", ReceivingMXHelo: "mx1.mail.example.net"},
		{PolicyType: STS, PolicyDomain: "example.net", ResultType: STSPolicyFetchError,
			SendingIP: sender1, FailureReason: "GET https://mta-sts.example.net/.well-known/mta-sts.txt: 404 Not Found"},
		{PolicyType: TLSA, PolicyDomain: "example.net", PolicyStrings: tlsaMX1, MXHost: "mx2.mail.example.net",
			SendingIP: sender2, ReceivingIP: mx2IP, ReceivingMXHostname: "mx2.mail.example.net",
			ResultType: TLSAInvalid, FailureReason: "no TLSA record matches the certificate chain"},
		{PolicyType: NoPolicyFound, PolicyDomain: "example.org", SendingIP: sender1,
			ReceivingIP: netip.MustParseAddr("203.0.113.7"), ReceivingMXHostname: "mx.example.org"},
		{PolicyType: NoPolicyFound, PolicyDomain: "example.org", SendingIP: sender2, ResultType: StartTLSNotSupported,
			ReceivingIP: netip.MustParseAddr("2001:db8:3::25"), ReceivingMXHostname: "mx.example.org",
			FailureReason: "https://reports.sender.example/why?id=42"},
	}
	for i := range rs {
		rs[i].Time = day.Add(time.Duration(i) * time.Hour)
	}
	return rs
}

func recordedReports(t *testing.T) []*Report {
	a := NewAggregator()
	for _, r := range recordedResults(t) {
		a.Add(r)
		a.Add(r)
	}
	return a.Reports(at(t, "2026-04-01T00:00:00Z"), "Sender Org", "tlsrpt@sender.example", true)
}

// toValue turns JSON into the value representation the validator wants.
func toValue(t *testing.T, data []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSchemaValidatesReports: the reports built from recorded results
// validate against docs/tlsrpt-report.schema.json.
func TestSchemaValidatesReports(t *testing.T) {
	s := compileSchema(t)
	reports := recordedReports(t)
	if len(reports) != 2 {
		t.Fatalf("got %d reports, want 2", len(reports))
	}
	for _, r := range reports {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(toValue(t, data)); err != nil {
			t.Errorf("report for %s does not match %s:\n%v\n%s", r.Domain, schemaPath, err, data)
		}
	}
}

// TestSchemaRejects: the schema checks something. Each document is a valid
// report with one thing broken.
func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	data, err := recordedReports(t)[0].MarshalJSON() // example.net
	if err != nil {
		t.Fatal(err)
	}
	policy := func(m map[string]any, i int) map[string]any {
		return m["policies"].([]any)[i].(map[string]any)
	}
	detail := func(m map[string]any, i int) map[string]any {
		return policy(m, i)["failure-details"].([]any)[0].(map[string]any)
	}
	// example.net's policies, in order: sts whose fetch failed (no
	// policy-string lines, no mx-host), sts (success), tlsa (failure).
	cases := []struct {
		name   string
		break_ func(m map[string]any)
	}{
		{"no organization-name", func(m map[string]any) { delete(m, "organization-name") }},
		{"no report-id", func(m map[string]any) { delete(m, "report-id") }},
		{"no policies", func(m map[string]any) { delete(m, "policies") }},
		{"empty policies", func(m map[string]any) { m["policies"] = []any{} }},
		{"no end-datetime", func(m map[string]any) { delete(m["date-range"].(map[string]any), "end-datetime") }},
		{"start-datetime not a date", func(m map[string]any) { m["date-range"].(map[string]any)["start-datetime"] = "yesterday" }},
		{"start-datetime not UTC", func(m map[string]any) {
			m["date-range"].(map[string]any)["start-datetime"] = "2026-04-01T02:00:00+02:00"
		}},
		{"contact-info not an address", func(m map[string]any) { m["contact-info"] = "the postmaster" }},
		{"unknown top-level field", func(m map[string]any) { m["verdict"] = "ok" }},
		{"policy-type not an RFC word", func(m map[string]any) { policy(m, 1)["policy"].(map[string]any)["policy-type"] = "dane" }},
		{"sts policy without policy-string", func(m map[string]any) { delete(policy(m, 1)["policy"].(map[string]any), "policy-string") }},
		{"policy-string a string", func(m map[string]any) { policy(m, 1)["policy"].(map[string]any)["policy-string"] = "version: STSv1" }},
		{"mx-host an array", func(m map[string]any) {
			policy(m, 1)["policy"].(map[string]any)["mx-host"] = []any{"*.mail.example.net"}
		}},
		{"no policy-domain", func(m map[string]any) { delete(policy(m, 1)["policy"].(map[string]any), "policy-domain") }},
		{"count a string", func(m map[string]any) {
			policy(m, 1)["summary"].(map[string]any)["total-successful-session-count"] = "2"
		}},
		{"count negative", func(m map[string]any) { policy(m, 1)["summary"].(map[string]any)["total-failure-session-count"] = -1 }},
		{"count fractional", func(m map[string]any) { policy(m, 1)["summary"].(map[string]any)["total-failure-session-count"] = 1.5 }},
		{"no summary", func(m map[string]any) { delete(policy(m, 1), "summary") }},
		{"no failure-details", func(m map[string]any) { delete(policy(m, 1), "failure-details") }},
		{"result-type not an RFC word", func(m map[string]any) { detail(m, 2)["result-type"] = "tls-failed" }},
		{"no result-type", func(m map[string]any) { delete(detail(m, 2), "result-type") }},
		{"no failed-session-count", func(m map[string]any) { delete(detail(m, 2), "failed-session-count") }},
		{"sending-mta-ip not an IP", func(m map[string]any) { detail(m, 2)["sending-mta-ip"] = "mail.sender.example" }},
		{"receiving-ip a number", func(m map[string]any) { detail(m, 2)["receiving-ip"] = 3325256711 }},
		{"unknown detail field", func(m map[string]any) { detail(m, 2)["certificate"] = "MII..." }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			check := func() error {
				b, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				return s.Validate(toValue(t, b))
			}
			if err := check(); err != nil {
				t.Fatalf("the unbroken report does not validate: %v", err)
			}
			c.break_(m)
			if err := check(); err == nil {
				t.Errorf("schema accepts a report with %s", c.name)
			}
		})
	}
}
