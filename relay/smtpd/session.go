package smtpd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern-mta/postern/relay/spool"
)

// backend makes go-smtp sessions for one listener.
type backend struct {
	s *Server
	l *listener
}

// NewSession starts a session at EHLO/HELO (again after STARTTLS).
func (b *backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	nc := sc.Conn()
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	c, ok := nc.(*conn)
	if !ok {
		return nil, errors.New("smtpd: internal error: connection not accepted by the server")
	}
	ss := &session{s: b.s, l: b.l, c: c, sc: sc}
	if st, ok := sc.TLSConnectionState(); ok {
		ss.tls = &st
	}
	c.lookupPTR(b.s.baseCtx)
	return ss, nil
}

// session is one go-smtp session: from EHLO to QUIT, or to STARTTLS.
// go-smtp calls Data for BDAT in a goroutine of its own, so the
// transaction state is guarded.
type session struct {
	s   *Server
	l   *listener
	c   *conn
	sc  *smtp.Conn
	tls *tls.ConnectionState // nil in plaintext

	mu    sync.Mutex
	helo  string // as of MAIL (a later EHLO may change it)
	auth  string // authenticated identity
	from  string
	mail  smtp.MailOptions
	rcpts []spool.Recipient
}

func (ss *session) log() *slog.Logger {
	return ss.s.cfg.Logger.With("listener", ss.l.cfg.Name, "client", ss.c.client())
}

// refuse counts and logs a refusal and turns it into go-smtp's error; a
// 421 also closes the connection after the reply.
func (ss *session) refuse(r *Reply, stage string, attrs ...any) error {
	ss.s.m.reject(ss.l.cfg.Name, r.reason)
	if r.Code == 421 {
		ss.c.closeAfterReply()
	}
	ss.log().Info("rejected", append([]any{"stage", stage, "reply", r.Error()}, attrs...)...)
	return r.smtpError(ss.s.cfg.Hostname)
}

func (ss *session) authenticated() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.auth
}

// Mail starts a transaction (RFC 5321 4.1.1.2; go-smtp has checked SIZE
// against MessageSize and parsed the RFC 3461/6531/8689 parameters).
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.isDraining() {
		return ss.refuse(ErrShuttingDown, "MAIL")
	}
	if ss.c.closingDown() {
		return ss.refuse(errClosing, "MAIL")
	}
	if ss.l.cfg.Mode != ModeSMTP {
		if ss.tls == nil {
			return ss.refuse(errNeedTLS, "MAIL")
		}
		if ss.authenticated() == "" {
			return ss.refuse(errNeedAuth, "MAIL")
		}
	}
	if opts.RequireTLS && ss.tls == nil {
		return ss.refuse(errRequireTLS, "MAIL")
	}
	if from != "" {
		if _, ok := splitAddress(from, opts.UTF8); !ok {
			return ss.refuse(errBadSender, "MAIL", "from", "<"+from+">")
		}
	}
	if admit := ss.s.cfg.Admit; admit != nil {
		if err := admit(ss.s.baseCtx); err != nil {
			r := replyFor(err)
			return ss.refuse(r, "MAIL", "err", err)
		}
	}
	ss.mu.Lock()
	ss.from, ss.mail, ss.rcpts = from, *opts, nil
	ss.helo = ss.sc.Hostname() // MAIL runs where EHLO does: no race
	ss.mu.Unlock()
	return nil
}

// Rcpt adds a recipient: syntax (501 5.1.3), the recipients cap (452
// 4.5.3), then relay permission (554 5.7.1).
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.mu.Lock()
	utf8OK, n, from, auth := ss.mail.UTF8, len(ss.rcpts), ss.from, ss.auth
	ss.mu.Unlock()
	domain, ok := splitAddress(to, utf8OK)
	if !ok {
		return ss.refuse(errBadRcpt, "RCPT", "to", "<"+to+">")
	}
	if n >= ss.s.cfg.Recipients {
		return ss.refuse(errTooManyRcpts, "RCPT", "to", "<"+to+">")
	}
	allow := auth != "" || (ss.l.cfg.Mode == ModeSMTP && inPrefixes(ss.c.ip, ss.s.cfg.Networks))
	if permit := ss.s.cfg.Permit; permit != nil {
		in := PermitInput{
			ClientIP: ss.c.ip, AuthenticatedAs: auth, Sender: from, Rcpt: to, RcptDomain: domain,
			Listener: ss.l.cfg.Name, TLS: ss.tls != nil, Default: allow,
		}
		var err error
		if allow, err = permit(ss.s.baseCtx, in); err != nil {
			ss.log().Warn("permit rules failed, recipient refused", "to", "<"+to+">", "err", err)
			return ss.refuse(errLocal, "RCPT", "to", "<"+to+">")
		}
	}
	if !allow {
		return ss.refuse(errRelayDenied, "RCPT", "from", "<"+from+">", "to", "<"+to+">")
	}
	r := spool.Recipient{Addr: to}
	for _, n := range opts.Notify {
		r.Notify = append(r.Notify, string(n))
	}
	if opts.OriginalRecipient != "" {
		r.ORcpt = strings.ToLower(string(opts.OriginalRecipientType)) + ";" + opts.OriginalRecipient
	}
	ss.mu.Lock()
	ss.rcpts = append(ss.rcpts, r)
	ss.mu.Unlock()
	return nil
}

// Reset ends the transaction (RSET, EHLO again, end of DATA).
func (ss *session) Reset() {
	ss.mu.Lock()
	ss.from, ss.mail, ss.rcpts = "", smtp.MailOptions{}, nil
	ss.mu.Unlock()
}

// Logout is the end of the session.
func (ss *session) Logout() error { return nil }

// AuthMechanisms lists the SASL mechanisms (go-smtp offers them over TLS
// only: AllowInsecureAuth is never set).
func (ss *session) AuthMechanisms() []string {
	if ss.s.authenticator() == nil {
		return nil
	}
	return ss.s.cfg.Mechanisms
}

// Auth starts an AUTH exchange (RFC 4954).
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.authenticator() == nil || !slices.Contains(ss.s.cfg.Mechanisms, mech) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	if ss.s.authLimit.blocked(ss.c.ip) {
		return nil, ss.refuse(errAuthIPLimit, "AUTH")
	}
	if mech == "LOGIN" {
		return &loginServer{verify: ss.checkPassword}, nil
	}
	return sasl.NewPlainServer(ss.checkPassword), nil
}

// checkPassword is the end of every AUTH exchange. Failures count per
// connection (MaxAuthFailures, then 421 and close) and per client address
// (MaxAuthFailuresPerIP per AuthFailureWindow, then 454 at AUTH). Neither
// the password nor the user name tried is logged.
func (ss *session) checkPassword(identity, user, pass string) error {
	a := ss.s.authenticator()
	if a == nil {
		return errLocal.smtpError(ss.s.cfg.Hostname)
	}
	bad := errAuthInvalid
	if identity != "" && identity != user {
		bad = errAuthIdentity
	} else if a.Verify(user, pass) {
		ss.mu.Lock()
		ss.auth = user
		ss.mu.Unlock()
		ss.log().Info("authenticated", "auth", user)
		return nil
	}
	n := ss.c.authFailed()
	ss.s.authLimit.fail(ss.c.ip)
	if n >= ss.s.cfg.MaxAuthFailures {
		bad = errAuthTooMany
	}
	return ss.refuse(bad, "AUTH", "failures", n)
}

// Data receives the message content (DATA, or every BDAT chunk through to
// LAST) into a Receipt and answers 250 only after Commit.
func (ss *session) Data(r io.Reader) error {
	ss.s.active.add()
	defer ss.s.active.done()
	ptr := ss.c.lookupPTR(ss.s.baseCtx)
	ss.mu.Lock()
	env := &spool.Envelope{
		From:       ss.from,
		Recipients: slices.Clone(ss.rcpts),
		Ret:        string(ss.mail.Return),
		EnvID:      ss.mail.EnvelopeID,
		RequireTLS: ss.mail.RequireTLS,
		SMTPUTF8:   ss.mail.UTF8,
		Body:       string(ss.mail.Body),
		Arrival:    ss.s.cfg.Now(),
		ClientIP:   ss.c.ip.String(),
		ClientPTR:  ptr,
		HELO:       ss.helo,
		Listener:   ss.l.cfg.Name,
		TLS:        tlsDescription(ss.tls),
		Auth:       ss.auth,
	}
	ss.mu.Unlock()
	rcpts := make([]string, len(env.Recipients))
	for i, r := range env.Recipients {
		rcpts[i] = r.Addr
	}
	info := receivedInfo{
		helo: env.HELO, ptr: env.ClientPTR, ip: ss.c.ip, by: ss.s.cfg.Hostname, tls: ss.tls,
		auth: env.Auth != "", utf8: env.SMTPUTF8, rcpts: rcpts, at: env.Arrival,
	}
	rx := &reception{ss: ss, env: env, info: info}
	err := rx.run(r)
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		switch se.Code / 100 {
		case 4:
			ss.s.m.received.WithLabelValues(ss.l.cfg.Name, "tempfail").Inc()
		case 5:
			ss.s.m.received.WithLabelValues(ss.l.cfg.Name, "rejected").Inc()
		}
	}
	return err
}

// tlsDescription is the envelope's TLS field: "TLSv1.3 TLS_AES_128_GCM_SHA256".
func tlsDescription(st *tls.ConnectionState) string {
	if st == nil {
		return ""
	}
	return tlsVersion(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

// tlsVersion names a TLS version as OpenSSL and Postfix logs do: "TLSv1.3".
func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}

// Buffers of receptions, reused: allocating them for every message was
// most of what intake allocated.
var (
	readBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	writers  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

// reception is one message transfer.
type reception struct {
	ss   *session
	env  *spool.Envelope
	info receivedInfo

	hs       headerScan
	inHeader bool
	rc       Receipt
	w        *bufio.Writer
	size     int64
}

// storeError is a failure of the Store (Create, Write, Commit): logged,
// classified by replyFor, never shown to the client.
type storeError struct {
	op  string
	err error
}

func (e *storeError) Error() string { return "store " + e.op + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func (rx *reception) Write(p []byte) (int, error) {
	n, err := rx.rc.Write(p)
	rx.size += int64(n)
	if err != nil {
		return n, &storeError{"write", err}
	}
	return n, nil
}

// open is the end of the header section: the envelope is complete, so the
// receipt is created and our Received header goes first.
func (rx *reception) open() error {
	rx.env.Hops = rx.hs.hops
	rx.env.MessageID = rx.hs.messageID
	rc, err := rx.ss.s.cfg.Store.Create(rx.env)
	if err != nil {
		return &storeError{"create", err}
	}
	rx.rc = rc
	if idr, ok := rc.(Identified); ok {
		rx.info.id = idr.ID()
	}
	rx.w = writers.Get().(*bufio.Writer)
	rx.w.Reset(rx)
	_, _ = rx.w.Write(receivedHeader(rx.info))
	_, err = rx.w.Write(rx.hs.buf.Bytes())
	rx.hs.buf = bytes.Buffer{} // the header section is out: free it
	return err
}

// emit takes one line of content (CRLF-terminated).
func (rx *reception) emit(line []byte) error {
	if rx.inHeader {
		end, err := rx.hs.add(line)
		if err != nil || !end {
			return err
		}
		rx.inHeader = false
		if err := rx.open(); err != nil {
			return err
		}
	}
	_, err := rx.w.Write(line)
	return err
}

func (rx *reception) run(r io.Reader) error {
	ss, cfg := rx.ss, &rx.ss.s.cfg
	rx.hs = headerScan{limit: cfg.HeaderSectionLimit, maxHops: cfg.Hops}
	rx.inHeader = true
	split := lineSplitter{reject: cfg.BareNewline == BareNewlineReject}
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	defer func() {
		if rx.w != nil {
			rx.w.Reset(nil)
			writers.Put(rx.w)
			rx.w = nil
		}
	}()
	buf := *bp
	var fail error
	for fail == nil {
		n, rerr := r.Read(buf)
		if n > 0 {
			fail = split.feed(buf[:n], rx.emit)
		}
		if fail != nil {
			break
		}
		if rerr == io.EOF {
			fail = split.finish(rx.emit)
			if fail == nil && rx.inHeader {
				rx.inHeader = false
				fail = rx.open()
			}
			if fail == nil {
				if err := rx.w.Flush(); err != nil {
					fail = err
				}
			}
			break
		}
		if rerr != nil {
			fail = rerr
		}
	}
	if fail == nil && ss.c.isInterrupted() {
		fail = ss.s.interrupted
	}
	if fail != nil {
		if rx.rc != nil {
			rx.rc.Abort()
		}
		return rx.failed(r, fail)
	}
	id, err := rx.rc.Commit(ss.s.baseCtx)
	if err != nil {
		rx.rc.Abort()
		if ss.c.isInterrupted() { // Shutdown's deadline cancelled the commit
			ss.log().Info("commit cut off by shutdown, not queued", "err", err)
			return rx.failed(r, ss.s.interrupted)
		}
		return rx.failed(r, &storeError{"commit", err})
	}
	ss.s.m.received.WithLabelValues(ss.l.cfg.Name, "queued").Inc()
	ss.s.cfg.Logger.Info("queued", "id", id, "from", "<"+rx.env.From+">", "size", rx.size,
		"nrcpt", len(rx.env.Recipients), "client", ss.c.client(), "listener", ss.l.cfg.Name,
		"tls", orNone(rx.env.TLS), "auth", rx.env.Auth, "message_id", rx.env.MessageID)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// failed turns a transfer's failure into its reply. The receipt is
// already aborted.
func (rx *reception) failed(r io.Reader, fail error) error {
	ss := rx.ss
	var se *storeError
	switch {
	case fail == errBareNewline:
		// Read to the end of the message, so that the 550 is the next
		// reply (not a BDAT "250 Continue"), then close after it.
		_, derr := io.Copy(io.Discard, r)
		if !errors.Is(derr, smtp.ErrDataReset) {
			ss.c.closeAfterReply()
		}
		return ss.refuse(errBareNewline, "DATA")
	case fail == error(ss.s.interrupted):
		ss.log().Info("transfer cut off by shutdown, not queued", "from", "<"+rx.env.From+">")
		return ss.s.interrupted
	case errors.Is(fail, smtp.ErrDataTooLarge):
		ss.s.m.reject(ss.l.cfg.Name, "size")
		ss.log().Info("rejected", "stage", "DATA", "reply", "552 5.3.4 message too large")
		return smtp.ErrDataTooLarge
	case errors.Is(fail, smtp.ErrTooLongLine):
		return ss.refuse(errLineTooLong, "DATA")
	case errors.As(fail, &se):
		r := replyFor(se.err)
		ss.log().Error("message not queued: store failed", "op", se.op, "err", se.err, "reply", r.Error())
		return ss.refuse(r, "DATA")
	}
	var rep *Reply
	if errors.As(fail, &rep) {
		return ss.refuse(rep, "DATA")
	}
	// Reset (RSET, EHLO, closed connection) or a read error: no reply
	// reaches the client.
	ss.log().Info("transfer aborted, not queued", "err", fail)
	return fail
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
