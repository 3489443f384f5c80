package dsn_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine/dsn"
	"github.com/postern-mta/postern/internal/testbed"
)

// pyDSN is what testdata/parse_dsn.py prints: the DSN as Python's email
// package reads it.
type pyDSN struct {
	Headers     [][2]string       `json:"headers"`
	From        [][2]string       `json:"from"`
	To          [][2]string       `json:"to"`
	ContentType string            `json:"content_type"`
	Params      map[string]string `json:"params"`
	Defects     []string          `json:"defects"`
	Parts       []struct {
		ContentType string        `json:"content_type"`
		Charset     *string       `json:"charset"`
		CTE         *string       `json:"cte"`
		Groups      [][][2]string `json:"groups"`
		Headers     [][2]string   `json:"headers"`
		Body        *string       `json:"body"`
		Text        *string       `json:"text"`
	} `json:"parts"`
}

// pyParse runs the Python parser on raw.
func pyParse(t *testing.T, raw []byte) pyDSN {
	t.Helper()
	py := testbed.Require(t, "python3")
	cmd := exec.Command(py, "testdata/parse_dsn.py")
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("parse_dsn.py: %v\n%s\n%s", err, stderr.Bytes(), raw)
	}
	var d pyDSN
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("parse_dsn.py output: %v\n%s", err, out)
	}
	return d
}

// pyCheckGroups compares Python's status groups, in order, with want.
func pyCheckGroups(t *testing.T, got [][][2]string, want [][]field) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("Python read %d field groups, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Errorf("group %d: Python read %q, want %v", i, got[i], want[i])
			continue
		}
		for j, f := range want[i] {
			if got[i][j] != [2]string{f.name, f.value} {
				t.Errorf("group %d field %d: Python read %q, want %s: %q", i, j, got[i][j], f.name, f.value)
			}
		}
	}
}

// TestPythonReadsKinds: Python's email package reads each kind of report
// (failed, delayed, success, mixed) with no defect, the header, the three
// parts with their content types, the status fields in order, each equal
// to its input, and the returned original.
func TestPythonReadsKinds(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			d := pyParse(t, build(t, k.report))
			if len(d.Defects) > 0 {
				t.Errorf("Python found defects: %v", d.Defects)
			}
			if d.ContentType != "multipart/report" || d.Params["report-type"] != "delivery-status" {
				t.Errorf("Python read %s %v", d.ContentType, d.Params)
			}
			if len(d.From) != 1 || d.From[0] != [2]string{"Mail Delivery System", "MAILER-DAEMON@mta.example.org"} {
				t.Errorf("From: Python read %q", d.From)
			}
			if len(d.To) != 1 || d.To[0][1] != k.report.To {
				t.Errorf("To: Python read %q, want %s", d.To, k.report.To)
			}
			var names []string
			for _, h := range d.Headers {
				names = append(names, h[0])
				if h[0] == "Subject" && h[1] != k.subject {
					t.Errorf("Subject %q, want %q", h[1], k.subject)
				}
			}
			if got := strings.Join(names, ","); got != "From,To,Date,Message-ID,Subject,Auto-Submitted,MIME-Version,Content-Type" {
				t.Errorf("header fields %s", got)
			}
			if len(d.Parts) != 3 {
				t.Fatalf("Python read %d parts, want 3", len(d.Parts))
			}
			for i, ct := range []string{"text/plain", "message/delivery-status", k.third} {
				if d.Parts[i].ContentType != ct {
					t.Errorf("part %d: Python read %s, want %s", i, d.Parts[i].ContentType, ct)
				}
			}
			pyCheckGroups(t, d.Parts[1].Groups, wantGroups(k.report))
			o := d.Parts[2]
			if k.third == "message/rfc822" {
				if o.Body == nil || *o.Body != "Hello Bob,\r\nthe figures are attached.\r\n" || len(o.Headers) != 5 || o.Headers[3] != [2]string{"Subject", "quarterly figures"} {
					t.Errorf("returned message: Python read %q, body %v", o.Headers, o.Body)
				}
			} else if o.Text == nil || !strings.HasPrefix(*o.Text, "Return-Path: <alice@example.org>\r\n") || strings.Contains(*o.Text, "Hello Bob") {
				t.Errorf("returned header: Python read %v", o.Text)
			}
		})
	}
}

// TestPythonReadsInternational: Python reads a report on a non-ASCII
// recipient: message/global-delivery-status with the utf-8 address type,
// the UTF-8 reply, the quoted-printable text, and an original with a UTF-8
// header as message/global-headers.
func TestPythonReadsInternational(t *testing.T) {
	r := base(dsn.Recipient{
		Final: "bób@exämple.org", Original: "utf-8;BÓB@exämple.org", Action: dsn.Failed,
		RemoteMTA: "mx.xn--exmple-cua.org", Diagnostic: "550 5.1.1 utilisateur inconnu: bób",
	})
	r.Original = []byte("From: José <jose@example.org>\r\nSubject: façade\r\n\r\nolá\r\n")
	r.Return = dsn.ReturnHeaders
	d := pyParse(t, build(t, r))
	if len(d.Defects) > 0 {
		t.Errorf("Python found defects: %v", d.Defects)
	}
	if len(d.Parts) != 3 {
		t.Fatalf("Python read %d parts", len(d.Parts))
	}
	want := wantGroups(r)
	want[1][0].value = "utf-8; BÓB@exämple.org"
	want[1][1].value = "utf-8; bób@exämple.org"
	if d.Parts[1].ContentType != "message/global-delivery-status" {
		t.Errorf("status part: Python read %s", d.Parts[1].ContentType)
	}
	pyCheckGroups(t, d.Parts[1].Groups, want)
	if tp := d.Parts[0]; tp.Text == nil || !strings.Contains(*tp.Text, "<bób@exämple.org>: failed") || !strings.Contains(*tp.Text, "inconnu: bób") {
		t.Errorf("text part: Python read %v", tp.Text)
	}
	o := d.Parts[2]
	if o.ContentType != "message/global-headers" || len(o.Headers) != 2 || o.Headers[0] != [2]string{"From", "José <jose@example.org>"} {
		t.Errorf("returned header: Python read %s %q", o.ContentType, o.Headers)
	}
}

// TestPythonReadsHostile: Python, too, finds no injected field or part in
// a report whose reply and host name carry line breaks and a delimiter,
// and whose original carries delimiter lines of its own.
func TestPythonReadsHostile(t *testing.T) {
	r := base(dsn.Recipient{
		Final: "bob@example.com", Action: dsn.Failed, RemoteMTA: "mx\r\nX-Host: 1",
		Diagnostic: "550 no\r\nX-Injected: yes\r\n\r\n--BOUND\r\nContent-Type: text/html\r\n\r\n<b>hi</b>",
	})
	r.Boundary = "BOUND-1"
	evil := "From: x@example.org\r\n\r\n--BOUND-\r\n--BOUND-2\r\n"
	r.Original, r.Return = []byte(evil), dsn.ReturnFull
	d := pyParse(t, build(t, r))
	if len(d.Defects) > 0 || len(d.Parts) != 3 {
		t.Fatalf("Python read %d parts, defects %v", len(d.Parts), d.Defects)
	}
	g := d.Parts[1].Groups
	if len(g) != 2 {
		t.Fatalf("Python read %d field groups: %q", len(g), g)
	}
	for _, f := range g[1] {
		if strings.HasPrefix(f[0], "X-") {
			t.Errorf("injected field %q", f)
		}
	}
	if o := d.Parts[2]; o.Body == nil || *o.Body != "--BOUND-\r\n--BOUND-2\r\n" {
		t.Errorf("returned body: Python read %v", o.Body)
	}
}
