package corpus_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/corpus"
)

func readAll(t *testing.T, in string) ([]corpus.Envelope, []string) {
	t.Helper()
	r := corpus.NewReader(strings.NewReader(in), "c.jsonl")
	var envs []corpus.Envelope
	var errs []string
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return envs, errs
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		envs = append(envs, e)
	}
}

func TestReadWriteRoundTrip(t *testing.T) {
	in := `{"id":"Q1","from":"alice@example.org","to":["bob@example.com","carol@example.net"],"vars":{"retry_num":2,"last_error":"tls"},"meta":{"stream":"bulk"}}

{"from":"","to":["postmaster@example.com"]}
{"from":"<>","to":["x@example.com"]}`
	envs, errs := readAll(t, in)
	if len(errs) > 0 || len(envs) != 3 {
		t.Fatalf("read %d envelopes, errors %v", len(envs), errs)
	}
	m, err := envs[0].Message()
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "alice@example.org" || len(m.To) != 2 || m.RetryNum != 2 || m.LastError != "tls" || m.Meta["stream"] != "bulk" {
		t.Errorf("message %+v", m)
	}
	for _, e := range envs[1:] {
		if m, _ := e.Message(); m.From != "" {
			t.Errorf("%q is not the null sender", e.From)
		}
	}
	var out bytes.Buffer
	w := corpus.NewWriter(&out)
	for _, e := range envs {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `{"id":"Q1","from":"alice@example.org","to":["bob@example.com","carol@example.net"],"vars":{"last_error":"tls","retry_num":"2"},"meta":{"stream":"bulk"}}
{"from":"","to":["postmaster@example.com"]}
{"from":"<>","to":["x@example.com"]}
`
	if out.String() != want {
		t.Errorf("written:\n%s\nwant:\n%s", out.String(), want)
	}
	again, errs := readAll(t, out.String())
	if len(errs) > 0 || len(again) != 3 || again[0].Vars["retry_num"] != "2" {
		t.Errorf("written corpus reads back as %+v, %v", again, errs)
	}
}

// TestReadErrors: each bad line is refused with its line number and why,
// and reading goes on with the next line.
func TestReadErrors(t *testing.T) {
	in := strings.Join([]string{
		`{"from":"a@x","to":["b@y"],"cc":["c@y"]}`,
		`{"to":["b@y"]}`,
		`{"from":"a@x","to":[]}`,
		`{"from":"a@x","to":["b@y",""]}`,
		`{"from":"a@x","to":["b@y"],"vars":{"retry_num":[1]}}`,
		`{"from":"a@x","to":["b@y"]} {"from":"a@x","to":["b@y"]}`,
		`not json`,
		`{"from":"a@x","to":["ok@y"]}`,
	}, "\n")
	envs, errs := readAll(t, in)
	want := []string{
		`c.jsonl:1: not an envelope object: json: unknown field "cc"`,
		`c.jsonl:2: no "from"`,
		`c.jsonl:3: no recipients`,
		`c.jsonl:4: "to" item 2 is empty`,
		`c.jsonl:5: not an envelope object`,
		`c.jsonl:6: more than one JSON value`,
		`c.jsonl:7: not an envelope object`,
	}
	if len(errs) != len(want) {
		t.Fatalf("errors %q, want %d", errs, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i], w) {
			t.Errorf("error %d = %q, want it to start %q", i+1, errs[i], w)
		}
	}
	if len(envs) != 1 || envs[0].To[0] != "ok@y" {
		t.Errorf("the good line after the bad ones: %+v", envs)
	}
}

func TestMessageRefusesBadVars(t *testing.T) {
	e := corpus.Envelope{From: "a@x", To: []string{"b@y"}, Vars: map[string]corpus.Scalar{"retry_num": "often"}}
	if _, err := e.Message(); err == nil || !strings.Contains(err.Error(), `vars: retry_num: "often" is not an integer`) {
		t.Errorf("Message() error = %v", err)
	}
}

func TestLongLineRefused(t *testing.T) {
	long := `{"from":"a@x","to":["` + strings.Repeat("b", 17<<20) + `@y"]}` + "\n" + `{"from":"a@x","to":["c@y"]}`
	envs, errs := readAll(t, long)
	if len(errs) != 1 || !strings.Contains(errs[0], "c.jsonl:1: line longer than") {
		t.Errorf("errors %q", errs)
	}
	if len(envs) != 1 || envs[0].To[0] != "c@y" {
		t.Errorf("the line after the long one: %+v", envs)
	}
}
