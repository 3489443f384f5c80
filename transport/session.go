package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// session is one SMTP/LMTP connection past its greeting and EHLO: ready
// for a transaction. It is used by one delivery at a time.
type session struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	key      poolKey
	host     string
	proto    Protocol
	remote   netip.AddrPort
	local    netip.AddrPort
	ext      extensions
	esmtp    bool
	tls      TLSInfo
	warnings []Warning // carried into every result made on this session
	to       Timeouts
	max      int // transactions allowed
	uses     int // transactions started
	broken   bool
	phase    time.Duration // timeout of the current phase

	ctx     context.Context
	stopCtx func() bool
	idle    *time.Timer
}

func newSession(nc net.Conn) *session {
	return (&session{nc: nc}).init()
}

// init sets up the buffers. They read and write s.nc through s, so they
// follow the switch to TLS, and every write refreshes the deadline of the
// current phase (for the body: each write gets the data timeout, not the
// whole transfer).
func (s *session) init() *session {
	s.br = bufio.NewReaderSize(connReader{s}, maxReplyLine)
	s.bw = bufio.NewWriterSize(connWriter{s}, 16*1024)
	return s
}

type connReader struct{ s *session }

func (r connReader) Read(p []byte) (int, error) { return r.s.nc.Read(p) }

type connWriter struct{ s *session }

func (w connWriter) Write(p []byte) (int, error) {
	w.s.deadline(w.s.phase)
	return w.s.nc.Write(p)
}

// bind ties the session's I/O to ctx: cancelling ctx interrupts whatever
// read or write is blocked.
func (s *session) bind(ctx context.Context) {
	s.ctx = ctx
	nc := s.nc
	s.stopCtx = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
}

// unbind detaches the session from its delivery's context.
func (s *session) unbind() {
	if s.stopCtx != nil {
		s.stopCtx()
		s.stopCtx = nil
	}
	s.ctx = nil
	_ = s.nc.SetDeadline(time.Time{})
}

// deadline sets the I/O deadline to now+d, or earlier when the context ends
// earlier; a context already done gives a deadline in the past.
func (s *session) deadline(d time.Duration) {
	s.phase = d
	t := time.Now().Add(d)
	if s.ctx != nil {
		if cd, ok := s.ctx.Deadline(); ok && cd.Before(t) {
			t = cd
		}
	}
	_ = s.nc.SetDeadline(t)
	if s.ctx != nil && s.ctx.Err() != nil {
		_ = s.nc.SetDeadline(time.Unix(1, 0))
	}
}

// close ends the connection without QUIT.
func (s *session) close() {
	s.broken = true
	if s.stopCtx != nil {
		s.stopCtx()
		s.stopCtx = nil
	}
	_ = s.nc.Close()
}

// quit sends QUIT (not waiting long for the reply) and closes.
func (s *session) quit() {
	if !s.broken {
		_ = s.nc.SetDeadline(time.Now().Add(min(s.to.EHLO, 5*time.Second)))
		if s.writeLine("QUIT") == nil && s.bw.Flush() == nil {
			_, _ = readReply(s.br)
		}
	}
	s.close()
}

// writeLine buffers one command line. A line with CR or LF would let a
// crafted address inject commands; it never gets this far (addresses are
// checked first), but the check here is the last line of defence.
func (s *session) writeLine(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return fmt.Errorf("smtp: refusing to send a command with CR or LF: %q", line)
	}
	if _, err := s.bw.WriteString(line); err != nil {
		return err
	}
	_, err := s.bw.WriteString("\r\n")
	return err
}

// cmd sends one command and reads its reply.
func (s *session) cmd(timeout time.Duration, line string) (*reply, error) {
	s.deadline(timeout)
	if err := s.writeLine(line); err != nil {
		return nil, err
	}
	if err := s.bw.Flush(); err != nil {
		return nil, err
	}
	return readReply(s.br)
}

// read reads one reply within timeout.
func (s *session) read(timeout time.Duration) (*reply, error) {
	s.deadline(timeout)
	return readReply(s.br)
}

// failure describes what went wrong in a session; where says what to try
// next.
type failure struct {
	err *Error
	// nextHost: skip the remaining addresses of this host (the host itself
	// answered: a reply, a TLS policy failure), as opposed to a connection
	// failure, which moves to the next address.
	nextHost bool
	// retryPlain: an optional STARTTLS handshake failed; reconnect to the
	// same address once, without TLS.
	retryPlain bool
}

// errorFor turns an I/O or protocol error during phase into an *Error.
func (s *session) errorFor(phase string, err error) *Error {
	return ioError(s.ctx, phase, s.host, s.remote, err)
}

func ioError(ctx context.Context, phase, host string, remote netip.AddrPort, err error) *Error {
	e := &Error{Code: 451, Enhanced: EnhancedCode{4, 4, 2}, Class: ClassIO, Host: host, Address: remote, Err: err, Phase: phase}
	var pe *protocolError
	var ne net.Error
	if ctx != nil && ctx.Err() == nil {
		// The conn deadline may be the context's deadline, and fire a
		// moment before the context reports it.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			<-ctx.Done()
		}
	}
	switch {
	case ctx != nil && ctx.Err() != nil:
		e.Enhanced = EnhancedCode{4, 3, 0}
		e.Message = "delivery interrupted during " + phase + ": " + context.Cause(ctx).Error()
		e.Err = context.Cause(ctx)
	case errors.As(err, &pe):
		e.Enhanced = EnhancedCode{4, 5, 0}
		e.Class = ClassUnexpectedReply
		e.Message = "bad reply to " + phase + ": " + pe.msg
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		e.Message = "timeout during " + phase
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		e.Message = "connection closed by the server during " + phase
	default:
		e.Message = "connection error during " + phase + ": " + err.Error()
	}
	return e
}

// replyError turns a negative reply to phase into an *Error.
func (s *session) replyError(phase string, r *reply, class Class) *Error {
	return replyError(phase, r, class, s.host, s.remote)
}

func replyError(phase string, r *reply, class Class, host string, remote netip.AddrPort) *Error {
	e := &Error{Code: r.Code, Enhanced: r.Enhanced, Message: r.text(), Class: class,
		Permanent: r.Code >= 500, Host: host, Address: remote, Phase: phase}
	if r.Code < 400 {
		// A positive reply where another was expected (220 to DATA...).
		e.Code, e.Permanent, e.Enhanced = 451, false, EnhancedCode{4, 5, 0}
		e.Message = "unexpected reply " + r.String()
		e.Class = ClassUnexpectedReply
	}
	if e.Enhanced.IsZero() {
		e.Enhanced = EnhancedCode{e.Code / 100, 0, 0}
	}
	return e
}

// localError makes an *Error for a failure decided by the transport.
func localError(code int, enh EnhancedCode, class Class, phase, msg string) *Error {
	return &Error{Code: code, Enhanced: enh, Message: msg, Class: class, Permanent: code >= 500, Phase: phase}
}

func (e *Error) at(host string, remote netip.AddrPort) *Error {
	e.Host, e.Address = host, remote
	return e
}

// connParams are what a connection is opened with.
type connParams struct {
	host     *Host
	remote   netip.AddrPort
	local    netip.Addr
	ehlo     string
	to       Timeouts
	strict   bool // TLS is mandatory
	mustPKIX bool // a PKIX failure fails the handshake (when strict)
	noTLS    bool // plaintext retry after an optional handshake failure
	max      int
	key      poolKey
	// requireTLS: the message carries REQUIRETLS (RFC 8689), so a server
	// without TLS fails it permanently instead of deferring it.
	requireTLS bool
}

// open connects and runs the session up to the point where MAIL FROM may
// be sent: greeting, EHLO, STARTTLS, EHLO again, AUTH.
func (c *Client) open(ctx context.Context, p *connParams) (*session, *failure) {
	h := p.host
	network := "tcp4"
	if p.remote.Addr().Is6() {
		network = "tcp6"
	}
	dctx, cancel := context.WithTimeout(ctx, p.to.Connect)
	nc, err := c.dialer().DialContext(dctx, network, p.remote, p.local)
	cancel()
	if err != nil {
		e := &Error{Code: 451, Enhanced: EnhancedCode{4, 4, 1}, Class: ClassConnection, Host: h.Name, Address: p.remote, Err: err, Phase: "connect"}
		switch {
		case ctx.Err() != nil:
			e = ioError(ctx, "connect", h.Name, p.remote, err)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
			e.Message = fmt.Sprintf("connect timeout after %v", p.to.Connect)
		default:
			e.Message = "connect failed: " + err.Error()
		}
		return nil, &failure{err: e}
	}
	s := newSession(nc)
	s.key, s.host, s.proto, s.remote, s.to, s.max = p.key, h.Name, h.Protocol, p.remote, p.to, p.max
	if ap, err := netip.ParseAddrPort(nc.LocalAddr().String()); err == nil {
		s.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	s.bind(ctx)
	c.debug("connected", "host", h.Name, "remote", p.remote, "local", s.local)
	defer func() {
		// A panic (in a Verifier, say) must not leak the connection;
		// Deliver turns the panic itself into results.
		if v := recover(); v != nil {
			s.close()
			panic(v)
		}
	}()

	fail := func(f *failure) (*session, *failure) {
		s.close()
		return nil, f
	}

	if h.ImplicitTLS {
		if f := c.handshake(s, p); f != nil {
			f.retryPlain = false // implicit TLS never downgrades
			return fail(f)
		}
	}

	// Greeting. Any failure here moves on to the next host (delivery.md
	// step 7).
	r, err := s.read(p.to.Greeting)
	if err != nil {
		return fail(&failure{err: s.errorFor("greeting", err), nextHost: true})
	}
	if r.Code != 220 {
		return fail(&failure{err: s.replyError("greeting", r, ClassUnexpectedReply), nextHost: true})
	}

	if f := c.hello(s, p); f != nil {
		return fail(f)
	}

	if !h.ImplicitTLS && !p.noTLS && (p.strict || h.StartTLS != StartTLSDisable) {
		if !s.ext.has("STARTTLS") {
			if p.strict {
				return fail(tlsUnavailable(s, p, "EHLO", "the server does not offer STARTTLS", 0))
			}
		} else {
			r, err := s.cmd(p.to.TLSHandshake, "STARTTLS")
			switch {
			case err != nil:
				return fail(&failure{err: s.errorFor("STARTTLS", err)})
			case r.Code != 220 && r.Code < 400:
				// RFC 3207 allows 220, 454 and 501 only. After another
				// positive reply the server may be waiting for a
				// ClientHello: neither side knows what the next byte
				// is, so drop the connection rather than go on in
				// plaintext.
				return fail(&failure{err: localError(451, EnhancedCode{4, 5, 0}, ClassUnexpectedReply, "STARTTLS",
					"unexpected reply to STARTTLS: "+r.String()).at(h.Name, p.remote), nextHost: true})
			case r.Code != 220:
				if p.strict {
					return fail(tlsUnavailable(s, p, "STARTTLS", "the server refused STARTTLS ("+r.String()+")", r.Code))
				}
				s.warnings = append(s.warnings, Warning{ClassTLS, "STARTTLS refused (" + r.String() + "); continued without TLS", TLSResultStartTLSNotSupported})
			case s.br.Buffered() > 0:
				// Bytes after the 220 were sent before TLS and must not
				// be read as if they came through it (CVE-2011-0411
				// style response injection).
				return fail(&failure{err: localError(451, EnhancedCode{4, 5, 0}, ClassUnexpectedReply, "STARTTLS",
					"server sent data after its STARTTLS reply").at(h.Name, p.remote), nextHost: true})
			default:
				if f := c.handshake(s, p); f != nil {
					return fail(f)
				}
				if f := c.hello(s, p); f != nil {
					return fail(f)
				}
			}
		}
	}

	if h.Auth != nil {
		if f := c.auth(s, p); f != nil {
			return fail(f)
		}
	}
	return s, nil
}

// tlsUnavailable is the failure of a host that cannot start TLS (it does
// not offer STARTTLS, refuses it, or refuses EHLO) when TLS is strict. The
// next host is tried. It is temporary, 451 4.7.10, as RFC 8461 section 5.1
// asks for MTA-STS and Postfix does for every mandatory TLS policy: a
// missing STARTTLS is what a downgrade attack looks like, and the attacker
// must not be able to turn it into a bounce. A message that carries
// REQUIRETLS is the exception (RFC 8689 section 4.2.1): there the failure is
// permanent, 550 5.7.10, and once no host is left the sender gets a
// non-delivery report — unless the server itself said the refusal is
// temporary (a 4xx reply to STARTTLS, replyCode).
func tlsUnavailable(s *session, p *connParams, phase, why string, replyCode int) *failure {
	e := localError(451, EnhancedCode{4, 7, 10}, ClassTLS, phase, "TLS is required but "+why)
	if p.requireTLS && replyCode/100 != 4 {
		e = localError(550, EnhancedCode{5, 7, 10}, ClassTLS, phase, "the message requires TLS (REQUIRETLS) but "+why)
	}
	e.TLSResult = TLSResultStartTLSNotSupported
	return &failure{err: e.at(s.host, s.remote), nextHost: true}
}

// hello sends EHLO (LHLO for LMTP), falling back to HELO on a 5xx reply
// unless TLS is required.
func (c *Client) hello(s *session, p *connParams) *failure {
	verb := "EHLO"
	if s.proto == LMTP {
		verb = "LHLO"
	}
	r, err := s.cmd(p.to.EHLO, verb+" "+p.ehlo)
	if err != nil {
		return &failure{err: s.errorFor(verb, err)}
	}
	if r.Code == 250 {
		s.esmtp, s.ext = true, parseEHLO(r.Lines)
		return nil
	}
	if p.strict && !s.tls.Enabled() && r.Code >= 500 {
		// No EHLO, no STARTTLS: and HELO cannot help.
		return tlsUnavailable(s, p, verb, "the server refused "+verb+" ("+r.String()+")", r.Code)
	}
	if r.Code < 500 || s.proto == LMTP || p.strict || s.tls.Enabled() {
		return &failure{err: s.replyError(verb, r, ClassUnexpectedReply), nextHost: true}
	}
	r, err = s.cmd(p.to.EHLO, "HELO "+p.ehlo)
	if err != nil {
		return &failure{err: s.errorFor("HELO", err)}
	}
	if r.Code != 250 {
		return &failure{err: s.replyError("HELO", r, ClassUnexpectedReply), nextHost: true}
	}
	s.esmtp, s.ext = false, extensions{}
	return nil
}

// verifyError is a certificate check failure, with the class to report.
type verifyError struct {
	class Class
	err   error
}

func (e *verifyError) Error() string { return e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// handshake runs the TLS handshake on s (STARTTLS or implicit TLS) and
// checks the certificate.
//
// crypto/tls is told to skip its own verification (InsecureSkipVerify) so
// that we can tell "verified" from "accepted unverified" and report it; the
// checks are done in VerifyConnection below, which fails the handshake when
// verification is mandatory.
func (c *Client) handshake(s *session, p *connParams) *failure {
	h := p.host
	verified := VerifiedNone
	var warn, warnType string
	cfg := &tls.Config{
		ServerName:         h.Name,
		MinVersion:         h.MinTLSVersion,
		InsecureSkipVerify: true, // verified below, see the doc comment
		VerifyConnection: func(cs tls.ConnectionState) error {
			if h.Verifier != nil {
				if err := h.Verifier.VerifyConnection(cs); err != nil {
					return &verifyError{ClassDANE, err}
				}
				verified = VerifiedDANE
				return nil
			}
			err := verifyPKIX(cs, h.Name, c.RootCAs)
			if err == nil {
				verified = VerifiedPKIX
				if h.MTASTSEnforce {
					verified = VerifiedMTASTS
				}
				return nil
			}
			switch {
			case p.strict && p.mustPKIX:
				class := ClassTLS
				if h.MTASTSEnforce {
					class = ClassMTASTS
				}
				return &verifyError{class, err}
			case !p.strict && !h.AllowInvalidCerts:
				// Opportunistic TLS (RFC 7435): an unverified encrypted
				// session is still better than the plaintext we would
				// otherwise fall back to, so keep it and say so.
				warn = "certificate not verified (" + err.Error() + "); continued over unauthenticated TLS"
				warnType = tlsResultType(err)
			}
			return nil
		},
	}
	s.deadline(p.to.TLSHandshake)
	tc := tls.Client(s.nc, cfg)
	if err := tc.HandshakeContext(s.ctx); err != nil {
		e := &Error{Code: 454, Enhanced: EnhancedCode{4, 7, 5}, Class: ClassTLS, Host: h.Name, Address: p.remote, Err: err, Phase: "TLS handshake"}
		var ve *verifyError
		if errors.As(err, &ve) {
			e.Class = ve.class
			e.Message = "certificate verification failed: " + ve.err.Error()
			e.TLSResult = tlsResultType(ve.err)
		} else if s.ctx.Err() != nil {
			e = s.errorFor("TLS handshake", err)
		} else {
			e.Message = "TLS handshake failed: " + err.Error()
			e.TLSResult = TLSResultValidationFailure
		}
		return &failure{err: e, nextHost: true, retryPlain: !p.strict && s.ctx.Err() == nil}
	}
	cs := tc.ConnectionState()
	// From here on the buffers read and write through TLS. The context hook
	// set by bind still works: it sets the deadline of the TCP conn under tc.
	s.nc = tc
	s.tls = TLSInfo{Version: cs.Version, CipherSuite: cs.CipherSuite, Verified: verified, ServerName: h.Name}
	if warn != "" {
		s.warnings = append(s.warnings, Warning{ClassTLS, warn, warnType})
	}
	c.debug("tls", "host", h.Name, "remote", p.remote, "tls", s.tls.String())
	return nil
}

// tlsResultType maps a certificate error to its RFC 8460 result type.
func tlsResultType(err error) string {
	var typer TLSResultTyper
	var host x509.HostnameError
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	switch {
	case errors.As(err, &typer):
		return typer.TLSResultType()
	case errors.As(err, &host):
		return TLSResultHostMismatch
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return TLSResultExpired
	case errors.As(err, &unk):
		return TLSResultNotTrusted
	}
	return TLSResultValidationFailure
}

// verifyPKIX checks the chain against roots (nil: the system pool) and name.
func verifyPKIX(cs tls.ConnectionState, name string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: x509.NewCertPool()}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// auth authenticates with PLAIN or LOGIN (RFC 4954). Credentials are never
// logged, and never sent without TLS unless the host allows it.
func (c *Client) auth(s *session, p *connParams) *failure {
	h := p.host
	if !s.tls.Enabled() && !h.AllowPlaintextAuth {
		return &failure{err: localError(454, EnhancedCode{4, 7, 10}, ClassTLS, "AUTH",
			"refusing to send credentials without TLS (allow-plaintext-auth is off)").at(h.Name, p.remote), nextHost: true}
	}
	mech := s.ext.authMechanism()
	if mech == "" {
		return &failure{err: localError(454, EnhancedCode{4, 7, 0}, ClassUnexpectedReply, "AUTH",
			"server does not offer AUTH PLAIN or LOGIN").at(h.Name, p.remote), nextHost: true}
	}
	enc := base64.StdEncoding.EncodeToString
	secret := string(h.Auth.Secret)
	plainBlob := enc([]byte("\x00" + h.Auth.Username + "\x00" + secret))
	loginBlob := enc([]byte(secret))
	var r *reply
	var err error
	switch mech {
	case "PLAIN":
		r, err = s.cmd(p.to.EHLO, "AUTH PLAIN "+plainBlob)
	case "LOGIN":
		r, err = s.cmd(p.to.EHLO, "AUTH LOGIN")
		if err == nil && r.Code == 334 {
			r, err = s.cmd(p.to.EHLO, enc([]byte(h.Auth.Username)))
		}
		if err == nil && r.Code == 334 {
			r, err = s.cmd(p.to.EHLO, loginBlob)
		}
	}
	if err != nil {
		e := s.errorFor("AUTH", err)
		var pe *protocolError
		if errors.As(err, &pe) && e.Class == ClassUnexpectedReply {
			// The message quotes (and may cut) the offending line, which
			// can be an echo of the credentials: keep none of it.
			e.Message, e.Err = "bad reply to AUTH "+mech+" (not shown: it may repeat the credentials)", errProtocol
		}
		return &failure{err: e}
	}
	// Some servers repeat what they were sent in their reply; that text
	// becomes the result's, so take the credentials out of it first.
	for i, l := range r.Lines {
		r.Lines[i] = redactAll(l, plainBlob, strings.TrimRight(plainBlob, "="), loginBlob, strings.TrimRight(loginBlob, "="), secret)
	}
	if r.Code/100 != 2 { // 235 per RFC 4954; some servers say 250
		// Refused credentials are our configuration's problem (a rotated
		// password), not the recipients': defer rather than bounce, as
		// Postfix does by default (smtp_sasl_auth_soft_bounce).
		e := s.replyError("AUTH "+mech, r, ClassUnexpectedReply)
		if e.Permanent {
			e.Code, e.Enhanced, e.Permanent = 454, EnhancedCode{4, 7, 0}, false
			e.Message = "authentication refused (" + r.String() + ")"
		}
		return &failure{err: e, nextHost: true}
	}
	return nil
}

// redactAll replaces every occurrence of each non-empty secret in s with
// "[redacted]", in the order given (longer forms first, so that a shorter
// one does not leave the rest of a longer one behind).
func redactAll(s string, secrets ...string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, redacted)
		}
	}
	return s
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}
