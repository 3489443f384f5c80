package transport

import (
	"bytes"
	"io"
	"strconv"
	"strings"
)

// transact runs one mail transaction on s for the pending recipients.
//
// It returns a failure only when nothing was sent (the server cannot take
// this message: SIZE, SMTPUTF8, REQUIRETLS); the caller then moves on to the
// next host. Once MAIL FROM is on the wire every pending recipient gets its
// result here. On return s.broken says whether the connection may be
// reused.
func (d *delivery) transact(s *session) *failure {
	msg := d.msg
	// Checks before MAIL FROM (RFC 1870, 6531, 8689): the server cannot
	// take this message; another host might.
	if lim := s.ext.size(); lim > 0 && msg.Size > lim {
		return &failure{err: localError(552, EnhancedCode{5, 3, 4}, ClassUnexpectedReply, "MAIL FROM",
			"message size "+strconv.FormatInt(msg.Size, 10)+" exceeds the server's limit of "+strconv.FormatInt(lim, 10)).at(s.host, s.remote), nextHost: true}
	}
	if d.utf8 && !s.ext.has("SMTPUTF8") {
		return &failure{err: localError(553, EnhancedCode{5, 6, 7}, ClassUnexpectedReply, "MAIL FROM",
			"the message needs SMTPUTF8, which the server does not offer").at(s.host, s.remote), nextHost: true}
	}
	if msg.RequireTLS && (!s.tls.Enabled() || s.tls.Verified == VerifiedNone || !s.ext.has("REQUIRETLS")) {
		return &failure{err: localError(550, EnhancedCode{5, 7, 30}, ClassTLS, "MAIL FROM",
			"the message requires REQUIRETLS, which the server does not offer over verified TLS").at(s.host, s.remote), nextHost: true}
	}
	s.uses++
	d.c.debug("transaction", "host", s.host, "remote", s.remote, "recipients", len(d.pending))

	// From here on every outcome is final for this attempt.
	chunking := s.ext.has("CHUNKING")
	pipelining := s.ext.has("PIPELINING")
	mail := d.mailCommand(s)
	rcpts := make([]string, len(d.pending))
	for k, i := range d.pending {
		rcpts[k] = d.rcptCommand(s, msg.Recipients[i], d.rcpts[i])
	}

	// ioFail gives every recipient still without a result the I/O failure
	// and marks the connection broken.
	ioFail := func(phase string, err error) *failure {
		s.broken = true
		e := s.errorFor(phase, err)
		for _, i := range d.pending {
			d.set(i, nil, e, s)
		}
		return nil
	}
	// failAll gives reply r to every recipient still without a result.
	failAll := func(phase string, r *reply, idx []int) {
		e := s.replyError(phase, r, ClassUnexpectedReply)
		for _, i := range idx {
			d.set(i, nil, e, s)
		}
		if r.Code == 421 {
			s.broken = true
		}
	}

	var accepted []int
	var mailOK bool
	var dataReply *reply
	if pipelining {
		// RFC 2920: MAIL, every RCPT and (without CHUNKING) DATA in one
		// write; the replies come back in order.
		s.deadline(s.to.MailFrom)
		err := s.writeLine(mail)
		for _, l := range rcpts {
			if err == nil {
				err = s.writeLine(l)
			}
		}
		if err == nil && !chunking {
			err = s.writeLine("DATA")
		}
		if err == nil {
			err = s.bw.Flush()
		}
		if err != nil {
			return ioFail("MAIL FROM", err)
		}
		r, err := s.read(s.to.MailFrom)
		if err != nil {
			return ioFail("MAIL FROM", err)
		}
		mailOK = r.Code == 250
		if !mailOK {
			failAll("MAIL FROM", r, d.pending)
		}
		for _, i := range d.pending {
			r, err := s.read(s.to.RcptTo)
			if err != nil {
				return ioFail("RCPT TO", err)
			}
			switch {
			case !mailOK:
			case r.Code == 250 || r.Code == 251:
				accepted = append(accepted, i)
			default:
				d.set(i, nil, s.replyError("RCPT TO", r, ClassUnexpectedReply), s)
			}
		}
		if !chunking {
			dataReply, err = s.read(s.to.Data)
			if err != nil {
				return ioFail("DATA", err)
			}
			if dataReply.Code == 354 && len(accepted) == 0 {
				// The server took DATA though no recipient was
				// accepted: end the empty message, ignore the reply.
				s.deadline(s.to.Data)
				if _, err := s.bw.WriteString(".\r\n"); err != nil {
					return ioFail("DATA", err)
				}
				if err := s.bw.Flush(); err != nil {
					return ioFail("DATA", err)
				}
				if _, err := s.read(s.to.Data); err != nil {
					return ioFail("DATA", err)
				}
				s.broken = true // its state is doubtful: do not reuse
				return nil
			}
		}
	} else {
		r, err := s.cmd(s.to.MailFrom, mail)
		if err != nil {
			return ioFail("MAIL FROM", err)
		}
		if r.Code != 250 {
			failAll("MAIL FROM", r, d.pending)
			s.broken = true // MAIL FROM refused: do not reuse the connection
			return nil
		}
		mailOK = true
		for k, i := range d.pending {
			r, err := s.cmd(s.to.RcptTo, rcpts[k])
			if err != nil {
				return ioFail("RCPT TO", err)
			}
			if r.Code == 250 || r.Code == 251 {
				accepted = append(accepted, i)
			} else {
				d.set(i, nil, s.replyError("RCPT TO", r, ClassUnexpectedReply), s)
				if r.Code == 421 {
					s.broken = true
					failAll("RCPT TO", r, d.pending)
					return nil
				}
			}
		}
		if len(accepted) == 0 {
			d.rset(s)
			return nil
		}
		if !chunking {
			dataReply, err = s.cmd(s.to.Data, "DATA")
			if err != nil {
				return ioFail("DATA", err)
			}
		}
	}
	if !mailOK {
		s.broken = true // MAIL FROM refused: do not reuse the connection
		return nil
	}
	d.pending = accepted
	if len(accepted) == 0 {
		d.rset(s)
		return nil
	}
	if !chunking && dataReply.Code != 354 {
		failAll("DATA", dataReply, accepted)
		d.rset(s)
		return nil
	}

	// The body.
	var r *reply
	var err error
	if chunking {
		r, err = d.sendBDAT(s)
	} else {
		r, err = d.sendDATA(s)
	}
	if err != nil {
		return ioFail("end of data", err)
	}
	if s.proto == SMTP {
		if r.Code/100 != 2 {
			failAll("end of data", r, accepted)
			d.rset(s)
			return nil
		}
		for _, i := range accepted {
			d.set(i, r, nil, s)
		}
		return nil
	}
	// LMTP (RFC 2033 section 4.2): one reply per accepted recipient, in
	// order. A BDAT chunk that failed before LAST gave one reply (r) for
	// all of them.
	if r != nil {
		failAll("end of data", r, accepted)
		d.rset(s)
		return nil
	}
	for _, i := range accepted {
		r, err := s.read(s.to.Data)
		if err != nil {
			return ioFail("end of data", err)
		}
		if r.Code == 250 {
			d.set(i, r, nil, s)
		} else {
			d.set(i, nil, s.replyError("end of data", r, ClassUnexpectedReply), s)
		}
	}
	return nil
}

// rset ends a failed transaction so the connection can be reused; if it
// does not answer 250 the connection is not reused.
func (d *delivery) rset(s *session) {
	if s.broken {
		return
	}
	r, err := s.cmd(s.to.EHLO, "RSET")
	if err != nil || r.Code != 250 {
		s.broken = true
	}
}

// body returns a reader of the whole message.
func (d *delivery) body() io.Reader {
	if d.msg.Body == nil {
		return bytes.NewReader(nil)
	}
	return io.NewSectionReader(d.msg.Body, 0, d.msg.Size)
}

// sendDATA writes the dot-stuffed body and the final dot. For SMTP it
// returns the reply; for LMTP it returns nil and the caller reads one reply
// per recipient.
func (d *delivery) sendDATA(s *session) (*reply, error) {
	s.deadline(s.to.Data)
	w := newDataWriter(s.bw, true)
	bp := bufPool.Get().(*[]byte)
	_, err := io.CopyBuffer(w, d.body(), *bp)
	bufPool.Put(bp)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = s.bw.Flush()
	}
	if err != nil {
		return nil, err
	}
	if s.proto == LMTP {
		return nil, nil
	}
	return s.read(s.to.Data)
}

// maxChunk is the size of a BDAT chunk (RFC 3030).
const maxChunk = 1 << 20

// sendBDAT writes the body in BDAT chunks (no dot-stuffing, CRLF
// normalised). For SMTP it returns the reply to the last chunk or the first
// failed one; for LMTP it returns nil after a complete transfer (the caller
// reads the per-recipient replies), or the reply of a failed chunk.
func (d *delivery) sendBDAT(s *session) (*reply, error) {
	var chunk bytes.Buffer
	w := newDataWriter(&chunk, false)
	src := d.body()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	eof := false
	for !eof {
		for chunk.Len() < maxChunk && !eof {
			n, err := src.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
			}
			if err == io.EOF {
				eof = true
				_ = w.Close()
			} else if err != nil {
				return nil, err
			}
		}
		cmd := "BDAT " + strconv.Itoa(chunk.Len())
		if eof {
			cmd += " LAST"
		}
		s.deadline(s.to.Data)
		if err := s.writeLine(cmd); err != nil {
			return nil, err
		}
		if _, err := s.bw.Write(chunk.Bytes()); err != nil {
			return nil, err
		}
		if err := s.bw.Flush(); err != nil {
			return nil, err
		}
		chunk.Reset()
		if eof && s.proto == LMTP {
			return nil, nil
		}
		r, err := s.read(s.to.Data)
		if err != nil {
			return nil, err
		}
		if r.Code != 250 || eof {
			return r, nil
		}
	}
	return nil, nil // not reached
}

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
			b.WriteString(xtext(msg.EnvID))
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
			line += " ORCPT=rfc822;" + xtext(r.ORcpt)
		}
	}
	return line
}

// xtext encodes s per RFC 3461 section 4: "+", "=", controls, space and
// non-ASCII bytes become +XX.
func xtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
