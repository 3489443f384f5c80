package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Class is the kind of failure, with the words of the policy variable
// last_error.
type Class string

// The failure classes.
const (
	ClassNone            Class = "none"
	ClassDNS             Class = "dns"
	ClassConnection      Class = "connection"
	ClassTLS             Class = "tls"
	ClassDANE            Class = "dane"
	ClassMTASTS          Class = "mta-sts"
	ClassUnexpectedReply Class = "unexpected-reply"
	ClassRate            Class = "rate"
	ClassConcurrency     Class = "concurrency"
	ClassIO              Class = "io"
	// ClassLoop: the next hop is this MTA itself (its own listening
	// address, or a server that greets with one of Client.SelfNames):
	// permanent, 554 5.4.6 (RFC 3463: routing loop detected).
	ClassLoop Class = "loop"
)

// ErrLoop is what a [Dialer] returns (wrapped or not) to refuse a
// connection to the MTA's own listening address: the delivery then fails
// permanently with class [ClassLoop] instead of connecting to itself.
var ErrLoop = errors.New("the address is this MTA's own")

// EnhancedCode is an RFC 3463 enhanced status code such as 5.1.1; the zero
// value means none.
type EnhancedCode [3]int

// IsZero reports whether e is unset.
func (e EnhancedCode) IsZero() bool { return e == EnhancedCode{} }

// String returns "5.1.1", or "" when e is unset.
func (e EnhancedCode) String() string {
	if e.IsZero() {
		return ""
	}
	return strconv.Itoa(e[0]) + "." + strconv.Itoa(e[1]) + "." + strconv.Itoa(e[2])
}

// Error is a delivery failure with its SMTP status. Use it with errors.As.
// The zero value of Permanent (false) means temporary: a failure whose
// nature is unknown is retried, never bounced.
type Error struct {
	// Code is the SMTP reply code, the server's or one the transport chose
	// for a local failure (4xx or 5xx).
	Code int
	// Enhanced is the enhanced status code.
	Enhanced EnhancedCode
	// Message is the server's reply text, or a description of the local
	// failure.
	Message string
	// Class is the kind of failure.
	Class Class
	// Permanent is true when retrying cannot help.
	Permanent bool
	// Phase is the step that failed: "connect", "greeting", "EHLO",
	// "STARTTLS", "TLS handshake", "AUTH", "MAIL FROM", "RCPT TO", "DATA",
	// "end of data", ... (empty when not tied to one).
	Phase string
	// Host and Address say where the failure happened, when known.
	Host    string
	Address netip.AddrPort
	// TLSResult is the RFC 8460 (TLS-RPT) result type of a TLS failure:
	// "starttls-not-supported", "certificate-host-mismatch",
	// "certificate-expired", "certificate-not-trusted" or
	// "validation-failure" (or what a Verifier's error reports, see
	// [TLSResultTyper]); empty for other failures. The engine adds the policy
	// type and domain to build the report record.
	TLSResult string
	// Err is the underlying error (a net.Error, a TLS error, ...), if any.
	Err error
	// Reply says Code, Enhanced and Message are the server's reply as it
	// sent it; false when the transport chose them for a failure of its
	// own (no reply, a broken connection, a refused TLS policy), so that
	// nobody quotes them as the server's (a DSN's Diagnostic-Code).
	Reply bool
}

// TLSResultTyper may be implemented by the errors a [Verifier] returns, to
// give the RFC 8460 result type of the failure (e.g. "tlsa-invalid",
// "dane-required"); without it, a Verifier failure is
// "validation-failure".
type TLSResultTyper interface {
	TLSResultType() string
}

// RFC 8460 section 4.3 result types set by the transport.
const (
	TLSResultStartTLSNotSupported = "starttls-not-supported"
	TLSResultHostMismatch         = "certificate-host-mismatch"
	TLSResultExpired              = "certificate-expired"
	TLSResultNotTrusted           = "certificate-not-trusted"
	TLSResultValidationFailure    = "validation-failure"
)

// Error returns "phase: code enhanced message (host address): cause", leaving
// out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Phase != "" {
		b.WriteString(e.Phase)
		b.WriteString(": ")
	}
	if e.Code != 0 {
		b.WriteString(strconv.Itoa(e.Code))
		b.WriteByte(' ')
	}
	if !e.Enhanced.IsZero() {
		b.WriteString(e.Enhanced.String())
		b.WriteByte(' ')
	}
	b.WriteString(e.Message)
	if e.Host != "" || e.Address.IsValid() {
		b.WriteString(" (")
		b.WriteString(e.Host)
		if e.Address.IsValid() {
			if e.Host != "" {
				b.WriteByte(' ')
			}
			b.WriteString(e.Address.String())
		}
		b.WriteByte(')')
	}
	if e.Err != nil && !strings.Contains(e.Message, e.Err.Error()) {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure is worth retrying later.
func (e *Error) Temporary() bool { return !e.Permanent }

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
	// local is the local address of the connection that failed, when one
	// was made (for Attempt.Source).
	local netip.AddrPort
	// hold: the Hooks asked to stop the delivery (ErrHold).
	hold bool
	// stale: a pooled connection turned out dead (or refused RSET) before
	// anything of this transaction was accepted; another connection is
	// tried, and the attempt does not count.
	stale bool
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
		Permanent: r.Code >= 500, Host: host, Address: remote, Phase: phase, Reply: true}
	if r.Code < 400 {
		e.Reply = false
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
// loopError is the permanent failure of a delivery that would loop back
// to this MTA: why says how that was found.
func loopError(phase, host string, remote netip.AddrPort, why string) *Error {
	return localError(554, EnhancedCode{5, 4, 6}, ClassLoop, phase, "mail for "+host+" loops back to myself: "+why).at(host, remote)
}

func localError(code int, enh EnhancedCode, class Class, phase, msg string) *Error {
	return &Error{Code: code, Enhanced: enh, Message: msg, Class: class, Permanent: code >= 500, Phase: phase}
}

func (e *Error) at(host string, remote netip.AddrPort) *Error {
	e.Host, e.Address = host, remote
	return e
}

// asError returns err as an *Error, wrapping a plain error as a temporary
// failure of class.
func asError(err error, class Class, phase string) *Error {
	if e, ok := err.(*Error); ok {
		if e.Class == "" || e.Class == ClassNone {
			e.Class = class
		}
		if e.Code == 0 {
			e.Code = 451
			if e.Permanent {
				e.Code = 550
			}
		}
		return e
	}
	return &Error{Code: 451, Enhanced: EnhancedCode{4, 4, 3}, Class: class, Message: phase + ": " + err.Error(), Err: err, Phase: phase}
}
