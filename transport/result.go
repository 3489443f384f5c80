package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Status is the outcome for one recipient.
type Status uint8

const (
	// StatusUnknown is the zero value; a Result from [Client.Deliver] never
	// has it ([CheckResults] reports it).
	StatusUnknown Status = iota
	// StatusDelivered: the server accepted the message for the recipient.
	StatusDelivered
	// StatusTemporary: try again later.
	StatusTemporary
	// StatusPermanent: do not try again; bounce.
	StatusPermanent
)

// String returns "delivered", "temporary", "permanent" or "unknown".
func (s Status) String() string {
	switch s {
	case StatusDelivered:
		return "delivered"
	case StatusTemporary:
		return "temporary"
	case StatusPermanent:
		return "permanent"
	}
	return "unknown"
}

// Verification says how the server's certificate was checked.
type Verification string

// The verification methods.
const (
	VerifiedNone   Verification = "none"    // no TLS, or a certificate accepted unverified
	VerifiedPKIX   Verification = "pkix"    // WebPKI chain and name (RFC 6125)
	VerifiedDANE   Verification = "dane"    // the host's [Verifier] (RFC 7672)
	VerifiedMTASTS Verification = "mta-sts" // PKIX under an MTA-STS enforce policy (RFC 8461)
)

// TLSInfo describes the TLS state of the connection a result came from.
type TLSInfo struct {
	// Version is the TLS version (tls.VersionTLS13 ...), zero without TLS.
	Version uint16
	// CipherSuite is the negotiated suite, zero without TLS.
	CipherSuite uint16
	// Verified says how the certificate was checked.
	Verified Verification
	// ServerName is the name the certificate was checked against.
	ServerName string
	// Resumed is set when the TLS session was resumed from an earlier
	// handshake with the same server name (no full handshake).
	Resumed bool
}

// Enabled reports whether the connection used TLS.
func (t TLSInfo) Enabled() bool { return t.Version != 0 }

// String returns e.g. "TLS 1.3 TLS_AES_128_GCM_SHA256 verified=pkix", or
// "none".
func (t TLSInfo) String() string {
	if !t.Enabled() {
		return "none"
	}
	return tls.VersionName(t.Version) + " " + tls.CipherSuiteName(t.CipherSuite) + " verified=" + string(t.Verified)
}

// Warning is something that went wrong in a session without ending it, such
// as a STARTTLS handshake failure after which the session went on in
// plaintext. It is recorded on every result of the session, failed ones
// included, so its text never says the message was delivered.
type Warning struct {
	Class Class
	Text  string
	// TLSResult is the RFC 8460 result type of a TLS problem, as in
	// [Error.TLSResult].
	TLSResult string
}

// String returns "class: text".
func (w Warning) String() string { return string(w.Class) + ": " + w.Text }

// Result is the outcome for one recipient.
type Result struct {
	// Recipient is the recipient's address, as in the Message.
	Recipient string
	// Status is delivered, temporary or permanent.
	Status Status
	// Code, Enhanced and Text are the reply that decided Status (the
	// server's, or one the transport made for a local failure).
	Code     int
	Enhanced EnhancedCode
	Text     string
	// Class is ClassNone for delivered recipients, else the kind of failure
	// (the last_error variable of the next attempt).
	Class Class
	// Host is the name of the host that answered (or failed last).
	Host string
	// Address is the remote address and port, Source the local address, when
	// a connection was made.
	Address netip.AddrPort
	Source  netip.AddrPort
	// Protocol is the protocol spoken to Host.
	Protocol Protocol
	// PeerDSN says Host offered DSN (RFC 3461), so NOTIFY and ORCPT went
	// with the recipient and the next hop reports on it from now on; when
	// it did not, an MTA that relays owes a "relayed" notification to a
	// recipient that asked for NOTIFY=SUCCESS (RFC 3461 section 4.2).
	PeerDSN bool
	// TLS describes the connection's TLS state.
	TLS TLSInfo
	// Warnings lists problems of the session that did not end it (a
	// fallback to plaintext, an unverified certificate); failed results
	// have them too.
	Warnings []Warning
	// Duration is the time from the start of Deliver to this result.
	Duration time.Duration
	// RetryAfter is the earliest time worth retrying. The transport leaves it
	// zero; the engine sets it for throttled groups.
	RetryAfter time.Time
	// Err is the failure as a *Error (nil when delivered).
	Err *Error
	// Attempts are the connection attempts of the Deliver call, in order
	// (shared by the recipients of the call: read only). The engine turns
	// them into TLS-RPT result records (RFC 8460).
	Attempts []Attempt
}

// Attempt is one try of one target: a connection opened (or taken from
// the pool) and what became of it. Targets skipped by [Hooks] before
// connecting are not attempts.
type Attempt struct {
	Host   int // index in Plan.Hosts
	Target int // index in the host's Targets
	// Address and Source are the remote and local addresses, when a
	// connection was made (Source may be zero when it was not).
	Address netip.AddrPort
	Source  netip.AddrPort
	// TLS is the session's TLS state once established (zero without).
	TLS TLSInfo
	// Err is why the attempt did not carry the transaction, or the
	// transaction's failure; nil when it did and the server accepted.
	Err *Error
	// Warnings are the session's warnings (a plaintext fallback, an
	// unverified certificate), with their TLS-RPT result types.
	Warnings []Warning
}

// CheckResults verifies the transport's promise: exactly one result per
// recipient, in order, each with a final status, delivered results with a
// 2xx code and no error, failed ones with a 4xx/5xx code, a class and an
// error that agrees with the status. Every test of the transport (and of
// code that wraps it) should call it.
func CheckResults(recipients []Recipient, results []Result) error {
	var errs []error
	if len(results) != len(recipients) {
		errs = append(errs, fmt.Errorf("transport: %d results for %d recipients", len(results), len(recipients)))
	}
	for i := range min(len(results), len(recipients)) {
		r := &results[i]
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("transport: result %d (%s): %s", i, recipients[i].Address, fmt.Sprintf(format, args...)))
		}
		if r.Recipient != recipients[i].Address {
			bad("result is for %q", r.Recipient)
		}
		switch r.Status {
		case StatusDelivered:
			if r.Code < 200 || r.Code > 299 {
				bad("delivered with code %d", r.Code)
			}
			if r.Err != nil {
				bad("delivered with an error: %v", r.Err)
			}
			if r.Class != ClassNone {
				bad("delivered with class %q", r.Class)
			}
		case StatusTemporary, StatusPermanent:
			if r.Err == nil {
				bad("%s without an error", r.Status)
				break
			}
			if r.Err.Temporary() != (r.Status == StatusTemporary) {
				bad("status %s but error temporary=%v", r.Status, r.Err.Temporary())
			}
			if r.Code < 400 || r.Code > 599 {
				bad("%s with code %d", r.Status, r.Code)
			}
			if r.Class == "" || r.Class == ClassNone {
				bad("%s without a class", r.Status)
			}
		default:
			bad("no status")
		}
	}
	return errors.Join(errs...)
}
