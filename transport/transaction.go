package transport

import (
	"strconv"
	"time"
)

// transact runs one mail transaction on s for the pending recipients.
//
// It returns a failure only when nothing was sent (the server cannot take
// this message: SIZE, SMTPUTF8, REQUIRETLS); the caller then moves on to the
// next host. Once MAIL FROM is on the wire every pending recipient gets its
// result here. On return s.broken says whether the connection may be
// reused.
//
// MAIL FROM, each RCPT TO and (without CHUNKING) DATA go out one at a time,
// each once the one before is answered, or all in one write when the server
// offers PIPELINING (RFC 2920). Either way the replies are read in order and
// handled alike, by mailReply, rcptReply and dataReply; without PIPELINING
// nothing more is sent once one of them has stopped the transaction.
func (d *delivery) transact(s *session) *failure {
	if f := d.cannotTake(s); f != nil {
		return f
	}
	s.uses++
	if d.c.debugging() {
		d.c.debug("transaction", "host", s.host, "remote", s.remote, "recipients", len(d.pending))
	}

	// From here on every outcome is final for this attempt.
	t := d.newTransaction(s)
	if t.pipelining {
		switch ok, stale := t.writeAll(); {
		case stale:
			return &failure{stale: true}
		case !ok:
			return nil
		}
	}
	if !t.exchange("MAIL FROM", s.to.MailFrom, t.mail, t.mailReply) {
		return nil
	}
	for k, i := range d.pending {
		rcptReply := func(r *reply) error { t.rcptReply(i, r); return nil }
		if !t.exchange("RCPT TO", s.to.RcptTo, t.rcpts[k], rcptReply) {
			return nil
		}
	}
	// DATA is sent once a recipient is accepted; with PIPELINING it is on
	// the wire already, and its reply is read whatever came before.
	if !t.chunking && (t.pipelining || len(t.accepted) > 0) {
		if !t.exchange("DATA", s.to.Data, "DATA", t.dataReply) {
			return nil
		}
	}
	if t.stop {
		return nil
	}
	d.pending = t.accepted
	if len(t.accepted) == 0 {
		d.rset(s)
		return nil
	}
	t.transfer()
	return nil
}

// cannotTake checks, before MAIL FROM, that the server can take this
// message (RFC 1870, 6531, 8689); when it cannot, another host might.
func (d *delivery) cannotTake(s *session) *failure {
	msg := d.msg
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
	return nil
}

// transaction is the state of one transact call.
type transaction struct {
	d          *delivery
	s          *session
	pipelining bool     // RFC 2920: the commands go out in one write
	chunking   bool     // RFC 3030: BDAT instead of DATA
	mail       string   // the MAIL FROM command
	rcpts      []string // the RCPT TO commands, by position in d.pending
	accepted   []int    // the recipients whose RCPT TO was accepted, in order
	// stop: every recipient has its result (MAIL FROM refused, a 421 to
	// RCPT TO, a failed DATA, or the empty message
	// after a 354 to DATA with no recipient accepted). Nothing more is
	// sent; with PIPELINING the replies already asked for are still read.
	stop bool
}

// newTransaction prepares a transaction on s: its commands, and what the
// server offers.
func (d *delivery) newTransaction(s *session) *transaction {
	t := &transaction{d: d, s: s, pipelining: s.ext.has("PIPELINING"), chunking: s.ext.has("CHUNKING"), mail: d.mailCommand(s)}
	t.rcpts = make([]string, len(d.pending))
	for k, i := range d.pending {
		t.rcpts[k] = d.rcptCommand(s, d.msg.Recipients[i], d.rcpts[i])
	}
	return t
}

// writeAll writes MAIL, every RCPT and (without CHUNKING) DATA in one go
// (RFC 2920); the replies come back in order. ok is false when the
// connection failed: every recipient then has its result.
//
// On a connection taken from the pool (s.rset), RSET goes first in the
// same write, and its reply is read before anything else: when the write
// or that reply fails, or the reply is not 250, the connection went stale
// while idle (stale is true, and no recipient has a result). Nothing of
// the message can have been taken then: the data itself is sent only
// after DATA's 354, which is never read, and the connection is closed.
func (t *transaction) writeAll() (ok, stale bool) {
	s := t.s
	rset := s.rset
	s.rset = false
	s.deadline(s.to.MailFrom)
	var err error
	if rset {
		err = s.writeLine("RSET")
	}
	if err == nil {
		err = s.writeLine(t.mail)
	}
	for _, l := range t.rcpts {
		if err == nil {
			err = s.writeLine(l)
		}
	}
	if err == nil && !t.chunking {
		err = s.writeLine("DATA")
	}
	if err == nil {
		err = s.bw.Flush()
	}
	if err == nil && rset {
		var r *reply
		if r, err = s.read(s.to.EHLO); err == nil && r.Code != 250 {
			return false, true
		}
	}
	if err != nil {
		if rset {
			return false, true
		}
		t.ioFail("MAIL FROM", err)
		return false, false
	}
	return true, false
}

// exchange gets the reply to one command within timeout and passes it to
// handle. With PIPELINING the command is on the wire already; without, it
// is sent first, unless the transaction has stopped (then nothing
// happens). exchange returns false when the connection failed (during
// phase): every recipient then has its result.
func (t *transaction) exchange(phase string, timeout time.Duration, line string, handle func(*reply) error) bool {
	var r *reply
	var err error
	switch {
	case t.pipelining:
		r, err = t.s.read(timeout)
	case t.stop:
		return true
	default:
		r, err = t.s.cmd(timeout, line)
	}
	if err == nil {
		err = handle(r)
	}
	if err != nil {
		t.ioFail(phase, err)
		return false
	}
	return true
}

// mailReply handles the reply to MAIL FROM: a refusal fails every
// recipient and stops the transaction.
func (t *transaction) mailReply(r *reply) error {
	if r.Code != 250 {
		t.failAll("MAIL FROM", r, t.d.pending)
		t.s.broken = true // MAIL FROM refused: do not reuse the connection
		t.stop = true
	}
	return nil
}

// rcptReply handles the reply to the RCPT TO of recipient i. After a
// refused MAIL FROM (with PIPELINING) it is ignored. A 421 means the server
// is closing the channel (RFC 5321 section 3.8): it fails every recipient
// without a result, those accepted before it included, and stops the
// transaction, with or without PIPELINING.
func (t *transaction) rcptReply(i int, r *reply) {
	switch {
	case t.stop:
	case r.Code == 250 || r.Code == 251:
		t.accepted = append(t.accepted, i)
	default:
		t.d.set(i, nil, t.s.replyError("RCPT TO", r, ClassUnexpectedReply), t.s)
		if r.Code == 421 {
			t.failAll("RCPT TO", r, t.d.pending)
			t.stop = true
		}
	}
}

// dataReply handles the reply to DATA. A refusal fails the accepted
// recipients and stops the transaction. With PIPELINING, DATA may have
// been answered although no recipient was accepted (or MAIL FROM was
// refused): a refusal then means nothing, and a 354 gets an empty message.
func (t *transaction) dataReply(r *reply) error {
	s := t.s
	switch {
	case r.Code == 354 && len(t.accepted) == 0:
		// The server took DATA though no recipient was
		// accepted: end the empty message, ignore the reply.
		s.deadline(s.to.Data)
		if _, err := s.bw.WriteString(".\r\n"); err != nil {
			return err
		}
		if err := s.bw.Flush(); err != nil {
			return err
		}
		if _, err := s.read(s.to.Data); err != nil {
			return err
		}
		s.broken = true // its state is doubtful: do not reuse
		t.stop = true
	case len(t.accepted) == 0:
		// Nothing to refuse: transact ends with RSET, or MAIL FROM
		// was refused.
	case r.Code != 354:
		t.failAll("DATA", r, t.accepted)
		t.d.rset(s)
		t.stop = true
	}
	return nil
}

// transfer sends the message, with BDAT or DATA, and hands out the replies
// to it: one for all the accepted recipients (SMTP), or one each (LMTP).
func (t *transaction) transfer() {
	d, s := t.d, t.s
	var r *reply
	var err error
	if t.chunking {
		r, err = d.sendBDAT(s)
	} else {
		r, err = d.sendDATA(s)
	}
	if err != nil {
		t.ioFail("end of data", err)
		return
	}
	if s.proto == LMTP {
		t.lmtpReplies(r)
		return
	}
	if r.Code/100 != 2 {
		t.failAll("end of data", r, t.accepted)
		d.rset(s)
		return
	}
	for _, i := range t.accepted {
		d.set(i, r, nil, s)
	}
}

// lmtpReplies reads the LMTP replies to the end of data (RFC 2033 section
// 4.2): one per accepted recipient, in order. A BDAT chunk that failed
// before LAST gave one reply (r) for all of them.
func (t *transaction) lmtpReplies(r *reply) {
	d, s := t.d, t.s
	if r != nil {
		t.failAll("end of data", r, t.accepted)
		d.rset(s)
		return
	}
	for _, i := range t.accepted {
		r, err := s.read(s.to.Data)
		if err != nil {
			t.ioFail("end of data", err)
			return
		}
		if r.Code == 250 {
			d.set(i, r, nil, s)
		} else {
			d.set(i, nil, s.replyError("end of data", r, ClassUnexpectedReply), s)
		}
	}
}

// ioFail gives every recipient still without a result the I/O failure
// and marks the connection broken.
func (t *transaction) ioFail(phase string, err error) {
	t.s.broken = true
	e := t.s.errorFor(phase, err)
	for _, i := range t.d.pending {
		t.d.set(i, nil, e, t.s)
	}
}

// failAll gives reply r to the recipients idx that are still without a
// result; a 421 marks the connection broken.
func (t *transaction) failAll(phase string, r *reply, idx []int) {
	e := t.s.replyError(phase, r, ClassUnexpectedReply)
	for _, i := range idx {
		t.d.set(i, nil, e, t.s)
	}
	if r.Code == 421 {
		t.s.broken = true
	}
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
