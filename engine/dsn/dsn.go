package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// Action is what happened to a recipient (RFC 3464 section 2.3.3).
type Action string

// The actions. A DSN is sent for failed recipients, for delayed ones when
// the MTA warns of a delay, and for the others only when the sender asked
// for NOTIFY=SUCCESS.
const (
	Failed    Action = "failed"    // not delivered, and never will be
	Delayed   Action = "delayed"   // not delivered yet; still being tried
	Delivered Action = "delivered" // delivered to the recipient's mailbox or server
	Relayed   Action = "relayed"   // handed to a server that sends no DSN itself
	Expanded  Action = "expanded"  // delivered to an alias or list that sent it on
)

// Return says how much of the original message the DSN carries back (the
// RET parameter of MAIL FROM, RFC 3461 section 4.3). The values are in the
// order of transport.DSNReturn's.
type Return int

const (
	// ReturnDefault applies when the sender gave no RET: the full message
	// for a report with a failed recipient, the header otherwise.
	ReturnDefault Return = iota
	// ReturnFull is RET=FULL: the full message for a report with a failed
	// recipient, the header otherwise (RFC 3461 section 4.3: only failures
	// return the content).
	ReturnFull
	// ReturnHeaders is RET=HDRS: the header only.
	ReturnHeaders
)

// Recipient is one recipient the report is about: one group of
// per-recipient fields (RFC 3464 section 2.3).
type Recipient struct {
	// Final is the address delivery was tried to (Final-Recipient). An ASCII
	// address gets the rfc822 type, any other the utf-8 type (RFC 6533).
	Final string
	// Original is the ORCPT of the recipient as "addr-type;address", the
	// address decoded (see [ParseORCPT]), or "" when there was none
	// (Original-Recipient).
	Original string
	// Action is what happened (Action). Required.
	Action Action
	// Status is the enhanced status code, "5.1.1" (RFC 3463). When "", it
	// is 5.0.0, 4.0.0 or 2.0.0 by Action. Its class must agree with
	// Action: 2 for delivered, relayed and expanded, 4 for delayed, 4 or 5
	// for failed (a message that expired after temporary errors).
	Status string
	// RemoteMTA is the host name of the server that gave Diagnostic,
	// written "dns; host" (Remote-MTA). Leave it "" when the reply was not
	// the server's own (no connection, a local failure).
	RemoteMTA string
	// Diagnostic is the SMTP reply, "550 5.1.1 <bob@example.com>: user
	// unknown", written "smtp; ..." (Diagnostic-Code). Cleaned, not
	// refused (see the package documentation).
	Diagnostic string
	// LastAttempt is when delivery was last tried (Last-Attempt-Date);
	// omitted when zero.
	LastAttempt time.Time
	// WillRetryUntil is when a delayed recipient will be given up
	// (Will-Retry-Until); delayed recipients only, omitted when zero.
	WillRetryUntil time.Time
}

// Report is everything one DSN says. The DSN goes to To, the original
// envelope sender, and should be sent with the null reverse-path.
type Report struct {
	// ReportingMTA is this MTA's host name (Reporting-MTA: dns; ...).
	// Required; ASCII (A-labels).
	ReportingMTA string
	// ReceivedFromMTA is the host name of the client the message came from
	// (Received-From-MTA), optional.
	ReceivedFromMTA string
	// EnvID is the ENVID the message was sent with, decoded (Original-
	// Envelope-Id), optional. Printable ASCII, as RFC 3461 section 4.4
	// requires.
	EnvID string
	// Arrival is when the message arrived (Arrival-Date); omitted when zero.
	Arrival time.Time
	// From is the DSN's From:, "MAILER-DAEMON@mta.example.org" or with a
	// display name. Required.
	From string
	// To is the original envelope sender, to whom the DSN goes. "" (or
	// "<>") is the null sender, which never gets a DSN: Build returns
	// [ErrNullSender].
	To string
	// Return is the sender's RET.
	Return Return
	// MaxReturnSize, when positive, returns only the header of an original
	// longer than that many bytes, whatever Return says.
	MaxReturnSize int
	// Original is the original message (header and body, LF or CRLF line
	// endings), or nil to return nothing of it.
	Original []byte
	// Recipients are the recipients the report is about, any mix of
	// actions, in the order they are reported. At least one.
	Recipients []Recipient
	// Date is the DSN's Date:; the current time when zero.
	Date time.Time
	// MessageID is the DSN's Message-ID, with or without angle brackets; a
	// random one at ReportingMTA when "".
	MessageID string
	// Boundary is the MIME boundary; a random one when "". A fixed boundary
	// that occurs in the content is an error.
	Boundary string
}

// ErrNullSender is returned by [Build] for a report to the null sender: a
// DSN is never sent about a message that had no return path (RFC 5321
// section 4.5.5), which is what stops bounce loops.
var ErrNullSender = errors.New("dsn: the envelope sender is null: no DSN is sent to <>")

// Build returns the DSN for r as an RFC 5322 message with CRLF line
// endings. Its header and its status part are 7-bit unless an address is
// not ASCII; the returned original is carried as it is, so the DSN needs
// 8BITMIME when the original did, and SMTPUTF8 when To or From is not
// ASCII.
func Build(r Report) ([]byte, error) {
	if r.To == "" || r.To == "<>" {
		return nil, ErrNullSender
	}
	h, err := r.header()
	if err != nil {
		return nil, err
	}
	rcpts, err := r.prepare()
	if err != nil {
		return nil, err
	}
	global := false
	for _, p := range rcpts {
		global = global || !isASCII(p.Final) || !isASCII(p.origAddr)
	}
	orig, returned := r.returned(rcpts)
	parts := []part{
		humanPart(&r, rcpts, returned),
		statusPart(&r, rcpts, global),
	}
	if returned != "" {
		parts = append(parts, orig)
	}
	boundary, err := pickBoundary(r.Boundary, parts)
	if err != nil {
		return nil, err
	}

	var b bytes.Buffer
	for _, f := range h {
		writeField(&b, f[0], f[1])
	}
	ct := mime.FormatMediaType("multipart/report", map[string]string{"report-type": "delivery-status", "boundary": boundary})
	writeField(&b, "Content-Type", ct)
	b.WriteString("\r\n")
	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, fmt.Errorf("dsn: boundary %q: %w", boundary, err)
	}
	for _, p := range parts {
		w, err := mw.CreatePart(p.header)
		if err != nil {
			return nil, fmt.Errorf("dsn: writing the %s part: %w", p.header.Get("Content-Type"), err)
		}
		w.Write(p.body) // a bytes.Buffer: never fails
	}
	mw.Close()
	return b.Bytes(), nil
}

// header checks the message-level values and returns the DSN's header
// fields but Content-Type, in order.
func (r *Report) header() ([][2]string, error) {
	if err := checkAddr(r.From); err != nil {
		return nil, fmt.Errorf("dsn: From %q %w", r.From, err)
	}
	from, err := mail.ParseAddress(r.From)
	if err != nil {
		return nil, fmt.Errorf("dsn: From %q is not an address: %w", r.From, err)
	}
	if err := checkAddr(r.To); err != nil {
		return nil, fmt.Errorf("dsn: To (the envelope sender) %q %w", r.To, err)
	}
	to, err := mail.ParseAddress("<" + r.To + ">")
	if err != nil {
		return nil, fmt.Errorf("dsn: To (the envelope sender) %q is not an address: %w", r.To, err)
	}
	if err := checkHost(r.ReportingMTA); err != nil {
		return nil, fmt.Errorf("dsn: ReportingMTA %q %w", r.ReportingMTA, err)
	}
	if r.ReceivedFromMTA != "" {
		if err := checkHost(r.ReceivedFromMTA); err != nil {
			return nil, fmt.Errorf("dsn: ReceivedFromMTA %q %w", r.ReceivedFromMTA, err)
		}
	}
	if r.EnvID != "" {
		if err := checkPrintable(r.EnvID, true); err != nil {
			return nil, fmt.Errorf("dsn: EnvID %q %w", r.EnvID, err)
		}
	}
	id, err := r.messageID()
	if err != nil {
		return nil, err
	}
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	return [][2]string{
		{"From", from.String()},
		{"To", (&mail.Address{Address: to.Address}).String()},
		{"Date", date.Format(time.RFC1123Z)},
		{"Message-ID", id},
		{"Subject", r.subject()},
		{"Auto-Submitted", "auto-replied"},
		{"MIME-Version", "1.0"},
	}, nil
}

// messageID returns r.MessageID in angle brackets, or a new one.
func (r *Report) messageID() (string, error) {
	if r.MessageID == "" {
		return "<" + randomHex(16) + ".dsn@" + r.ReportingMTA + ">", nil
	}
	id := strings.TrimSuffix(strings.TrimPrefix(r.MessageID, "<"), ">")
	if err := checkPrintable(id, false); err != nil || strings.ContainsAny(id, "<>") || !strings.Contains(id, "@") {
		return "", fmt.Errorf("dsn: MessageID %q is not id-left@id-right in printable ASCII", r.MessageID)
	}
	return "<" + id + ">", nil
}

// subject names what kind of report this is.
func (r *Report) subject() string {
	kinds := map[string]bool{}
	for _, rc := range r.Recipients {
		switch rc.Action {
		case Failed:
			kinds["failed"] = true
		case Delayed:
			kinds["delayed"] = true
		default:
			kinds["success"] = true
		}
	}
	switch {
	case len(kinds) > 1:
		return "Mail Delivery Status Report"
	case kinds["failed"]:
		return "Undelivered Mail Returned to Sender"
	case kinds["delayed"]:
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

// prepared is a checked recipient with its derived values.
type prepared struct {
	Recipient
	status             string // Status or its default
	origType, origAddr string // Original split; "" when none
}

// prepare checks every recipient.
func (r *Report) prepare() ([]prepared, error) {
	if len(r.Recipients) == 0 {
		return nil, errors.New("dsn: the report has no recipients")
	}
	out := make([]prepared, len(r.Recipients))
	for i, rc := range r.Recipients {
		p, err := prepareRecipient(rc)
		if err != nil {
			return nil, fmt.Errorf("dsn: recipient %d (%q): %w", i, rc.Final, err)
		}
		out[i] = p
	}
	return out, nil
}

func prepareRecipient(rc Recipient) (prepared, error) {
	p := prepared{Recipient: rc, status: rc.Status}
	if err := checkAddr(rc.Final); err != nil {
		return p, fmt.Errorf("field Final %w", err)
	}
	if rc.Original != "" {
		t, a, ok := strings.Cut(rc.Original, ";")
		a = strings.TrimSpace(a)
		if !ok || !isAtom(t) {
			return p, fmt.Errorf("field Original %q is not addr-type;address", rc.Original)
		}
		if err := checkAddr(a); err != nil {
			return p, fmt.Errorf("field Original: address %q %w", a, err)
		}
		p.origType, p.origAddr = strings.ToLower(t), a
	}
	var class byte
	switch rc.Action {
	case Failed:
		class = '5'
	case Delayed:
		class = '4'
	case Delivered, Relayed, Expanded:
		class = '2'
	default:
		return p, fmt.Errorf("field Action %q is none of failed, delayed, delivered, relayed, expanded", rc.Action)
	}
	if p.status == "" {
		p.status = string(class) + ".0.0"
	}
	if !isStatusCode(p.status) {
		return p, fmt.Errorf("field Status %q is not an RFC 3463 code (class.subject.detail)", p.status)
	}
	if p.status[0] != class && (rc.Action != Failed || p.status[0] != '4') {
		return p, fmt.Errorf("field Status %s does not fit Action %s", p.status, rc.Action)
	}
	if !rc.WillRetryUntil.IsZero() && rc.Action != Delayed {
		return p, fmt.Errorf("field WillRetryUntil is for delayed recipients, not %s", rc.Action)
	}
	return p, nil
}

// isStatusCode reports whether s is class "." subject "." detail with a
// class of 2, 4 or 5 and one to three digits each for the others
// (RFC 3463 section 2).
func isStatusCode(s string) bool {
	f := strings.Split(s, ".")
	if len(f) != 3 || (f[0] != "2" && f[0] != "4" && f[0] != "5") {
		return false
	}
	for _, n := range f[1:] {
		if len(n) < 1 || len(n) > 3 || strings.Trim(n, "0123456789") != "" {
			return false
		}
	}
	return true
}

// checkHost accepts a host name or address literal: printable ASCII
// without spaces, at most 255 bytes.
func checkHost(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > 255 {
		return errors.New("is longer than 255 bytes")
	}
	return checkPrintable(s, false)
}

// checkPrintable accepts printable ASCII (with spaces when spaces is set)
// of at most maxValue bytes.
func checkPrintable(s string, spaces bool) error {
	if len(s) > maxValue {
		return fmt.Errorf("is longer than %d bytes", maxValue)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' {
			if c == ' ' && spaces {
				continue
			}
			return fmt.Errorf("has byte 0x%02X: only printable ASCII is allowed", c)
		}
	}
	return nil
}

// part is one body part of the report.
type part struct {
	header textproto.MIMEHeader
	body   []byte
}

// pickBoundary returns fixed, or a random boundary when fixed is "",
// making sure no part contains it: a delimiter line is "--" boundary, so
// content without that string can hold no delimiter.
func pickBoundary(fixed string, parts []part) (string, error) {
	occurs := func(b string) bool {
		for _, p := range parts {
			if bytes.Contains(p.body, []byte("--"+b)) {
				return true
			}
		}
		return false
	}
	if fixed != "" {
		if occurs(fixed) {
			return "", fmt.Errorf("dsn: boundary %q occurs in the report's content", fixed)
		}
		return fixed, nil
	}
	// 128 random bits: a collision needs an original crafted with a
	// boundary nobody can predict; the loop is there for correctness.
	for {
		b := "=_dsn_" + randomHex(16)
		if !occurs(b) {
			return b, nil
		}
	}
}

func randomHex(n int) string {
	buf := make([]byte, n)
	rand.Read(buf) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(buf)
}
