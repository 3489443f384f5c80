package smtpd

import (
	"crypto/tls"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// receivedInfo is what the Received header says.
type receivedInfo struct {
	helo, ptr string
	ip        netip.Addr
	by        string
	tls       *tls.ConnectionState
	auth      bool
	utf8      bool
	rcpts     []string
	at        time.Time
	id        string // the queue ID, "" when the Store does not say
}

// receivedHeader writes our trace field (RFC 5321 4.4, protocol names from
// RFC 3848 and RFC 6531 3.7.3), folded, CRLF-terminated:
//
//	Received: from HELO (PTR [IP])
//		(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)
//		by HOSTNAME (Postern) with ESMTPS
//		for <rcpt>; Mon, 02 Jan 2006 15:04:05 -0700
//
// The protocol is ESMTP even after a HELO (go-smtp does not tell which
// greeting the client used; a HELO client cannot use ESMTP parameters, so
// only the word is off). The "id" clause is the queue ID when the
// Store's Receipt tells it ([Identified]): a delivered copy then names
// the ID the relay logged. "for" is written for a single recipient only,
// so that a message to several does not show each one the others.
func receivedHeader(in receivedInfo) []byte {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(traceText(in.helo, "unknown", in.utf8))
	b.WriteString(" (")
	b.WriteString(traceText(in.ptr, "unknown", false))
	b.WriteString(" [")
	if ip := in.ip.Unmap(); ip.Is6() {
		b.WriteString("IPv6:")
		b.WriteString(ip.WithZone("").String())
	} else {
		b.WriteString(ip.String())
	}
	b.WriteString("])\r\n")
	if in.tls != nil {
		b.WriteString("\t(using ")
		b.WriteString(tlsVersion(in.tls.Version))
		b.WriteString(" with cipher ")
		b.WriteString(tls.CipherSuiteName(in.tls.CipherSuite))
		b.WriteString(")\r\n")
	}
	b.WriteString("\tby ")
	b.WriteString(in.by)
	b.WriteString(" (Postern) with ")
	proto := "ESMTP"
	if in.utf8 {
		proto = "UTF8SMTP"
	}
	if in.tls != nil {
		proto += "S"
	}
	if in.auth {
		proto += "A"
	}
	b.WriteString(proto)
	if in.id != "" {
		b.WriteString("\r\n\tid ")
		b.WriteString(traceText(in.id, "", false))
	}
	if len(in.rcpts) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(traceText(in.rcpts[0], "unknown", in.utf8))
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(in.at.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// traceText makes client-given text safe inside the header: at most 255
// octets, nothing that would end a comment or the field (parentheses,
// backslash, semicolon, angle brackets, quotes, white space, control
// characters, and non-ASCII unless allowUTF8 (SMTPUTF8) allows it, become '_');
// def when empty.
func traceText(s, def string, allowUTF8 bool) string {
	if len(s) > 255 {
		s = s[:255]
	}
	if s == "" {
		return def
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError, r <= ' ', r == 0x7f, r > 0x7f && !allowUTF8, r >= 0x80 && r < 0xa0:
			return '_'
		case strings.ContainsRune("()\\;<>\"", r):
			return '_'
		}
		return r
	}, s)
}
