package transport

import (
	"io"
	"strings"
)

// NotifyFlags are the DSN NOTIFY conditions of a recipient (RFC 3461).
type NotifyFlags uint8

const (
	// NotifyNever asks for no DSN at all; it excludes the other flags.
	NotifyNever NotifyFlags = 1 << iota
	// NotifySuccess asks for a DSN on delivery.
	NotifySuccess
	// NotifyFailure asks for a DSN on failure.
	NotifyFailure
	// NotifyDelay asks for a DSN on delay.
	NotifyDelay
)

// String returns the NOTIFY parameter value ("SUCCESS,FAILURE"), or "" when
// no flag is set.
func (n NotifyFlags) String() string {
	if n&NotifyNever != 0 {
		return "NEVER"
	}
	s := ""
	for _, f := range []struct {
		f NotifyFlags
		w string
	}{{NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}} {
		if n&f.f != 0 {
			if s != "" {
				s += ","
			}
			s += f.w
		}
	}
	return s
}

// NotifyWord is the flag of one NOTIFY keyword of RFC 3461 section 4.1
// (NEVER, SUCCESS, FAILURE or DELAY, in any case); ok is false for any
// other word.
func NotifyWord(w string) (f NotifyFlags, ok bool) {
	switch strings.ToUpper(w) {
	case "NEVER":
		return NotifyNever, true
	case "SUCCESS":
		return NotifySuccess, true
	case "FAILURE":
		return NotifyFailure, true
	case "DELAY":
		return NotifyDelay, true
	}
	return 0, false
}

// Recipient is one envelope recipient.
type Recipient struct {
	// Address is the forward-path without angle brackets.
	Address string
	// Notify, when non-zero, is sent as NOTIFY= if the server offers DSN.
	Notify NotifyFlags
	// ORcpt, when set, is the original recipient address, sent as
	// ORCPT=rfc822;ADDRESS (xtext-encoded) if the server offers DSN.
	ORcpt string
}

// DSNReturn is the RET parameter of MAIL FROM (RFC 3461).
type DSNReturn uint8

const (
	// ReturnDefault sends no RET parameter.
	ReturnDefault DSNReturn = iota
	// ReturnFull asks for the full message in DSNs.
	ReturnFull
	// ReturnHeaders asks for the headers only.
	ReturnHeaders
)

// Message is the message to deliver and its envelope.
type Message struct {
	// From is the reverse-path without angle brackets; "" is the null
	// sender <>.
	From string
	// Recipients receive one [Result] each, in this order.
	Recipients []Recipient
	// Body is the message (header and body) as stored. Line endings may be
	// LF or CRLF; they are normalised to CRLF, bare CRs become CRLF, and
	// lines starting with a dot are dot-stuffed. Body is read from offset 0
	// for every attempt, so it must stay unchanged during Deliver.
	Body io.ReaderAt
	// Size is the length of Body in bytes. It is also the SIZE= value.
	Size int64
	// Return is the DSN RET parameter, sent when the server offers DSN.
	Return DSNReturn
	// EnvID is the DSN ENVID parameter, sent (xtext-encoded) when the server
	// offers DSN.
	EnvID string
	// RequireTLS asks for REQUIRETLS (RFC 8689): TLS is strict, the
	// certificate must verify, and the server must offer REQUIRETLS, which is
	// then sent on MAIL FROM. Unlike other strict TLS, a host that does not
	// offer or refuses STARTTLS is a permanent failure (550 5.7.10), as is
	// one that does not offer REQUIRETLS over verified TLS (550 5.7.30); the
	// next host is still tried.
	RequireTLS bool
	// SMTPUTF8 says the message needs SMTPUTF8 (RFC 6531). It is implied
	// when From or a recipient address is not ASCII. A server that does not
	// offer it is skipped with a permanent 5.6.7 error.
	SMTPUTF8 bool
}
