package dsn

import (
	"bytes"
	"fmt"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// statusPart writes the message/delivery-status part (RFC 3464 section
// 2.1): the per-message fields, then one group per recipient, each group
// after a blank line. global selects message/global-delivery-status
// (RFC 6533), where addresses and the diagnostic may be UTF-8.
func statusPart(r *Report, rcpts []prepared, global bool) part {
	var b bytes.Buffer
	// The order is that of RFC 3464's grammar.
	if r.EnvID != "" {
		writeField(&b, "Original-Envelope-Id", r.EnvID)
	}
	writeField(&b, "Reporting-MTA", "dns; "+r.ReportingMTA)
	if r.ReceivedFromMTA != "" {
		writeField(&b, "Received-From-MTA", "dns; "+r.ReceivedFromMTA)
	}
	writeDate(&b, "Arrival-Date", r.Arrival)
	for _, p := range rcpts {
		b.WriteString("\r\n")
		if p.origType != "" {
			writeField(&b, "Original-Recipient", typedAddr(p.origType, p.origAddr, global))
		}
		writeField(&b, "Final-Recipient", typedAddr("rfc822", p.Final, global))
		writeField(&b, "Action", string(p.Action))
		writeField(&b, "Status", p.status)
		if p.RemoteMTA != "" {
			if h := cleanText(p.RemoteMTA, !global); h != "" {
				writeField(&b, "Remote-MTA", "dns; "+h)
			}
		}
		if p.Diagnostic != "" {
			if d := cleanText(p.Diagnostic, !global); d != "" {
				writeField(&b, "Diagnostic-Code", "smtp; "+d)
			}
		}
		writeDate(&b, "Last-Attempt-Date", p.LastAttempt)
		writeDate(&b, "Will-Retry-Until", p.WillRetryUntil)
	}
	h := textproto.MIMEHeader{}
	if global {
		h.Set("Content-Type", "message/global-delivery-status")
		h.Set("Content-Transfer-Encoding", "8bit") // RFC 6533: 8bit, not encoded
	} else {
		h.Set("Content-Type", "message/delivery-status")
	}
	return part{h, b.Bytes()}
}

// typedAddr writes an address with its type, "rfc822; bob@example.com".
// A non-ASCII rfc822 address gets the utf-8 type (RFC 6533 section 3),
// which is legal only in a global status part, where it is written as it
// is; a utf-8 address in an ASCII part takes the 7-bit utf-8-addr-xtext
// form.
func typedAddr(addrType, addr string, global bool) string {
	if addrType == "rfc822" && !isASCII(addr) {
		addrType = "utf-8"
	}
	if addrType == "utf-8" && !global {
		addr = encodeUTF8Addr(addr, true)
	}
	return addrType + "; " + addr
}

func writeDate(b *bytes.Buffer, name string, t time.Time) {
	if !t.IsZero() {
		writeField(b, name, t.Format(time.RFC1123Z))
	}
}

// Line lengths of RFC 5322 section 2.1.1: lines should stay within 78
// octets and must within 998.
const (
	softLine = 78
	hardLine = 998
)

// writeField writes "name: value" CRLF, folding at spaces so that lines
// stay within 78 octets where the words allow. A word too long for a line
// of 998 octets (only cleaned network text can hold one) is cut at a rune
// boundary, which adds a space where it was cut. value holds no CR, LF or
// other control: every caller checks or cleans it first.
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteByte(':')
	n := len(name) + 1
	first := true
	for _, w := range strings.Split(value, " ") {
		for len(w) > hardLine-len(name)-3 {
			cut := hardLine - len(name) - 3
			for !utf8.RuneStart(w[cut]) {
				cut--
			}
			n = foldWord(b, w[:cut], n, first)
			first = false
			w = w[cut:]
		}
		n = foldWord(b, w, n, first)
		first = false
	}
	b.WriteString("\r\n")
}

// foldWord writes " word", first on a continuation line when the current
// line (n octets so far) would pass 78 octets; the first word always stays
// on the name's line. It returns the new line length.
func foldWord(b *bytes.Buffer, w string, n int, first bool) int {
	if !first && w != "" && n+1+len(w) > softLine {
		b.WriteString("\r\n")
		n = 0
	}
	b.WriteByte(' ')
	b.WriteString(w)
	return n + 1 + len(w)
}

// cleanText makes text from the network (a server's reply, a host name)
// safe for a header field or a line of text: invalid UTF-8 becomes U+FFFD,
// tabs and line breaks become spaces and runs of spaces one space, other
// controls and the bidirectional controls (which can make text read in a
// different order) become \x{HEX}, as does every non-ASCII character when
// ascii is set (RFC 6533 section 3's escape).
func cleanText(s string, ascii bool) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == ' ' || r == '\t' || r == '\r' || r == '\n':
			space = b.Len() > 0
			continue
		case r < ' ' || r >= 0x7f && r < 0xa0 || isBidiControl(r) || r >= 0x80 && ascii:
			if space {
				b.WriteByte(' ')
				space = false
			}
			fmt.Fprintf(&b, `\x{%X}`, r)
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isBidiControl reports the characters that reorder or break the display
// of a line: the bidirectional marks, embeddings, overrides and isolates,
// and the line and paragraph separators.
func isBidiControl(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F, r == 0x2028, r == 0x2029:
		return true
	case 0x202A <= r && r <= 0x202E, 0x2066 <= r && r <= 0x2069:
		return true
	}
	return false
}

// returned returns the part that carries the original back and what it
// holds, "message" or "header" ("" for no part): the full message for a
// report with a failed recipient unless the sender asked for headers (or
// it is over MaxReturnSize), else the header as text/rfc822-headers
// (RFC 3461 section 4.3, RFC 6522). An original whose header is not ASCII
// (RFC 6532) goes as message/global or message/global-headers (RFC 6533).
func (r *Report) returned(rcpts []prepared) (part, string) {
	if r.Original == nil {
		return part{}, ""
	}
	msg := crlf(r.Original)
	head := msg // no blank line: all header
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		head = nil // an empty header
	} else if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		head = msg[:i+2]
	}
	failed := false
	for _, p := range rcpts {
		failed = failed || p.Action == Failed
	}
	full := failed && r.Return != ReturnHeaders && (r.MaxReturnSize <= 0 || len(r.Original) <= r.MaxReturnSize)
	utf8Head := !isASCII(head)
	h := textproto.MIMEHeader{}
	body, what := head, "header"
	if full {
		body, what = msg, "message"
	}
	switch {
	case full && utf8Head:
		h.Set("Content-Type", "message/global")
	case full:
		h.Set("Content-Type", "message/rfc822")
	case utf8Head:
		h.Set("Content-Type", "message/global-headers")
	default:
		h.Set("Content-Type", "text/rfc822-headers")
	}
	// message/rfc822 allows no encoding but 7bit, 8bit and binary
	// (RFC 2046 section 5.2.1): 8-bit content is declared, never encoded.
	if !isASCII(body) {
		h.Set("Content-Transfer-Encoding", "8bit")
	}
	return part{h, body}, what
}

// crlf returns msg with every line ending CRLF: bare LF and bare CR
// become CRLF, as on the wire.
func crlf(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/32)
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; {
		case c == '\r' && i+1 < len(msg) && msg[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}
