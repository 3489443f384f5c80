package mtalog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/corpus"
)

// readCorpus imports log with format and returns the corpus it writes.
func readCorpus(t *testing.T, f Format, log io.Reader) (string, Stats) {
	t.Helper()
	var out bytes.Buffer
	w := corpus.NewWriter(&out)
	st, err := readAll(f, log, w.Write)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String(), st
}

// TestPostfixPrefixes reads hand-checked Postfix lines in every prefix
// form (RFC 3164 with a space- and a zero-padded day, Postfix's
// maillog_file, rsyslog's ISO 8601, RFC 5424 with structured data,
// journalctl's fractional seconds, no host) and the lines it must skip,
// and compares the corpus with the hand-written one.
func TestPostfixPrefixes(t *testing.T) {
	f, err := os.Open("testdata/postfix-prefixes.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, st := readCorpus(t, Postfix, f)
	want, err := os.ReadFile("testdata/postfix-prefixes.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("corpus:\n%s\nwant:\n%s", got, want)
	}
	wantStats := Stats{Lines: 53, Used: 41, Unknown: 1, Envelopes: 9, Recipients: 11, NoSender: 1, NoRecipients: 2, Probes: 1}
	if st != wantStats {
		t.Errorf("stats %+v, want %+v", st, wantStats)
	}
}

// TestEximMainLog reads Exim main-log lines written from the Exim
// specification's chapter "Log files" (every flag, old and 4.97 message
// IDs, +millisec, log_timezone, +pid, syslog with and without Exim's
// timestamp, +received_recipients with a quoted subject holding "for",
// a "<trunc>" list, local, pipe, file and :blackhole: deliveries,
// cutthrough before the arrival) and compares the corpus with the
// hand-written one.
func TestEximMainLog(t *testing.T) {
	f, err := os.Open("testdata/exim-main.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, st := readCorpus(t, Exim, f)
	want, err := os.ReadFile("testdata/exim-main.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("corpus:\n%s\nwant:\n%s", got, want)
	}
	wantStats := Stats{Lines: 48, Used: 41, Unknown: 1, Envelopes: 9, Recipients: 19, NoSender: 1}
	if st != wantStats {
		t.Errorf("stats %+v, want %+v", st, wantStats)
	}
}

// TestPostfixAcrossFiles reads a message that starts in one file (the
// rotated log) and ends in the next: one envelope, not a skipped one.
func TestPostfixAcrossFiles(t *testing.T) {
	old := "Nov 24 23:59:59 mx postfix/qmgr[1]: 1A2B3C4D5E: from=<a@example.org>, size=10, nrcpt=1 (queue active)\n"
	cur := "Nov 25 00:00:01 mx postfix/smtp[2]: 1A2B3C4D5E: to=<b@example.com>, relay=none, status=sent (ok)\n" +
		"Nov 25 00:00:01 mx postfix/qmgr[1]: 1A2B3C4D5E: removed\n"
	var envs []corpus.Envelope
	im := NewImporter(Postfix, Options{}, func(e corpus.Envelope) error { envs = append(envs, e); return nil })
	for _, s := range []string{old, cur} {
		if err := im.Read(strings.NewReader(s)); err != nil {
			t.Fatal(err)
		}
	}
	if len(envs) != 1 {
		t.Fatalf("before Close: %d envelopes, want the one that ended in the second file", len(envs))
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	if e := envs[0]; e.From != "a@example.org" || len(e.To) != 1 || e.To[0] != "b@example.com" {
		t.Errorf("envelope %+v", e)
	}
	if st := im.Stats(); st.NoSender != 0 || st.Lines != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestPostfixInstance keeps one instance's lines when asked: the same
// message relayed through two instances is two queue entries.
func TestPostfixInstance(t *testing.T) {
	log := `Nov 24 10:00:00 mx postfix-in/qmgr[1]: 1A2B3C4D5E: from=<a@example.org>, size=10, nrcpt=1 (queue active)
Nov 24 10:00:00 mx postfix-in/lmtp[2]: 1A2B3C4D5E: to=<b@example.com>, relay=127.0.0.1[127.0.0.1]:10025, status=sent (250 queued as 2B3C4D5E6F)
Nov 24 10:00:00 mx postfix-in/qmgr[1]: 1A2B3C4D5E: removed
Nov 24 10:00:01 mx postfix-out/qmgr[3]: 2B3C4D5E6F: from=<a@example.org>, size=12, nrcpt=1 (queue active)
Nov 24 10:00:01 mx postfix-out/smtp[4]: 2B3C4D5E6F: to=<b@example.com>, relay=mx.example.com[198.51.100.5]:25, status=sent (250 ok)
Nov 24 10:00:01 mx postfix-out/qmgr[3]: 2B3C4D5E6F: removed
`
	for _, tc := range []struct {
		instance string
		ids      []string
	}{
		{"", []string{"1A2B3C4D5E", "2B3C4D5E6F"}},
		{"postfix-out", []string{"2B3C4D5E6F"}},
	} {
		var ids []string
		im := NewImporter(Postfix, Options{PostfixInstance: tc.instance}, func(e corpus.Envelope) error { ids = append(ids, e.ID); return nil })
		if err := im.Read(strings.NewReader(log)); err != nil {
			t.Fatal(err)
		}
		if err := im.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Join(ids, " ") != strings.Join(tc.ids, " ") {
			t.Errorf("instance %q: envelopes %v, want %v", tc.instance, ids, tc.ids)
		}
	}
}

// TestLineEnds reads CRLF line ends and a last line without one.
func TestLineEnds(t *testing.T) {
	log := "Nov 24 10:00:00 mx postfix/qmgr[1]: 1A2B3C4D5E: from=<a@example.org>, size=10, nrcpt=1 (queue active)\r\n" +
		"Nov 24 10:00:00 mx postfix/smtp[2]: 1A2B3C4D5E: to=<b@example.com>, relay=none, status=sent (ok)\r\n" +
		"Nov 24 10:00:00 mx postfix/qmgr[1]: 1A2B3C4D5E: removed"
	got, st := readCorpus(t, Postfix, strings.NewReader(log))
	want := `{"id":"1A2B3C4D5E","from":"a@example.org","to":["b@example.com"],"vars":{"size":"10"}}` + "\n"
	if got != want || st.Lines != 3 || st.Used != 3 {
		t.Errorf("got %q (stats %+v), want %q", got, st, want)
	}
}

// TestLongLine skips a line longer than maxLine, counted as unknown, and
// reads the lines around it.
func TestLongLine(t *testing.T) {
	long := "Nov 24 10:00:00 mx postfix/smtp[2]: 1A2B3C4D5E: to=<" + strings.Repeat("x", maxLine) + "@example.com>, status=sent\n"
	log := "Nov 24 10:00:00 mx postfix/qmgr[1]: 1A2B3C4D5E: from=<a@example.org>, size=10, nrcpt=1 (queue active)\n" +
		long +
		"Nov 24 10:00:00 mx postfix/smtp[2]: 1A2B3C4D5E: to=<b@example.com>, relay=none, status=sent (ok)\n"
	got, st := readCorpus(t, Postfix, strings.NewReader(log))
	want := `{"id":"1A2B3C4D5E","from":"a@example.org","to":["b@example.com"],"vars":{"size":"10"}}` + "\n"
	if got != want || st.Lines != 3 || st.Unknown != 1 {
		t.Errorf("got %q (stats %+v), want %q", got, st, want)
	}
}

// TestEmitError stops the read at the first error of emit and returns it.
func TestEmitError(t *testing.T) {
	log := "Nov 24 10:00:00 mx postfix/qmgr[1]: 1A2B3C4D5E: from=<a@example.org>, size=10, nrcpt=1 (queue active)\n" +
		"Nov 24 10:00:00 mx postfix/smtp[2]: 1A2B3C4D5E: to=<b@example.com>, relay=none, status=sent (ok)\n" +
		"Nov 24 10:00:00 mx postfix/qmgr[1]: 1A2B3C4D5E: removed\n" +
		"Nov 24 10:00:01 mx postfix/qmgr[1]: 2A2B3C4D5E: from=<a@example.org>, size=10, nrcpt=1 (queue active)\n"
	stop := errors.New("disk full")
	st, err := ReadPostfix(strings.NewReader(log), func(corpus.Envelope) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("err %v, want %v", err, stop)
	}
	if st.Lines != 3 {
		t.Errorf("read %d lines, want to stop at the third", st.Lines)
	}
}

// TestReadError names the line after the last one read.
func TestReadError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("a line\n"), errReader{})
	_, err := ReadExim(r, func(corpus.Envelope) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "line 2: broken pipe") {
		t.Errorf("err %v, want line 2: broken pipe", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

// BenchmarkReadPostfix measures the import of a Postfix log (the test
// data repeated), in bytes of log per second.
func BenchmarkReadPostfix(b *testing.B) {
	one, err := os.ReadFile("testdata/postfix-prefixes.log")
	if err != nil {
		b.Fatal(err)
	}
	log := bytes.Repeat(one, 200)
	b.SetBytes(int64(len(log)))
	for b.Loop() {
		if _, err := ReadPostfix(bytes.NewReader(log), func(corpus.Envelope) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
