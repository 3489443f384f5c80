package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// postern tlsrpt turns the results of send --format json into RFC 8460
// reports: one per domain and day, records shared by the recipients of a
// group counted once, failures grouped.
func TestTLSRPTCommand(t *testing.T) {
	rec := func(domain, typ, when string) string {
		r := `{"policy_type":"sts","policy_domain":"` + domain + `","policy_strings":["version: STSv1","mode: enforce","mx: mx.` + domain + `","max_age: 86400"],` +
			`"mx_host":"mx.` + domain + `","receiving_mx_hostname":"mx.` + domain + `","receiving_ip":"192.0.2.25","sending_ip":"192.0.2.10","time":"` + when + `"`
		if typ != "" {
			r += `,"result_type":"` + typ + `","failure_reason":"certificate verification failed"`
		}
		return r + "}"
	}
	ok1 := rec("example.com", "", "2026-11-30T10:00:00Z")
	bad1 := rec("example.com", "certificate-not-trusted", "2026-11-30T11:00:00Z")
	// One group of two recipients (the same records on both), then a
	// result of another day, then one object alone.
	input := `[
  {"recipient":"a@example.com","status":"delivered","route":"mx","duration":"1s","tlsrpt":[` + bad1 + `,` + ok1 + `]},
  {"recipient":"b@example.com","status":"delivered","route":"mx","duration":"1s","tlsrpt":[` + bad1 + `,` + ok1 + `]}
]
{"recipient":"c@example.net","status":"delivered","route":"mx","duration":"1s","tlsrpt":[` + rec("example.net", "", "2026-12-01T09:00:00Z") + `]}
{"recipient":"d@example.org","status":"temporary","route":"mx","duration":"1s"}
`
	var stdout, stderr bytes.Buffer
	code := runIO([]string{"tlsrpt", "--org", "Example Sender", "--contact", "tlsrpt@sender.example"}, strings.NewReader(input), &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var reports []struct {
		Org   string `json:"organization-name"`
		Range struct {
			Start string `json:"start-datetime"`
		} `json:"date-range"`
		Policies []struct {
			Policy struct {
				Domain string `json:"policy-domain"`
			} `json:"policy"`
			Summary struct {
				OK   int `json:"total-successful-session-count"`
				Fail int `json:"total-failure-session-count"`
			} `json:"summary"`
			Details []struct {
				Type  string `json:"result-type"`
				Count int    `json:"failed-session-count"`
			} `json:"failure-details"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &reports); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if len(reports) != 2 {
		t.Fatalf("%d reports, want 2 (two domains on two days):\n%s", len(reports), stdout.String())
	}
	com := reports[0]
	if com.Org != "Example Sender" || !strings.HasPrefix(com.Range.Start, "2026-11-30") || len(com.Policies) != 1 ||
		com.Policies[0].Policy.Domain != "example.com" {
		t.Fatalf("first report: %+v", com)
	}
	p := com.Policies[0]
	if p.Summary.OK != 1 || p.Summary.Fail != 1 || len(p.Details) != 1 || p.Details[0].Type != "certificate-not-trusted" || p.Details[0].Count != 1 {
		t.Errorf("example.com: %+v; want 1 success and 1 certificate-not-trusted failure (records shared by two recipients count once)", p)
	}
	if !strings.HasPrefix(reports[1].Range.Start, "2026-12-01") || reports[1].Policies[0].Policy.Domain != "example.net" {
		t.Errorf("second report: %+v", reports[1])
	}

	// --day keeps one day; missing --org is a usage error.
	stdout.Reset()
	if code := runIO([]string{"tlsrpt", "--org", "X", "--contact", "a@sender.example", "--day", "2026-12-01"}, strings.NewReader(input), &stdout, &stderr); code != exitOK ||
		strings.Count(stdout.String(), "organization-name") != 1 || !strings.Contains(stdout.String(), "example.net") {
		t.Errorf("--day: exit %d\n%s", code, stdout.String())
	}
	if code := runIO([]string{"tlsrpt", "--contact", "a@sender.example"}, strings.NewReader(input), &stdout, &stderr); code != exitUsage {
		t.Errorf("without --org: exit %d, want %d", code, exitUsage)
	}
	stderr.Reset()
	if code := runIO([]string{"tlsrpt", "--org", "X", "--contact", "a@sender.example"}, strings.NewReader("[{"), &stdout, &stderr); code != exitFailed ||
		!strings.Contains(stderr.String(), "standard input") {
		t.Errorf("bad JSON: exit %d, %s", code, stderr.String())
	}
}
