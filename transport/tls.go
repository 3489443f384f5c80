package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

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
		ServerName:         h.serverName(),
		ClientSessionCache: c.sessionCache(),
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
	s.deadline(p.handshake)
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
	s.tls = TLSInfo{Version: cs.Version, CipherSuite: cs.CipherSuite, Verified: verified, ServerName: h.Name, Resumed: cs.DidResume}
	if warn != "" {
		s.warnings = append(s.warnings, Warning{ClassTLS, warn, warnType})
	}
	if c.debugging() {
		c.debug("tls", "host", h.Name, "remote", p.remote, "tls", s.tls.String())
	}
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
