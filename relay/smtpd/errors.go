package smtpd

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/emersion/go-smtp"
)

// Reply is an error that carries the SMTP reply a client gets for it.
// Admit, Store.Create, Receipt.Write and Receipt.Commit may return one
// (wrapped or not) to choose the reply; any other error is answered 451
// 4.3.0, or 452 4.3.1 when it wraps ENOSPC or EDQUOT. The text of other
// errors never reaches the client (it is logged).
type Reply struct {
	Code     int               // e.g. 452
	Enhanced smtp.EnhancedCode // e.g. {4, 3, 1} (RFC 3463)
	Message  string            // reply text, without the codes
	reason   string            // rejects_total reason label, "" for none
}

// Error returns the reply as it is sent.
func (r *Reply) Error() string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Message)
}

// Errors the daemon returns from Admit (or the Store) so that the client
// gets the matching reply (RFC 3463 codes).
var (
	// ErrQueueFull: the queue holds its maximum of messages (452 4.3.1).
	ErrQueueFull = &Reply{452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage: queue full, try again later", "queue_full"}
	// ErrNoSpace: the spool's disk is below its free-space floor, or
	// full (452 4.3.1).
	ErrNoSpace = &Reply{452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later", "disk"}
	// ErrShuttingDown: the relay is stopping (421 4.3.2; the connection
	// is closed after the reply).
	ErrShuttingDown = &Reply{421, smtp.EnhancedCode{4, 3, 2}, "Service shutting down, try again later", ""}
)

// Replies of the listener itself.
var (
	errLocal          = &Reply{451, smtp.EnhancedCode{4, 3, 0}, "Local error in processing, try again later", ""}
	errRelayDenied    = &Reply{554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied", "relay_denied"}
	errBadRcpt        = &Reply{501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax", "syntax"}
	errBadSender      = &Reply{501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax", "syntax"}
	errTooManyRcpts   = &Reply{452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients", "recipients"}
	errTooManyHops    = &Reply{554, smtp.EnhancedCode{5, 4, 6}, "Too many hops", "hops"}
	errBareNewline    = &Reply{550, smtp.EnhancedCode{5, 5, 2}, "Bare LF or CR in message, use CRLF line ends (RFC 5321 2.3.8)", "bare_newline"}
	errHeaderTooLarge = &Reply{552, smtp.EnhancedCode{5, 3, 4}, "Message header section too large", "size"}
	errLineTooLong    = &Reply{554, smtp.EnhancedCode{5, 6, 0}, fmt.Sprintf("Line too long (limit %d octets)", MaxLineLength), "size"}
	errNeedTLS        = &Reply{530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first", "auth"}
	errNeedAuth       = &Reply{530, smtp.EnhancedCode{5, 7, 0}, "Authentication required", "auth"}
	errRequireTLS     = &Reply{530, smtp.EnhancedCode{5, 7, 10}, "REQUIRETLS needs a TLS session", ""}
	errAuthInvalid    = &Reply{535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid", "auth"}
	errAuthTooMany    = &Reply{421, smtp.EnhancedCode{4, 7, 0}, "Too many authentication failures", "auth"}
	errAuthIPLimit    = &Reply{454, smtp.EnhancedCode{4, 7, 0}, "Too many authentication failures from your address, try again later", "auth"}
	errClosing        = &Reply{421, smtp.EnhancedCode{4, 7, 0}, "Closing connection", ""}
	errAuthIdentity   = &Reply{535, smtp.EnhancedCode{5, 7, 8}, "Authorization identity must be empty or the user name", "auth"}
)

// replyFor classifies err (from a hook or the Store) into the reply to
// send.
func replyFor(err error) *Reply {
	var r *Reply
	if errors.As(err, &r) {
		return r
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &Reply{Code: se.Code, Enhanced: se.EnhancedCode, Message: se.Message}
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ErrNoSpace
	}
	return errLocal
}

// smtpError turns r into go-smtp's error type, naming host at the start of
// a 421 as RFC 5321 4.2 asks.
func (r *Reply) smtpError(host string) *smtp.SMTPError {
	msg := r.Message
	if r.Code == 421 {
		msg = host + " " + msg
	}
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: r.Enhanced, Message: msg}
}
