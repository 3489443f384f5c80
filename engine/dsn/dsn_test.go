package dsn_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine/dsn"
)

var (
	arrival = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	tried   = time.Date(2026, 3, 2, 10, 15, 7, 0, time.FixedZone("", 3600))
	retry   = time.Date(2026, 3, 6, 9, 30, 0, 0, time.UTC)
	now     = time.Date(2026, 3, 2, 10, 15, 8, 0, time.UTC)
)

const original = "Return-Path: <alice@example.org>\n" +
	"From: Alice <alice@example.org>\n" +
	"To: bob@example.com, carol@example.net\n" +
	"Subject: quarterly figures\n" +
	"Message-ID: <q1@example.org>\n" +
	"\n" +
	"Hello Bob,\n" +
	"the figures are attached.\n"

// base returns a report with every message-level field set.
func base(rcpts ...dsn.Recipient) dsn.Report {
	return dsn.Report{
		ReportingMTA:    "mta.example.org",
		ReceivedFromMTA: "client.example.org",
		EnvID:           "QQ314159",
		Arrival:         arrival,
		From:            "Mail Delivery System <MAILER-DAEMON@mta.example.org>",
		To:              "alice@example.org",
		Original:        []byte(original),
		Recipients:      rcpts,
		Date:            now,
		MessageID:       "dsn-1@mta.example.org",
	}
}

var (
	bobFailed = dsn.Recipient{
		Final: "bob@example.com", Original: "rfc822;Bob@Example.com", Action: dsn.Failed, Status: "5.1.1",
		RemoteMTA: "mx1.example.com", Diagnostic: "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
		LastAttempt: tried,
	}
	carolFailed = dsn.Recipient{Final: "carol@example.net", Action: dsn.Failed, Diagnostic: "554 5.4.4 Host not found"}
	daveDelayed = dsn.Recipient{
		Final: "dave@example.com", Action: dsn.Delayed, Status: "4.4.1", RemoteMTA: "mx2.example.com",
		Diagnostic: "421 4.4.1 Connection timed out", LastAttempt: tried, WillRetryUntil: retry,
	}
	erinDelivered = dsn.Recipient{
		Final: "erin@example.com", Original: "rfc822;erin@example.com", Action: dsn.Delivered,
		RemoteMTA: "mx1.example.com", Diagnostic: "250 2.0.0 Ok: queued as 4Fq1", LastAttempt: tried,
	}
	frankRelayed  = dsn.Recipient{Final: "frank@example.com", Action: dsn.Relayed, Status: "2.0.0", RemoteMTA: "old.example.com"}
	graceExpanded = dsn.Recipient{Final: "list@example.com", Action: dsn.Expanded, Status: "2.1.5"}
)

// kinds are the reports the format tests build: one per kind of DSN.
var kinds = []struct {
	name    string
	report  dsn.Report
	subject string
	third   string // content type of the returned original
}{
	{"failed", base(bobFailed, carolFailed), "Undelivered Mail Returned to Sender", "message/rfc822"},
	{"delayed", base(daveDelayed), "Delayed Mail (still being retried)", "text/rfc822-headers"},
	{"delivered", base(erinDelivered, frankRelayed), "Successful Mail Delivery Report", "text/rfc822-headers"},
	{"mixed", base(bobFailed, daveDelayed, erinDelivered, graceExpanded), "Mail Delivery Status Report", "message/rfc822"},
}

// field is one field of a status group, in order.
type field struct{ name, value string }

// wantGroups are the status groups r must produce, per-message first: the
// fields RFC 3464 defines, each from the Report value named beside it.
func wantGroups(r dsn.Report) [][]field {
	date := func(t time.Time) string { return t.Format(time.RFC1123Z) }
	var msg []field
	if r.EnvID != "" {
		msg = append(msg, field{"Original-Envelope-Id", r.EnvID})
	}
	msg = append(msg, field{"Reporting-MTA", "dns; " + r.ReportingMTA})
	if r.ReceivedFromMTA != "" {
		msg = append(msg, field{"Received-From-MTA", "dns; " + r.ReceivedFromMTA})
	}
	if !r.Arrival.IsZero() {
		msg = append(msg, field{"Arrival-Date", date(r.Arrival)})
	}
	groups := [][]field{msg}
	for _, rc := range r.Recipients {
		var g []field
		if rc.Original != "" {
			t, a, _ := strings.Cut(rc.Original, ";")
			g = append(g, field{"Original-Recipient", t + "; " + a})
		}
		status := rc.Status
		if status == "" {
			status = map[dsn.Action]string{dsn.Failed: "5.0.0", dsn.Delayed: "4.0.0"}[rc.Action]
			if status == "" {
				status = "2.0.0"
			}
		}
		g = append(g, field{"Final-Recipient", "rfc822; " + rc.Final}, field{"Action", string(rc.Action)}, field{"Status", status})
		if rc.RemoteMTA != "" {
			g = append(g, field{"Remote-MTA", "dns; " + rc.RemoteMTA})
		}
		if rc.Diagnostic != "" {
			g = append(g, field{"Diagnostic-Code", "smtp; " + rc.Diagnostic})
		}
		if !rc.LastAttempt.IsZero() {
			g = append(g, field{"Last-Attempt-Date", date(rc.LastAttempt)})
		}
		if !rc.WillRetryUntil.IsZero() {
			g = append(g, field{"Will-Retry-Until", date(rc.WillRetryUntil)})
		}
		groups = append(groups, g)
	}
	return groups
}

// parsed is a DSN as Go's standard library reads it.
type parsed struct {
	header     mail.Header
	params     map[string]string // of the top-level Content-Type
	parts      []parsedPart
	mediaType  string
	linesOK    bool // every line within 998 octets, ending CRLF
	longestRaw int
}

type parsedPart struct {
	header textproto.MIMEHeader
	body   []byte // as written, transfer encoding not undone
}

// parse reads a DSN with net/mail, mime and mime/multipart, failing the
// test where they fail.
func parse(t testing.TB, raw []byte) parsed {
	t.Helper()
	p, err := parseDSN(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	return p
}

func parseDSN(raw []byte) (parsed, error) {
	var p parsed
	p.linesOK = true
	for _, l := range bytes.SplitAfter(raw, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		p.longestRaw = max(p.longestRaw, len(l))
		if len(l) > 1000 || !bytes.HasSuffix(l, []byte("\r\n")) || bytes.Count(l, []byte("\r")) != 1 {
			p.linesOK = false
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return p, errors.New("net/mail: " + err.Error())
	}
	p.header = m.Header
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		return p, errors.New("mime: " + err.Error())
	}
	p.mediaType, p.params = mt, params
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return p, errors.New("mime/multipart: " + err.Error())
		}
		body, err := io.ReadAll(part)
		if err != nil {
			return p, errors.New("mime/multipart: reading a part: " + err.Error())
		}
		p.parts = append(p.parts, parsedPart{part.Header, body})
	}
	return p, nil
}

// statusGroups reads a delivery-status body with net/textproto: one
// MIME-style header per group.
func statusGroups(body []byte) ([]textproto.MIMEHeader, error) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
	var groups []textproto.MIMEHeader
	for {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			groups = append(groups, h)
		}
		if err == io.EOF {
			return groups, nil
		}
		if err != nil {
			return groups, err
		}
	}
}

func (p parsed) part(t testing.TB, i int) parsedPart {
	t.Helper()
	if i >= len(p.parts) {
		t.Fatalf("the DSN has %d parts, no part %d", len(p.parts), i)
	}
	return p.parts[i]
}

// text returns the human-readable part's text, transfer encoding undone.
func (p parsed) text(t testing.TB) string {
	t.Helper()
	pt := p.part(t, 0)
	if pt.header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(pt.body)))
		if err != nil {
			t.Fatalf("quoted-printable: %v", err)
		}
		return string(b)
	}
	return string(pt.body)
}

func build(t testing.TB, r dsn.Report) []byte {
	t.Helper()
	raw, err := dsn.Build(r)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return raw
}

// checkGroups compares the status part's groups with wantGroups.
func checkGroups(t *testing.T, body []byte, want [][]field) {
	t.Helper()
	groups, err := statusGroups(body)
	if err != nil {
		t.Fatalf("net/textproto: %v\n%s", err, body)
	}
	if len(groups) != len(want) {
		t.Fatalf("%d field groups, want %d\n%s", len(groups), len(want), body)
	}
	for i, g := range groups {
		if len(g) != len(want[i]) {
			t.Errorf("group %d has fields %v, want %v", i, g, want[i])
		}
		for _, f := range want[i] {
			if got := g.Values(f.name); len(got) != 1 || got[0] != f.value {
				t.Errorf("group %d: %s = %q, want %q", i, f.name, got, f.value)
			}
		}
	}
}

// TestBuildKinds builds a failed, a delayed, a success and a mixed report
// and reads each back with the standard library: the message header, the
// multipart/report structure and report-type, and every status field,
// each equal to the input it came from.
func TestBuildKinds(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			raw := build(t, k.report)
			p := parse(t, raw)
			if !p.linesOK {
				t.Errorf("a line is not CRLF-terminated or longer than 998 octets")
			}
			want := map[string]string{
				"From":           `"Mail Delivery System" <MAILER-DAEMON@mta.example.org>`,
				"To":             "<alice@example.org>",
				"Date":           "Mon, 02 Mar 2026 10:15:08 +0000",
				"Message-Id":     "<dsn-1@mta.example.org>",
				"Subject":        k.subject,
				"Auto-Submitted": "auto-replied",
				"Mime-Version":   "1.0",
				"Content-Type":   p.header.Get("Content-Type"),
			}
			for name, v := range want {
				if got := p.header[name]; len(got) != 1 || got[0] != v {
					t.Errorf("header %s = %q, want %q", name, got, v)
				}
			}
			if len(p.header) != len(want) {
				t.Errorf("header has fields %v, want exactly %d", p.header, len(want))
			}
			if p.mediaType != "multipart/report" || p.params["report-type"] != "delivery-status" {
				t.Errorf("Content-Type %s %v, want multipart/report with report-type delivery-status", p.mediaType, p.params)
			}
			if len(p.parts) != 3 {
				t.Fatalf("%d parts, want 3", len(p.parts))
			}
			for i, ct := range []string{"text/plain; charset=us-ascii", "message/delivery-status", k.third} {
				if got := p.parts[i].header.Get("Content-Type"); got != ct {
					t.Errorf("part %d Content-Type %q, want %q", i, got, ct)
				}
			}
			checkGroups(t, p.parts[1].body, wantGroups(k.report))
			text := p.text(t)
			for _, rc := range k.report.Recipients {
				if !strings.Contains(text, "<"+rc.Final+">: "+string(rc.Action)) {
					t.Errorf("the text part does not say what happened to %s:\n%s", rc.Final, text)
				}
				if rc.Diagnostic != "" && !strings.Contains(strings.Join(strings.Fields(text), " "), rc.Diagnostic) {
					t.Errorf("the text part lacks the reply %q:\n%s", rc.Diagnostic, text)
				}
			}
		})
	}
}

// TestReturn: RET=HDRS returns the header as text/rfc822-headers, RET=FULL
// and no RET the whole message as message/rfc822 in a report with a
// failure; a report without a failure, or an original over MaxReturnSize,
// returns only the header; a nil original returns nothing. The returned
// bytes are the original's, with CRLF line endings.
func TestReturn(t *testing.T) {
	full := strings.ReplaceAll(original, "\n", "\r\n")
	head := full[:strings.Index(full, "\r\n\r\n")+2]
	for _, tt := range []struct {
		name     string
		ret      dsn.Return
		max      int
		rcpt     dsn.Recipient
		nilOrig  bool
		wantType string
		want     string
	}{
		{"hdrs", dsn.ReturnHeaders, 0, bobFailed, false, "text/rfc822-headers", head},
		{"full", dsn.ReturnFull, 0, bobFailed, false, "message/rfc822", full},
		{"default", dsn.ReturnDefault, 0, bobFailed, false, "message/rfc822", full},
		{"full but delayed", dsn.ReturnFull, 0, daveDelayed, false, "text/rfc822-headers", head},
		{"full but delivered", dsn.ReturnFull, 0, erinDelivered, false, "text/rfc822-headers", head},
		{"full but too big", dsn.ReturnFull, len(original) - 1, bobFailed, false, "text/rfc822-headers", head},
		{"full within the limit", dsn.ReturnFull, len(original), bobFailed, false, "message/rfc822", full},
		{"no original", dsn.ReturnFull, 0, bobFailed, true, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := base(tt.rcpt)
			r.Return, r.MaxReturnSize = tt.ret, tt.max
			if tt.nilOrig {
				r.Original = nil
			}
			p := parse(t, build(t, r))
			if tt.wantType == "" {
				if len(p.parts) != 2 {
					t.Fatalf("%d parts, want 2 (nothing returned)", len(p.parts))
				}
				if strings.Contains(p.text(t), "attached") {
					t.Errorf("the text part speaks of an attachment that is not there")
				}
				return
			}
			o := p.part(t, 2)
			if got := o.header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			if string(o.body) != tt.want {
				t.Errorf("returned\n%q\nwant\n%q", o.body, tt.want)
			}
			if o.header.Get("Content-Transfer-Encoding") != "" {
				t.Errorf("an ASCII original has a transfer encoding: %q", o.header.Get("Content-Transfer-Encoding"))
			}
		})
	}
}

// TestReturnInternational: an original with a UTF-8 header (RFC 6532)
// returns as message/global or message/global-headers, an original with
// only an 8-bit body as message/rfc822; both declare 8bit and carry the
// bytes unchanged.
func TestReturnInternational(t *testing.T) {
	utf8Orig := "From: José <jose@example.org>\r\nSubject: façade\r\n\r\nolá\r\n"
	bodyOnly := "From: jose@example.org\r\nSubject: latin\r\n\r\nol\xe1\r\n" // Latin-1 body
	for _, tt := range []struct {
		orig     string
		ret      dsn.Return
		wantType string
		want     string
	}{
		{utf8Orig, dsn.ReturnFull, "message/global", utf8Orig},
		{utf8Orig, dsn.ReturnHeaders, "message/global-headers", utf8Orig[:strings.Index(utf8Orig, "\r\n\r\n")+2]},
		{bodyOnly, dsn.ReturnFull, "message/rfc822", bodyOnly},
	} {
		r := base(bobFailed)
		r.Original, r.Return = []byte(tt.orig), tt.ret
		p := parse(t, build(t, r))
		o := p.part(t, 2)
		if o.header.Get("Content-Type") != tt.wantType || o.header.Get("Content-Transfer-Encoding") != "8bit" {
			t.Errorf("%q RET %d: part header %v, want %s in 8bit", tt.orig, tt.ret, o.header, tt.wantType)
		}
		if string(o.body) != tt.want {
			t.Errorf("returned %q, want %q", o.body, tt.want)
		}
		if p.part(t, 1).header.Get("Content-Type") != "message/delivery-status" {
			t.Errorf("an ASCII recipient's status part is %q", p.part(t, 1).header.Get("Content-Type"))
		}
	}
}

// TestInternationalRecipient: a non-ASCII address makes the status part
// message/global-delivery-status in 8bit with the utf-8 address type
// (RFC 6533), the text part UTF-8 in quoted-printable; the reply keeps its
// UTF-8 there. With ASCII addresses only, a UTF-8 reply is escaped in the
// status part, and a utf-8 ORCPT is written in the 7-bit xtext form.
func TestInternationalRecipient(t *testing.T) {
	r := base(dsn.Recipient{
		Final: "bób@exämple.org", Original: "utf-8;BÓB@exämple.org", Action: dsn.Failed,
		RemoteMTA: "mx.xn--exmple-cua.org", Diagnostic: "550 5.1.1 utilisateur inconnu: bób",
	})
	p := parse(t, build(t, r))
	st := p.part(t, 1)
	if st.header.Get("Content-Type") != "message/global-delivery-status" || st.header.Get("Content-Transfer-Encoding") != "8bit" {
		t.Errorf("status part header %v, want message/global-delivery-status in 8bit", st.header)
	}
	want := wantGroups(r)
	want[1][0].value = "utf-8; BÓB@exämple.org"
	want[1][1].value = "utf-8; bób@exämple.org"
	checkGroups(t, st.body, want)
	if tp := p.part(t, 0); tp.header.Get("Content-Type") != "text/plain; charset=utf-8" || tp.header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("text part header %v", tp.header)
	}
	if text := p.text(t); !strings.Contains(text, "<bób@exämple.org>: failed") || !strings.Contains(text, "inconnu: bób") {
		t.Errorf("text part:\n%s", text)
	}

	r = base(dsn.Recipient{
		Final: "bob@example.com", Original: "utf-8;bob+tag@example.com", Action: dsn.Failed,
		Diagnostic: "550 5.1.1 utilisateur inconnu: bób",
	})
	p = parse(t, build(t, r))
	if p.part(t, 1).header.Get("Content-Type") != "message/delivery-status" {
		t.Fatalf("ASCII addresses gave status part %v", p.part(t, 1).header)
	}
	want = wantGroups(r)
	want[1][0].value = `utf-8; bob\x{2B}tag@example.com`
	want[1][4].value = `smtp; 550 5.1.1 utilisateur inconnu: b\x{F3}b`
	checkGroups(t, p.part(t, 1).body, want)
	if !isASCII(p.part(t, 1).body) {
		t.Errorf("the ASCII status part has 8-bit bytes: %q", p.part(t, 1).body)
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// TestFolding: a long reply is folded into lines of at most 78 octets
// (a single word over 998 octets is cut), and reads back unfolded as the
// reply.
func TestFolding(t *testing.T) {
	words := strings.Repeat("the remote server explains at length why ", 40)
	long := "550 5.7.1 " + strings.TrimSpace(words)
	r := base(dsn.Recipient{Final: "bob@example.com", Action: dsn.Failed, Diagnostic: long})
	raw := build(t, r)
	p := parse(t, raw)
	if p.longestRaw > 80 { // 78 octets and CRLF
		t.Errorf("longest line %d octets, want at most 78 and CRLF", p.longestRaw)
	}
	checkGroups(t, p.part(t, 1).body, wantGroups(r))

	token := strings.Repeat("x", 5000)
	r = base(dsn.Recipient{Final: "bob@example.com", Action: dsn.Failed, Diagnostic: "550 " + token})
	p = parse(t, build(t, r))
	if !p.linesOK {
		t.Errorf("a 5000-octet word made a line over 998 octets (longest %d)", p.longestRaw)
	}
	groups, err := statusGroups(p.part(t, 1).body)
	if err != nil || len(groups) != 2 {
		t.Fatalf("status groups %v, %v", groups, err)
	}
	if got := strings.ReplaceAll(groups[1].Get("Diagnostic-Code"), " ", ""); got != "smtp;550"+token {
		t.Errorf("the cut word does not read back whole (spaces aside): %d octets", len(got))
	}
}

// TestHostileReply: CR, LF and MIME delimiters in a server's reply or host
// name add no header field, no status field and no part; they are cleaned
// into one line.
func TestHostileReply(t *testing.T) {
	r := base(dsn.Recipient{
		Final: "bob@example.com", Action: dsn.Failed,
		RemoteMTA:  "mx.example.com\r\nX-Host-Injected: 1",
		Diagnostic: "550 no\r\nX-Injected: yes\r\n\r\nFinal-Recipient: rfc822; mallory@example.net\r\n--BOUND\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\n\x1b[2J\u202eevil",
	})
	r.Boundary = "BOUND-1"
	raw := build(t, r)
	p := parse(t, raw)
	if len(p.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(p.parts))
	}
	groups, err := statusGroups(p.part(t, 1).body)
	if err != nil || len(groups) != 2 {
		t.Fatalf("status groups %v (%v), want 2", groups, err)
	}
	g := groups[1]
	for _, k := range []string{"X-Injected", "X-Host-Injected"} {
		if g.Get(k) != "" {
			t.Errorf("field %s injected", k)
		}
	}
	if got := g.Values("Final-Recipient"); len(got) != 1 || got[0] != "rfc822; bob@example.com" {
		t.Errorf("Final-Recipient %q", got)
	}
	wantDiag := `smtp; 550 no X-Injected: yes Final-Recipient: rfc822; mallory@example.net --BOUND Content-Type: text/html <b>hi</b> \x{1B}[2J\x{202E}evil`
	if got := g.Get("Diagnostic-Code"); got != wantDiag {
		t.Errorf("Diagnostic-Code\n%q\nwant\n%q", got, wantDiag)
	}
	if got := g.Get("Remote-Mta"); got != "dns; mx.example.com X-Host-Injected: 1" {
		t.Errorf("Remote-MTA %q", got)
	}
	if text := p.text(t); strings.ContainsAny(text, "\x1b\u202e") || strings.Contains(text, "\nX-Injected") {
		t.Errorf("the text part carries the controls or the line break:\n%q", text)
	}
}

// TestBoundary: an original holding delimiter lines of a would-be
// boundary is returned whole, under a boundary that does not occur in it;
// a fixed boundary that occurs in the content is refused.
func TestBoundary(t *testing.T) {
	evil := "From: x@example.org\r\nContent-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\n" +
		"--BOUND\r\nContent-Type: text/plain\r\n\r\nhi\r\n--=_dsn_0\r\n--BOUND--\r\n"
	r := base(bobFailed)
	r.Original, r.Return = []byte(evil), dsn.ReturnFull
	p := parse(t, build(t, r))
	if len(p.parts) != 3 || string(p.parts[2].body) != evil {
		t.Fatalf("%d parts; returned %q, want the original whole", len(p.parts), p.part(t, 2).body)
	}
	if b := p.params["boundary"]; strings.Contains(evil, b) {
		t.Errorf("boundary %q occurs in the original", b)
	}

	r.Boundary = "BOUND"
	if _, err := dsn.Build(r); err == nil || !strings.Contains(err.Error(), "boundary") {
		t.Errorf("a fixed boundary found in the original: err %v, want a boundary error", err)
	}
	r.Boundary = "QQ"
	r.Recipients = []dsn.Recipient{{Final: "bob@example.com", Action: dsn.Failed, Diagnostic: "550 --QQ"}}
	if _, err := dsn.Build(r); err == nil {
		t.Errorf("a fixed boundary found in the reply was accepted")
	}
}

// TestNullSender: no DSN for the null reverse-path.
func TestNullSender(t *testing.T) {
	for _, to := range []string{"", "<>"} {
		r := base(bobFailed)
		r.To = to
		if raw, err := dsn.Build(r); !errors.Is(err, dsn.ErrNullSender) || raw != nil {
			t.Errorf("To %q: err %v, want ErrNullSender and no message", to, err)
		}
	}
}

// TestRefused: values the MTA owns are refused, not altered, when they
// hold a line break or break the rules of their field.
func TestRefused(t *testing.T) {
	rc := func(f func(*dsn.Recipient)) func(*dsn.Report) {
		return func(r *dsn.Report) { f(&r.Recipients[0]) }
	}
	for _, tt := range []struct {
		name string
		edit func(*dsn.Report)
		want string // in the error
	}{
		{"CRLF in Final", rc(func(x *dsn.Recipient) { x.Final = "bob@example.com\r\nBcc: eve@example.net" }), "Final"},
		{"LF in Original", rc(func(x *dsn.Recipient) { x.Original = "rfc822;bob@example.com\nX: y" }), "Original"},
		{"Original without type", rc(func(x *dsn.Recipient) { x.Original = "bob@example.com" }), "addr-type"},
		{"CRLF in To", func(r *dsn.Report) { r.To = "alice@example.org\r\nBcc: eve@example.net" }, "To"},
		{"CRLF in From", func(r *dsn.Report) { r.From = "m@example.org\r\nBcc: eve@example.net" }, "From"},
		{"From not an address", func(r *dsn.Report) { r.From = "MAILER-DAEMON" }, "From"},
		{"CR in ReportingMTA", func(r *dsn.Report) { r.ReportingMTA = "mta\rX" }, "ReportingMTA"},
		{"no ReportingMTA", func(r *dsn.Report) { r.ReportingMTA = "" }, "ReportingMTA"},
		{"LF in ReceivedFromMTA", func(r *dsn.Report) { r.ReceivedFromMTA = "a\nb" }, "ReceivedFromMTA"},
		{"LF in EnvID", func(r *dsn.Report) { r.EnvID = "id\nX: y" }, "EnvID"},
		{"UTF-8 EnvID", func(r *dsn.Report) { r.EnvID = "idé" }, "EnvID"},
		{"CRLF in MessageID", func(r *dsn.Report) { r.MessageID = "a@b>\r\nX: <c@d" }, "MessageID"},
		{"no recipients", func(r *dsn.Report) { r.Recipients = nil }, "no recipients"},
		{"unknown action", rc(func(x *dsn.Recipient) { x.Action = "bounced" }), "Action"},
		{"bad status", rc(func(x *dsn.Recipient) { x.Status = "5.1" }), "Status"},
		{"status with a comment", rc(func(x *dsn.Recipient) { x.Status = "5.1.1\r\nX: y" }), "Status"},
		{"status class against action", rc(func(x *dsn.Recipient) { x.Status = "2.0.0" }), "does not fit"},
		{"retry time on a failure", rc(func(x *dsn.Recipient) { x.WillRetryUntil = retry }), "WillRetryUntil"},
	} {
		r := base(bobFailed)
		r.Recipients = []dsn.Recipient{bobFailed}
		tt.edit(&r)
		raw, err := dsn.Build(r)
		if err == nil || !strings.Contains(err.Error(), tt.want) || raw != nil {
			t.Errorf("%s: err %v, want one naming %q", tt.name, err, tt.want)
		}
	}
	// A failure may carry a 4.x.x status: a message that expired after
	// temporary errors.
	r := base(dsn.Recipient{Final: "bob@example.com", Action: dsn.Failed, Status: "4.4.7"})
	if _, err := dsn.Build(r); err != nil {
		t.Errorf("failed with 4.4.7: %v", err)
	}
}

// TestDefaults: with no Date, MessageID or Boundary, Build makes them: a
// current date, a Message-ID at ReportingMTA, and a boundary, different
// for every call.
func TestDefaults(t *testing.T) {
	r := base(bobFailed)
	r.Date, r.MessageID = time.Time{}, ""
	before := time.Now().Add(-time.Second)
	p1, p2 := parse(t, build(t, r)), parse(t, build(t, r))
	d, err := p1.header.Date()
	if err != nil || d.Before(before) || d.After(time.Now().Add(time.Second)) {
		t.Errorf("Date %v (%v), want about now", d, err)
	}
	id := p1.header.Get("Message-Id")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mta.example.org>") || id == p2.header.Get("Message-Id") {
		t.Errorf("Message-IDs %q and %q, want two different ones at mta.example.org", id, p2.header.Get("Message-Id"))
	}
	if p1.params["boundary"] == p2.params["boundary"] {
		t.Errorf("two reports share boundary %q", p1.params["boundary"])
	}
}
