package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/corpus"
)

// A Postfix log: a message with two recipients (one deferred, then
// sent), a null-sender message, one whose sender line is before the log,
// and one still deferred at the end.
const envelopesPostfixLog = `Nov 24 10:00:00 mx postfix/qmgr[1]: 1A2B3C4D5E: from=<alice@example.org>, size=1834, nrcpt=2 (queue active)
Nov 24 10:00:01 mx postfix/smtp[2]: 1A2B3C4D5E: to=<bob@example.com>, relay=mx.example.com[198.51.100.5]:25, delay=1, delays=0.5/0/0.2/0.3, dsn=2.0.0, status=sent (250 ok)
Nov 24 10:00:01 mx postfix/smtp[3]: 1A2B3C4D5E: to=<carol@example.net>, relay=none, delay=1, delays=0.5/0/0.5/0, dsn=4.4.1, status=deferred (connect to mx.example.net[203.0.113.9]:25: Connection refused)
Nov 24 10:00:02 mx postfix/smtp[1]: 9F8E7D6C5B: to=<zed@example.com>, relay=mx.example.com[198.51.100.5]:25, delay=1, delays=0.5/0/0.2/0.3, dsn=2.0.0, status=sent (250 ok)
Nov 24 10:00:02 mx postfix/qmgr[1]: 9F8E7D6C5B: removed
Nov 24 10:00:03 mx postfix/qmgr[1]: 2B3C4D5E6F: from=<>, size=2210, nrcpt=1 (queue active)
Nov 24 10:00:03 mx postfix/smtp[2]: 2B3C4D5E6F: to=<dave@example.com>, relay=mx.example.com[198.51.100.5]:25, delay=1, delays=0.5/0/0.2/0.3, dsn=2.0.0, status=sent (250 ok)
Nov 24 10:00:03 mx postfix/qmgr[1]: 2B3C4D5E6F: removed
Nov 24 10:30:01 mx postfix/qmgr[1]: 1A2B3C4D5E: from=<alice@example.org>, size=1834, nrcpt=2 (queue active)
Nov 24 10:30:02 mx postfix/smtp[3]: 1A2B3C4D5E: to=<carol@example.net>, relay=mx.example.net[203.0.113.9]:25, delay=1802, delays=1800/0/1/1, dsn=2.0.0, status=sent (250 ok)
Nov 24 10:30:02 mx postfix/qmgr[1]: 1A2B3C4D5E: removed
Nov 24 10:31:00 mx postfix/qmgr[1]: 3C4D5E6F7A: from=<erin@example.org>, size=512, nrcpt=1 (queue active)
Nov 24 10:31:01 mx postfix/smtp[3]: 3C4D5E6F7A: to=<frank@example.net>, relay=none, delay=1, delays=0.5/0/0.5/0, dsn=4.4.1, status=deferred (connect to mx.example.net[203.0.113.9]:25: Connection refused)
`

const envelopesPostfixCorpus = `{"id":"2B3C4D5E6F","from":"","to":["dave@example.com"],"vars":{"size":"2210"}}
{"id":"1A2B3C4D5E","from":"alice@example.org","to":["bob@example.com","carol@example.net"],"vars":{"size":"1834"}}
{"id":"3C4D5E6F7A","from":"erin@example.org","to":["frank@example.net"],"vars":{"size":"512"}}
`

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// postern envelopes --postfix-log writes the corpus of the log, exactly,
// and says on stderr how many envelopes and what it skipped.
func TestEnvelopesPostfixLog(t *testing.T) {
	log := writeTemp(t, "mail.log", envelopesPostfixLog)
	var stdout, stderr bytes.Buffer
	code := run([]string{"envelopes", "--postfix-log", log}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stdout.String() != envelopesPostfixCorpus {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), envelopesPostfixCorpus)
	}
	want := "postern envelopes: 3 envelopes, 4 recipients from " + log + " (1 queue ID skipped: no sender line)\n"
	if stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	// What it writes, the corpus reader reads.
	r := corpus.NewReader(&stdout, "out")
	for i := 0; i < 3; i++ {
		if _, err := r.Next(); err != nil {
			t.Fatalf("envelope %d: %v", i+1, err)
		}
	}
}

// Rotated files are one log, read in the order given: a message that
// starts in the gzip-compressed older file and ends in the newer one is
// one envelope. Files after the flag's are read too.
func TestEnvelopesPostfixRotatedGzip(t *testing.T) {
	lines := strings.SplitAfter(envelopesPostfixLog, "\n")
	older := writeTemp(t, "mail.log.1.gz", gzipped(t, strings.Join(lines[:3], "")))
	newer := writeTemp(t, "mail.log", strings.Join(lines[3:], ""))
	var stdout, stderr bytes.Buffer
	code := run([]string{"envelopes", "--postfix-log", older, newer}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stdout.String() != envelopesPostfixCorpus {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), envelopesPostfixCorpus)
	}
	if want := "from " + older + ", " + newer + " ("; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q, want it to name both files: %q", stderr.String(), want)
	}
}

// "-" reads standard input.
func TestEnvelopesPostfixStdin(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := runIO([]string{"envelopes", "--postfix-log", "-"}, strings.NewReader(envelopesPostfixLog), &stdout, &stderr)
	if code != exitOK || stdout.String() != envelopesPostfixCorpus {
		t.Fatalf("exit %d, stdout:\n%s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), " from standard input (") {
		t.Errorf("stderr %q", stderr.String())
	}
}

// --postfix-instance keeps one instance's lines.
func TestEnvelopesPostfixInstance(t *testing.T) {
	log := strings.ReplaceAll(envelopesPostfixLog, "mx postfix/", "mx postfix-in/") +
		"Nov 24 10:40:00 mx postfix-out/qmgr[9]: 4D5E6F7A8B: from=<gail@example.org>, size=99, nrcpt=1 (queue active)\n" +
		"Nov 24 10:40:01 mx postfix-out/smtp[8]: 4D5E6F7A8B: to=<hank@example.com>, relay=mx.example.com[198.51.100.5]:25, status=sent (250 ok)\n" +
		"Nov 24 10:40:01 mx postfix-out/qmgr[9]: 4D5E6F7A8B: removed\n"
	var stdout, stderr bytes.Buffer
	code := runIO([]string{"envelopes", "--postfix-log", "-", "--postfix-instance", "postfix-out"}, strings.NewReader(log), &stdout, &stderr)
	want := `{"id":"4D5E6F7A8B","from":"gail@example.org","to":["hank@example.com"],"vars":{"size":"99"}}` + "\n"
	if code != exitOK || stdout.String() != want {
		t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, stdout.String(), want, stderr.String())
	}
}

// postern envelopes --exim-log reads Exim's main log.
func TestEnvelopesEximLog(t *testing.T) {
	log := writeTemp(t, "mainlog", `2026-11-24 10:00:01 1qXyZa-000Abc-4F <= alice@example.org H=client.example [192.0.2.7] P=esmtp S=5678 id=abc@client.example
2026-11-24 10:00:02 1qXyZa-000Abc-4F => bob@example.com R=dnslookup T=remote_smtp H=mx.example.com [198.51.100.5] C="250 ok"
2026-11-24 10:00:02 1qXyZa-000Abc-4F -> carol@example.com R=dnslookup T=remote_smtp H=mx.example.com [198.51.100.5] C="250 ok"
2026-11-24 10:00:02 1qXyZa-000Abc-4F Completed
2026-11-24 10:00:03 16VDhn-000000001bo-D342 <= <> R=1qXyZa-000Abc-4F U=Debian-exim P=local S=2345
2026-11-24 10:00:04 16VDhn-000000001bo-D342 == alice@example.org R=dnslookup T=remote_smtp defer (111): Connection refused
`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"envelopes", "--exim-log", log}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := `{"id":"1qXyZa-000Abc-4F","from":"alice@example.org","to":["bob@example.com","carol@example.com"],"vars":{"size":"5678"}}
{"id":"16VDhn-000000001bo-D342","from":"","to":["alice@example.org"],"vars":{"size":"2345"}}
`
	if stdout.String() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), want)
	}
	if want := "postern envelopes: 2 envelopes, 3 recipients from " + log + "\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

// A file none of whose lines is of the format asked for gets a warning:
// the wrong flag, most likely.
func TestEnvelopesEximLogReadAsPostfix(t *testing.T) {
	log := writeTemp(t, "mainlog", "2026-11-24 10:00:01 1qXyZa-000Abc-4F <= alice@example.org S=5678\n2026-11-24 10:00:02 1qXyZa-000Abc-4F Completed\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"envelopes", "--postfix-log", log}, &stdout, &stderr)
	if code != exitOK || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}
	want := "postern envelopes: warning: " + log + ": no sender, recipient or end-of-message line in its 2 lines: is it a Postfix log?\n" +
		"postern envelopes: 0 envelopes, 0 recipients from " + log + " (2 lines in no log format known)\n"
	if stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

// A file that cannot be read exits 1 and names it; a corrupt gzip file
// too, after writing the envelopes read before it.
func TestEnvelopesReadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.log")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"envelopes", "--postfix-log", missing}, &stdout, &stderr); code != exitFailed {
		t.Errorf("missing file: exit %d, want %d", code, exitFailed)
	}
	if want := "postern envelopes: " + missing + ": no such file or directory\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}

	good := writeTemp(t, "mail.log.1", envelopesPostfixLog)
	z := gzipped(t, envelopesPostfixLog)
	bad := writeTemp(t, "mail.log.gz", z[:len(z)-10]) // cut short
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"envelopes", "--postfix-log", good, bad}, &stdout, &stderr); code != exitFailed {
		t.Errorf("corrupt gzip: exit %d, want %d", code, exitFailed)
	}
	if !strings.HasPrefix(stderr.String(), "postern envelopes: "+bad+": ") || !strings.Contains(stderr.String(), "unexpected EOF") {
		t.Errorf("stderr %q, want the file named and why", stderr.String())
	}
	// The messages ended in the first file were written.
	if want := strings.Join(strings.SplitAfter(envelopesPostfixCorpus, "\n")[:2], ""); !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("stdout %q, want it to start with %q", stdout.String(), want)
	}
}

// Bad usage exits 2 and says why; -h prints the flags and exits 0.
func TestEnvelopesUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{[]string{"envelopes"}, exitUsage, "say which MTA wrote the log"},
		{[]string{"envelopes", "mail.log"}, exitUsage, "say which MTA wrote the log"},
		{[]string{"envelopes", "--postfix-log", "a", "--exim-log", "b"}, exitUsage, "one MTA's log at a time"},
		{[]string{"envelopes", "--exim-log", "a", "--postfix-instance", "x"}, exitUsage, "--postfix-instance is for Postfix logs"},
		{[]string{"envelopes", "--postfix-log", "missing-a", "missing-b", "--postfix-instance", "x"}, exitFailed, "missing-a: no such file"}, // flags after the files too
		{[]string{"envelopes", "--postfix-log", "-", "-"}, exitUsage, `"-" (standard input) given twice`},
		{[]string{"envelopes", "--postfix-log"}, exitUsage, "flag needs an argument"},
		{[]string{"envelopes", "--sendmail-log", "a"}, exitUsage, "flag provided but not defined"},
		{[]string{"envelopes", "-h"}, exitOK, "usage: postern envelopes (--postfix-log FILE | --exim-log FILE)"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.say) || stdout.Len() != 0 {
			t.Errorf("%q: exit %d (want %d), stdout %q, stderr %q (want %q)", tc.args, code, tc.code, stdout.String(), stderr.String(), tc.say)
		}
	}
}
