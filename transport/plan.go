package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Protocol is the protocol spoken to a host.
type Protocol uint8

const (
	// SMTP is RFC 5321 SMTP (the zero value).
	SMTP Protocol = iota
	// LMTP is RFC 2033 LMTP: LHLO instead of EHLO, and one reply per
	// accepted recipient after the end of the data.
	LMTP
)

// String returns "smtp" or "lmtp".
func (p Protocol) String() string {
	switch p {
	case SMTP:
		return "smtp"
	case LMTP:
		return "lmtp"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// StartTLSMode says how STARTTLS (RFC 3207) is used on a host. It mirrors the
// policy setting tls.starttls.
type StartTLSMode uint8

const (
	// StartTLSOptional (the zero value, and the policy default) uses STARTTLS
	// when the server offers it. When the server does not offer it the
	// session goes on in plaintext on the same connection; when it refuses
	// it (4xx/5xx), the same, with a [ClassTLS] warning on the results; when
	// the handshake fails, the client reconnects to the same address once
	// and goes on in plaintext, with a warning (RFC 7435 opportunistic
	// security: an attacker able to break the handshake could have stripped
	// the STARTTLS offer anyway). A positive reply other than 220 to
	// STARTTLS is a protocol error: the connection is dropped and the next
	// host tried.
	StartTLSOptional StartTLSMode = iota
	// StartTLSRequire makes TLS mandatory: not one byte of the message is
	// sent in plaintext. A host that does not offer STARTTLS, refuses it (or
	// refuses EHLO), or fails the handshake or the certificate checks is
	// skipped with a temporary failure: the next host is tried, and when
	// none is left the message is deferred, not bounced (451 4.7.10 for a
	// missing or refused STARTTLS; RFC 8461 section 5.1), since a stripped
	// STARTTLS is what a downgrade attack looks like. Only a message with
	// [Message.RequireTLS] fails permanently when STARTTLS is missing or
	// refused (550 5.7.10).
	StartTLSRequire
	// StartTLSDisable never sends STARTTLS. It is overridden (to require) by
	// anything that makes TLS strict: a DANE [Verifier], MTA-STS enforce, or
	// a message that carries REQUIRETLS.
	StartTLSDisable
)

// String returns the policy word: "optional", "require" or "disable".
func (m StartTLSMode) String() string {
	switch m {
	case StartTLSOptional:
		return "optional"
	case StartTLSRequire:
		return "require"
	case StartTLSDisable:
		return "disable"
	}
	return fmt.Sprintf("StartTLSMode(%d)", uint8(m))
}

// Verifier decides whether a TLS server is acceptable in place of PKIX
// verification. It is the place where DANE (RFC 7672) plugs in: the engine
// looks up the TLSA records of a host and sets a Verifier that matches the
// presented chain against them. The transport itself implements no DANE
// logic.
//
// VerifyConnection is called after the handshake with the peer's connection
// state (PeerCertificates holds the chain as sent; VerifiedChains is empty
// because the transport verifies by itself). A non-nil error fails the
// handshake; it is reported with class [ClassDANE].
type Verifier interface {
	VerifyConnection(cs tls.ConnectionState) error
}

// PoolKeyer may be implemented by a [Verifier] to say which pooled
// connections it would accept: a connection verified by one Verifier is
// reused for a later delivery only when that delivery's Verifier has the
// same key (a DANE verifier's key covers its TLSA records and names).
// Without it, only the same Verifier value shares connections.
type PoolKeyer interface {
	PoolKey() string
}

// verifierKey is the part of a pool key that a Verifier decides.
func verifierKey(v Verifier) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case PoolKeyer:
		return "k:" + v.PoolKey()
	default:
		return fmt.Sprintf("p:%p", v)
	}
}

// VerifierFunc adapts a function to the [Verifier] interface.
type VerifierFunc func(cs tls.ConnectionState) error

// VerifyConnection calls f(cs).
func (f VerifierFunc) VerifyConnection(cs tls.ConnectionState) error { return f(cs) }

// Timeouts bounds each phase of a session. A zero field takes the default
// shown (the policy defaults, RFC 5321 section 4.5.3.2 in spirit). The TLS
// handshake is bounded per host: [Host.HandshakeTimeout].
type Timeouts struct {
	Connect  time.Duration // TCP connect; default 5m
	Greeting time.Duration // the 220 banner; default 5m
	EHLO     time.Duration // EHLO/LHLO/HELO, AUTH, RSET; default 5m
	MailFrom time.Duration // MAIL FROM reply; default 5m
	RcptTo   time.Duration // each RCPT TO reply; default 5m
	Data     time.Duration // DATA/BDAT, each write of the body, and the final reply; default 10m
}

// Default phase timeouts, used for zero fields of [Timeouts].
const (
	DefaultConnectTimeout   = 5 * time.Minute
	DefaultGreetingTimeout  = 5 * time.Minute
	DefaultEHLOTimeout      = 5 * time.Minute
	DefaultMailFromTimeout  = 5 * time.Minute
	DefaultRcptToTimeout    = 5 * time.Minute
	DefaultDataTimeout      = 10 * time.Minute
	DefaultHandshakeTimeout = 3 * time.Minute
)

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, DefaultConnectTimeout)
	def(&t.Greeting, DefaultGreetingTimeout)
	def(&t.EHLO, DefaultEHLOTimeout)
	def(&t.MailFrom, DefaultMailFromTimeout)
	def(&t.RcptTo, DefaultRcptToTimeout)
	def(&t.Data, DefaultDataTimeout)
	return t
}

// Host is one next hop: an MX host or a relay, with the host-phase settings
// the engine evaluated for it.
type Host struct {
	// Name is the MX host name (no trailing dot) or the relay's name or IP
	// literal. It is the name sent in SNI and checked by PKIX verification.
	Name string
	// SNI, when set, is sent in the TLS server_name extension instead of
	// Name: DANE's TLSA base domain when it differs from the MX name after
	// a secure CNAME expansion (RFC 7672 section 8.1). PKIX still checks
	// Name.
	SNI string
	// Preference is the MX preference, for results and logs only.
	Preference int
	// Targets are the host's addresses, dialed in this order, each with the
	// settings of a connection to it (the engine applies ip-strategy.lookup,
	// limits.multihomed and the connection-phase settings). A host with none
	// is skipped with a permanent error.
	Targets []Target
	// Port defaults to 25 for SMTP and 24 for LMTP.
	Port int
	// Protocol is SMTP (default) or LMTP.
	Protocol Protocol
	// StartTLS is the tls.starttls setting for this host.
	StartTLS StartTLSMode
	// ImplicitTLS starts TLS right after connecting (port 465 style, for
	// relays); STARTTLS is then not used, and TLS failures are never
	// downgraded.
	ImplicitTLS bool
	// AllowInvalidCerts accepts a certificate that fails PKIX verification.
	// It is ignored when MTASTSEnforce is set or the message requires TLS
	// (REQUIRETLS), and it does not apply to a DANE Verifier.
	AllowInvalidCerts bool
	// MinTLSVersion is the lowest TLS version offered (tls.VersionTLS12 ...);
	// zero means crypto/tls's client default (TLS 1.2).
	MinTLSVersion uint16
	// Verifier, when set, makes TLS strict and replaces PKIX verification
	// (DANE: the engine sets it when the host has usable TLSA records).
	// Results report the verification as "dane".
	Verifier Verifier
	// MTASTSEnforce is set when an MTA-STS policy in enforce mode (RFC 8461)
	// covers the recipient domain and lists this host: TLS becomes strict
	// and the certificate must pass PKIX verification for Name, whatever
	// AllowInvalidCerts says. Results report the verification as "mta-sts".
	// (The engine skips hosts that such a policy does not list.)
	MTASTSEnforce bool
	// Auth, when set, authenticates to the host (relays).
	Auth *Auth
	// AllowPlaintextAuth lets Auth be sent on a connection without TLS.
	AllowPlaintextAuth bool
	// IsRelay marks a configured relay rather than an MX host, for results.
	IsRelay bool
	// MessagesPerConnection is how many transactions one connection to
	// this host may carry (limits.messages-per-connection). Zero or one
	// means a connection is closed after its transaction; larger values let
	// [Client] keep it in its pool for the next message to the same target.
	MessagesPerConnection int
	// HandshakeTimeout bounds the STARTTLS command and the TLS handshake (or
	// the implicit-TLS handshake); zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Target is one address of a host, with the settings of a connection to
// it: where to connect from and the connection-phase settings of the
// policy, settled before delivery.
type Target struct {
	// Addr is the remote address.
	Addr netip.Addr
	// Source is the local address to bind; the zero Addr lets the kernel
	// choose.
	Source netip.Addr
	// EHLOName is sent in EHLO/LHLO/HELO; empty means "localhost".
	EHLOName string
	// Timeouts bound the phases of the session; zero fields take the
	// defaults.
	Timeouts Timeouts
}

func (h *Host) serverName() string {
	if h.SNI != "" {
		return h.SNI
	}
	return h.Name
}

func (h *Host) port() int {
	if h.Port > 0 {
		return h.Port
	}
	if h.Protocol == LMTP {
		return 24
	}
	return 25
}

// Hooks let the caller act as delivery reaches each target. Its method
// is called from the goroutine running [Client.Deliver], in order, and only
// for the targets actually tried.
type Hooks interface {
	// BeforeConnect is called before a connection to
	// Plan.Hosts[host].Targets[target] is opened or taken from the pool.
	// An error skips the target, like a failed connect; a *[Error] chooses
	// the class and status (a plain error is a temporary ClassConnection
	// failure). An error wrapping [ErrHold] stops the delivery instead:
	// no other target or host is tried, and every recipient without a
	// result gets the error. The engine takes the slots of
	// connection-level throttles here, and holds the delivery when one is
	// full: moving on to a backup MX would defeat a per-MX limit.
	BeforeConnect(ctx context.Context, host, target int) error
}

// ErrHold, wrapped by an error of [Hooks.BeforeConnect], stops the
// delivery where it is (see Hooks).
var ErrHold = errors.New("delivery held")

// Plan says where and how to deliver one message to one group of
// recipients: the hosts in order, with their settled settings. A Plan is
// read, never changed, by [Client.Deliver].
type Plan struct {
	// Hosts are tried in order until one takes the message.
	Hosts []Host
	// Hooks, when set, is told as delivery reaches each target.
	Hooks Hooks
}
