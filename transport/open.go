package transport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// connParams are what a connection is opened with.
type connParams struct {
	host   *Host
	remote netip.AddrPort
	local  netip.Addr
	ehlo   string
	to     Timeouts
	// handshake bounds the STARTTLS command and the TLS handshake (the
	// host's HandshakeTimeout).
	handshake time.Duration
	strict    bool // TLS is mandatory
	mustPKIX  bool // a PKIX failure fails the handshake (when strict)
	noTLS     bool // plaintext retry after an optional handshake failure
	max       int
	key       poolKey
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
		case errors.Is(err, ErrLoop):
			e = loopError("connect", h.Name, p.remote, p.remote.String()+" is this MTA's own address")
			e.Err = err
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
	if c.debugging() {
		c.debug("connected", "host", h.Name, "remote", p.remote, "local", s.local)
	}
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
		f.local = s.local
		return nil, f
	}

	if h.ImplicitTLS {
		if f := c.handshake(s, p); f != nil {
			f.retryPlain = false // implicit TLS never downgrades
			return fail(f)
		}
	}

	// Greeting. Any failure here moves on to the next host.
	r, err := s.read(p.to.Greeting)
	if err != nil {
		return fail(&failure{err: s.errorFor("greeting", err), nextHost: true})
	}
	if r.Code != 220 {
		return fail(&failure{err: s.replyError("greeting", r, ClassUnexpectedReply), nextHost: true})
	}
	if name := replyName(r); c.isSelf(name) {
		return fail(&failure{err: loopError("greeting", h.Name, p.remote, "the server greets as "+name+", this MTA's own name")})
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
			r, err := s.cmd(p.handshake, "STARTTLS")
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
		if name := replyName(r); c.isSelf(name) {
			return &failure{err: loopError(verb, s.host, s.remote, "the server answers "+verb+" as "+name+", this MTA's own name")}
		}
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

// replyName is the first word of a reply's first line: the name a server
// gives in its greeting (RFC 5321 4.3.1) and its EHLO reply (4.1.1.1).
func replyName(r *reply) string {
	if len(r.Lines) == 0 {
		return ""
	}
	name, _, _ := strings.Cut(strings.TrimSpace(r.Lines[0]), " ")
	return name
}
