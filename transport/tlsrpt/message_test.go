package tlsrpt

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBuildMessage parses the message as a receiver would (net/mail,
// mime/multipart), gunzips the attachment and checks it is the report, and
// checks the header fields and the file name section 5 asks for.
func TestBuildMessage(t *testing.T) {
	r := recordedReports(t)[0]
	now := at(t, "2026-04-02T03:04:05Z")
	msg, err := BuildMessage(r, "tlsrpt@sender.example", "reports@example.net", "sender.example", now)
	if err != nil {
		t.Fatal(err)
	}
	checkCRLF(t, msg)

	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v", err)
	}
	wantHeader := map[string]string{
		"From":                 "tlsrpt@sender.example",
		"To":                   "reports@example.net",
		"Subject":              "Report Domain: example.net Submitter: sender.example Report-ID: <" + r.ReportID + "@sender.example>",
		"TLS-Report-Domain":    "example.net",
		"TLS-Report-Submitter": "sender.example",
		"TLS-Required":         "No",
		"MIME-Version":         "1.0",
	}
	for k, v := range wantHeader {
		if got := m.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date: %v (%v), want %v", d, err, now)
	}
	if !regexp.MustCompile(`^<[A-Z2-7]+@sender\.example>$`).MatchString(m.Header.Get("Message-ID")) {
		t.Errorf("Message-ID: %q", m.Header.Get("Message-ID"))
	}

	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q (%v), want multipart/report; report-type=tlsrpt", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])

	text, err := mr.NextPart() // quoted-printable is decoded by the reader
	if err != nil {
		t.Fatal(err)
	}
	if ct := text.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("first part is %q, want the human-readable text/plain", ct)
	}
	body, _ := io.ReadAll(text)
	if !strings.Contains(string(body), "example.net") || !strings.Contains(string(body), "sender.example") {
		t.Errorf("the text part names neither domain:\n%s", body)
	}

	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if ct := att.Header.Get("Content-Type"); ct != "application/tlsrpt+gzip" {
		t.Errorf("report part Content-Type %q, want application/tlsrpt+gzip", ct)
	}
	if cte := att.Header.Get("Content-Transfer-Encoding"); cte != "base64" {
		t.Errorf("report part Content-Transfer-Encoding %q, want base64", cte)
	}
	disp, dparams, err := mime.ParseMediaType(att.Header.Get("Content-Disposition"))
	if err != nil || disp != "attachment" {
		t.Errorf("Content-Disposition %q (%v)", att.Header.Get("Content-Disposition"), err)
	}
	// Section 5.1: submitter!policy-domain!begin!end!unique-id.json.gz.
	wantName := regexp.MustCompile(`^sender\.example!example\.net!` + strconv.FormatInt(r.Start.Unix(), 10) +
		`!` + strconv.FormatInt(r.End.Unix(), 10) + `![0-9a-f]{16}\.json\.gz$`)
	if !wantName.MatchString(dparams["filename"]) {
		t.Errorf("file name %q does not follow section 5.1", dparams["filename"])
	}
	zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, att))
	if err != nil {
		t.Fatalf("attachment is not base64 gzip: %v", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("attachment is not a report: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(&got, r) {
		t.Errorf("the attached report differs:\ngot  %+v\nwant %+v", &got, r)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("more than two parts (%v)", err)
	}
}

// checkCRLF: every line ends in CRLF, and no CR stands alone.
func checkCRLF(t *testing.T, msg []byte) {
	t.Helper()
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			t.Fatalf("bare LF at byte %d: %q", i, msg[max(0, i-40):i+1])
		}
		if c == '\r' && (i+1 == len(msg) || msg[i+1] != '\n') {
			t.Fatalf("bare CR at byte %d", i)
		}
	}
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Errorf("message does not end with CRLF")
	}
}

// TestBuildMessageRefuses: what would break the header or the RFC's rules
// is an error, not a message.
func TestBuildMessageRefuses(t *testing.T) {
	now := at(t, "2026-04-02T03:04:05Z")
	cases := []struct {
		name                string
		edit                func(r *Report)
		from, to, submitter string
	}{
		{"contact-info elsewhere", func(r *Report) { r.ContactInfo = "tlsrpt@other.example" }, "", "", ""},
		{"no contact-info", func(r *Report) { r.ContactInfo = "" }, "", "", ""},
		{"line break in From", nil, "tlsrpt@sender.example\r\nBcc: x@evil.example", "", ""},
		{"bad To", nil, "", "not an address", ""},
		{"no submitter", nil, "", "", "-"},
		{"report-id not a dot-atom", func(r *Report) { r.ReportID = "a b" }, "", "", ""},
		{"no domain", func(r *Report) { r.Domain = ""; r.Policies = nil }, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := *recordedReports(t)[0]
			if c.edit != nil {
				c.edit(&r)
			}
			from, to, sub := cmp.Or(c.from, "tlsrpt@sender.example"), cmp.Or(c.to, "reports@example.net"), cmp.Or(c.submitter, "sender.example")
			if sub == "-" {
				sub = ""
			}
			if _, err := BuildMessage(&r, from, to, sub, now); err == nil {
				t.Errorf("BuildMessage accepted a report with %s", c.name)
			}
		})
	}
}
