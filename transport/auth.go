package transport

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

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
			e.Code, e.Enhanced, e.Permanent, e.Reply = 454, EnhancedCode{4, 7, 0}, false, false
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

// Secret is a password or token. Its formatting, logging and text marshalling
// print "[redacted]" so it never appears in a log line, a trace, or a %+v of
// a [Plan]; use string(s) where the real value is needed.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]".
func (Secret) String() string { return redacted }

// GoString returns "[redacted]".
func (Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue keeps the secret out of log/slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]", for encoding/json and friends.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Auth holds the credentials for SMTP AUTH (RFC 4954) on a relay. PLAIN is
// used when the server offers it, else LOGIN. Credentials are sent only over
// TLS unless [Host.AllowPlaintextAuth] is set.
type Auth struct {
	Username string
	Secret   Secret
}

// Format prints the username and "[redacted]" for the secret, whatever the
// verb, so that printing a Host or Plan never shows a secret.
func (a Auth) Format(f fmt.State, verb rune) {
	if f.Flag('+') || f.Flag('#') {
		_, _ = fmt.Fprintf(f, "{Username:%q Secret:%s}", a.Username, redacted)
		return
	}
	_, _ = fmt.Fprintf(f, "{%s %s}", a.Username, redacted)
}

// LogValue keeps the secret out of log/slog output.
func (a Auth) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", a.Username), slog.String("secret", redacted))
}
