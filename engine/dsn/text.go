package dsn

import (
	"bytes"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// humanPart writes the text/plain part for people, the first of a
// multipart/report (RFC 6522): what happened to each recipient, and the
// remote server's reply. It is US-ASCII, or UTF-8 in quoted-printable so
// that the part stays 7-bit whatever a server replied. returned says what
// the report carries back: "message", "header" or "".
func humanPart(r *Report, rcpts []prepared, returned string) part {
	var t strings.Builder
	line := func(s string) { t.WriteString(s + "\n") }
	para := func(s string) {
		for _, l := range wrap(s, 72) {
			line(l)
		}
		line("")
	}
	para("This is the mail system at " + r.ReportingMTA + ".")
	var failed, delayed, success bool
	for _, p := range rcpts {
		failed = failed || p.Action == Failed
		delayed = delayed || p.Action == Delayed
		success = success || p.Action != Failed && p.Action != Delayed
	}
	if failed {
		para("Your message could not be delivered to the recipients marked \"failed\" below. The mail system has given up on them.")
	}
	if delayed {
		para("Your message has not been delivered yet to the recipients marked \"delayed\" below. The mail system is still trying; you do not need to send it again.")
	}
	if success {
		para("Your message was delivered to the recipients marked \"delivered\" below (\"relayed\": passed to a system that sends no reports; \"expanded\": passed to a list or alias). You asked to be told.")
	}
	for _, p := range rcpts {
		recipientText(line, p)
	}
	switch returned {
	case "header":
		para("The header of your message is attached.")
	case "message":
		para("Your message is attached.")
	}

	text := []byte(strings.ReplaceAll(strings.TrimSuffix(t.String(), "\n"), "\n", "\r\n"))
	h := textproto.MIMEHeader{}
	if isASCII(text) {
		h.Set("Content-Type", "text/plain; charset=us-ascii")
		return part{h, text}
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(text) // a bytes.Buffer: never fails
	w.Close()
	return part{h, b.Bytes()}
}

// recipientText writes one recipient's paragraph.
func recipientText(line func(string), p prepared) {
	head := "<" + cleanText(p.Final, false) + ">: " + string(p.Action) + ", status " + p.status
	for _, l := range wrap(head, 72) {
		line(l)
	}
	item := func(label, value string) {
		for i, l := range wrap(label+value, 64) {
			if i > 0 {
				l = "    " + l // continuation lines indented once more
			}
			line("    " + l)
		}
	}
	if p.origAddr != "" && p.origAddr != p.Final {
		item("Originally addressed to: ", "<"+cleanText(p.origAddr, false)+">")
	}
	if d := cleanText(p.Diagnostic, false); d != "" {
		if host := cleanText(p.RemoteMTA, false); host != "" {
			item(host+" said: ", d)
		} else {
			item("Reason: ", d)
		}
	}
	if !p.LastAttempt.IsZero() {
		item("Last attempt: ", p.LastAttempt.Format(time.RFC1123Z))
	}
	if !p.WillRetryUntil.IsZero() {
		item("Will retry until: ", p.WillRetryUntil.Format(time.RFC1123Z))
	}
	line("")
}

// wrap breaks s (no line breaks in it) into lines of at most width runes
// at spaces; a longer word is cut.
func wrap(s string, width int) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(s) {
		for utf8.RuneCountInString(w) > width {
			if cur != "" {
				lines, cur = append(lines, cur), ""
			}
			cut := 0
			for i := 0; i < width; i++ {
				_, n := utf8.DecodeRuneInString(w[cut:])
				cut += n
			}
			lines, w = append(lines, w[:cut]), w[cut:]
		}
		switch {
		case cur == "":
			cur = w
		case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(w) > width:
			lines, cur = append(lines, cur), w
		default:
			cur += " " + w
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
