package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const batchCorpus = `{"id":"Q1","from":"alice@example.org","to":["bob@example.com","carol@example.org"]}
{"from":"alice@example.org","to":["dave@outlook.com"],"vars":{"retry_num":3,"last_error":"tls"}}
{"from":"","to":["info@parked.example"]}
`

func runDryRun(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runIO(append([]string{"dry-run", "-c", quickstart, "--seed", "1"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestDryRunEnvelopesBrief: every recipient of every envelope, in order;
// the second envelope's vars (a fourth attempt after TLS failures) make
// its TLS opportunistic.
func TestDryRunEnvelopesBrief(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	code, out, errs := runDryRun(t, batchCorpus, "--envelopes", "-", "--brief")
	want := `bob@example.com route=mx deliver host=mx1.example.com addr=192.0.2.25 tls=required/pkix source=-
carol@example.org route=local local
dave@outlook.com route=smarthost deliver host=smtp.relay.example.net addr=198.51.100.25 tls=opportunistic source=-
info@parked.example route=mx fail class=dns "parked.example does not accept mail (null MX, RFC 7505)"
`
	if code != 0 || out != want || errs != "" {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errs, out, want)
	}
}

// TestDryRunEnvelopesJSONL: one decision per line, each valid against
// the dry-run schema, in corpus order; --var applies to every envelope.
func TestDryRunEnvelopesJSONL(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	abs, _ := filepath.Abs("../../docs/dry-run.schema.json")
	schema, err := jsonschema.NewCompiler().Compile(abs)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runDryRun(t, batchCorpus, "--envelopes", "-", "--format", "jsonl", "--var", "queue_name=bulk")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || errs != "" || len(lines) != 3 {
		t.Fatalf("exit %d, stderr %q, %d lines:\n%s", code, errs, len(lines), out)
	}
	for i, line := range lines {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if err := schema.Validate(v); err != nil {
			t.Errorf("line %d does not match the schema: %v", i+1, err)
		}
	}
	var second struct {
		Message struct{ Recipients []string }
		Groups  []struct{ Route struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil || second.Message.Recipients[0] != "dave@outlook.com" {
		t.Errorf("line 2 is not the second envelope: %s", lines[1])
	}
	// The single-message form writes one line too.
	if code, out, _ := runDryRun(t, "", "--from", "a@example.org", "--to", "b@example.com", "--format", "jsonl"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("--format jsonl for one message: exit %d, %q", code, out)
	}
}

func TestDryRunEnvelopesText(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	code, out, _ := runDryRun(t, batchCorpus, "--envelopes", "-")
	if code != 0 || strings.Count(out, "\npolicy  ") != 2 || !strings.HasPrefix(out, "policy  ") || !strings.Contains(out, "\n\npolicy  ") {
		t.Errorf("exit %d: want three decisions separated by blank lines:\n%s", code, out)
	}
}

func TestDryRunEnvelopesBadInput(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	corpus := "{\"from\":\"a@example.org\",\"to\":[\"b@example.com\"]}\n{\"from\":\"a@example.org\",\"to\":\"c@example.com\"}\n" +
		"{\"from\":\"a@example.org\",\"to\":[\"d@example.com\"],\"vars\":{\"mx\":\"x\"}}\n{\"from\":\"a@example.org\",\"to\":[\"e@example.com\"]}\n"
	code, out, errs := runDryRun(t, corpus, "--envelopes", "-", "--brief")
	if code != exitFailed || strings.Count(out, "\n") != 2 || !strings.HasPrefix(out, "b@example.com ") || !strings.Contains(out, "\ne@example.com ") {
		t.Errorf("exit %d (want 1), stdout:\n%s", code, out)
	}
	for _, w := range []string{"postern dry-run: standard input:2: not an envelope object", "postern dry-run: standard input:3: vars: mx: a host-phase variable",
		"postern dry-run: 2 lines of standard input not decided"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	for _, args := range [][]string{
		{"--envelopes", "-", "--format", "json"},
		{"--envelopes", "-", "--to", "b@example.com"},
		{"--envelopes", "-", "--format", "yaml"},
	} {
		if code, _, errs := runDryRun(t, corpus, args...); code != exitUsage {
			t.Errorf("%v: exit %d (want 2), stderr %q", args, code, errs)
		}
	}
	if code, _, errs := runDryRun(t, "", "--envelopes", "missing.jsonl"); code != exitFailed || !strings.Contains(errs, "no such file") {
		t.Errorf("missing corpus: exit %d, stderr %q", code, errs)
	}
}
