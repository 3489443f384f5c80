package transport

import (
	"strconv"
	"strings"

	"github.com/postern-mta/postern/internal/xtext"
)

// mailCommand builds MAIL FROM with the parameters the server offers.
func (d *delivery) mailCommand(s *session) string {
	msg := d.msg
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	b.WriteString(d.from)
	b.WriteByte('>')
	if !s.esmtp {
		return b.String()
	}
	if s.ext.has("SIZE") && msg.Size > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(msg.Size, 10))
	}
	// RFC 6152: announce 8-bit content. A server without 8BITMIME gets the
	// body as is (as Postfix does by default); the alternative, bouncing,
	// helps no one.
	if d.eight && s.ext.has("8BITMIME") {
		b.WriteString(" BODY=8BITMIME")
	}
	if d.utf8 {
		b.WriteString(" SMTPUTF8")
	}
	if msg.RequireTLS {
		b.WriteString(" REQUIRETLS")
	}
	if s.ext.has("DSN") {
		switch msg.Return {
		case ReturnFull:
			b.WriteString(" RET=FULL")
		case ReturnHeaders:
			b.WriteString(" RET=HDRS")
		}
		if msg.EnvID != "" {
			b.WriteString(" ENVID=")
			b.WriteString(xtext.Encode(msg.EnvID))
		}
	}
	return b.String()
}

// rcptCommand builds RCPT TO for r, whose canonical address is addr, with
// DSN parameters when offered.
func (d *delivery) rcptCommand(s *session, r Recipient, addr string) string {
	line := "RCPT TO:<" + addr + ">"
	if s.esmtp && s.ext.has("DSN") {
		if n := r.Notify.String(); n != "" {
			line += " NOTIFY=" + n
		}
		if r.ORcpt != "" {
			line += " ORCPT=rfc822;" + xtext.Encode(r.ORcpt)
		}
	}
	return line
}
