package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-mta/postern/relay/spool"
)

// Mode is what a listener is for.
type Mode string

const (
	// ModeSMTP is relaying MTA to MTA (port 25, or a content-filter
	// return port): clients in Config.Networks or authenticated clients may
	// relay; STARTTLS is offered when the listener has TLS.
	ModeSMTP Mode = "smtp"
	// ModeSubmission is message submission (RFC 6409, port 587): MAIL
	// needs STARTTLS first, then AUTH; Networks grant nothing.
	ModeSubmission Mode = "submission"
	// ModeSubmissions is submission over implicit TLS (RFC 8314, port
	// 465): the TLS handshake comes first, then AUTH is required.
	ModeSubmissions Mode = "submissions"
)

// BareNewline says what to do with a bare LF or a bare CR (one not part of
// a CRLF pair) in a message.
type BareNewline string

const (
	// BareNewlineNormalize turns every bare LF and bare CR into CRLF.
	BareNewlineNormalize BareNewline = "normalize"
	// BareNewlineReject answers 550 5.5.2 and closes the connection.
	BareNewlineReject BareNewline = "reject"
)

// Defaults for the zero values of Config.
const (
	DefaultMessageSize          = 10240000
	DefaultRecipients           = 1000
	DefaultHops                 = 100
	DefaultCommandTimeout       = 5 * time.Minute
	DefaultHeaderSectionLimit   = 1 << 20
	DefaultMaxAuthFailures      = 3
	DefaultMaxAuthFailuresPerIP = 10
	DefaultProxyHeaderTimeout   = 10 * time.Second
	// MaxLineLength is the longest line, CRLF included, accepted in
	// commands and in message content (RFC 5321 4.5.3.1.6 allows 1000;
	// twice that, as go-smtp and Postfix tolerate).
	MaxLineLength = 2000
)

// AuthFailureWindow is the window of Config.MaxAuthFailuresPerIP.
const AuthFailureWindow = time.Minute

// Listener is one listening socket.
type Listener struct {
	// Name appears in logs, metrics and the envelope (spool.Envelope.Listener).
	Name string
	// Address is host:port to bind (see Server.Listen). Ignored when the
	// listener is served with Server.ServeListener.
	Address string
	// Mode is smtp (the default when empty), submission or submissions.
	Mode Mode
	// TLS is the server certificate configuration. Nil means no STARTTLS
	// (and so no AUTH); submission and submissions need it. Replace it at
	// run time with Server.SetTLS.
	TLS *tls.Config
	// ProxyTrusted, when not empty, makes the listener expect a PROXY
	// protocol header (HAProxy v1 or v2) from every peer: peers inside
	// these prefixes must send one (the client address becomes the
	// header's source); peers outside them are closed without a word.
	ProxyTrusted []netip.Prefix
	// MaxConnections caps the connections open at once on this listener
	// (0: no cap); beyond it a client gets 421 4.7.0 and is closed.
	MaxConnections int
	// MaxConnectionsPerIP caps them per client address (0: no cap).
	MaxConnectionsPerIP int
}

// PermitInput is what a Permit rule sees at each RCPT.
type PermitInput struct {
	ClientIP        netip.Addr
	AuthenticatedAs string // "" when the client did not authenticate
	Sender          string // reverse path, "" for the null sender
	Rcpt            string
	RcptDomain      string // lower case
	Listener        string
	TLS             bool
	// Default is the decision without rules: true when the client is
	// authenticated, or (smtp listeners only) when its address is inside
	// Config.Networks.
	Default bool
}

// Store receives accepted messages (the daemon adapts the spool to it).
type Store interface {
	// Create starts a message. env is complete (every field the listener
	// knows, Hops and MessageID included) and is not changed afterwards.
	// An error is answered per [Reply] classification (451 4.3.0 by
	// default).
	Create(env *spool.Envelope) (Receipt, error)
}

// Receipt is one message being received: the listener writes the body
// (its own Received header first, CRLF line ends), then calls Commit or
// Abort, exactly one of them, from one goroutine.
type Receipt interface {
	io.Writer
	// Commit makes the message durable and returns its queue ID. The
	// client gets "250 2.0.0 Ok: queued as ID" only after Commit returned
	// nil. ctx is cancelled when the server stops hard (Shutdown's
	// deadline).
	Commit(ctx context.Context) (id string, err error)
	// Abort discards the message. It is also called after a failed
	// Commit, so it must be safe then.
	Abort()
}

// Identified is a [Receipt] that knows its queue ID before Commit (the
// spool assigns it at Create): the listener writes it in the id clause of
// its Received header field.
type Identified interface {
	ID() string
}

// Authenticator checks AUTH credentials. *Users is one.
type Authenticator interface {
	// Verify reports whether pass is user's password. It should take as
	// long for an unknown user as for a wrong password.
	Verify(user, pass string) bool
}

// Config is the listener's settled configuration (the daemon turns the
// policy's relay: block into it). Zero values take the defaults named on
// each field.
type Config struct {
	// Hostname is our name: the greeting, the Received header, 421
	// replies. Required.
	Hostname string
	// Listeners to serve; at least one, names unique.
	Listeners []Listener
	// Networks are the client addresses that may relay without AUTH on
	// smtp listeners. Empty means nobody (the policy's default of
	// loopback is the daemon's to fill in).
	Networks []netip.Prefix

	// Users checks AUTH credentials; nil means AUTH is not offered.
	// Replace it at run time with Server.SetUsers.
	Users Authenticator
	// Mechanisms offered: "plain", "login" (case-insensitive). Default
	// both.
	Mechanisms []string
	// MaxAuthFailures per connection; the failure that reaches it is
	// answered 421 4.7.0 and the connection closed. Default 3.
	MaxAuthFailures int
	// MaxAuthFailuresPerIP in AuthFailureWindow: beyond it, AUTH from
	// that address is answered 454 4.7.0 until the window ends. Default
	// 10.
	MaxAuthFailuresPerIP int

	// MessageSize is the largest message accepted, in octets, advertised
	// in SIZE (RFC 1870). Default 10240000.
	MessageSize int64
	// Recipients is the most RCPTs per message; more get 452 4.5.3.
	// Default 1000.
	Recipients int
	// Hops: a message that already has this many Received header fields
	// gets 554 5.4.6 (RFC 5321 6.3). Default 100.
	Hops int
	// BareNewline is normalize (default) or reject.
	BareNewline BareNewline
	// CommandTimeout bounds every read and write on a connection (RFC
	// 5321 4.5.3.2). Default 5m.
	CommandTimeout time.Duration
	// HeaderSectionLimit caps the message's header section, in octets;
	// beyond it the message gets 552 5.3.4. Default 1 MiB. The header
	// section is held in memory until it ends.
	HeaderSectionLimit int
	// ProxyHeaderTimeout bounds the wait for a PROXY protocol header.
	// Default 10s.
	ProxyHeaderTimeout time.Duration

	// Store receives messages. Required.
	Store Store
	// Admit, when set, is asked at each MAIL whether a new message may
	// come in. Return nil, or ErrQueueFull / ErrNoSpace (452 4.3.1),
	// ErrShuttingDown (421 4.3.2), or any error (451 4.3.0), wrapped or
	// not.
	Admit func(ctx context.Context) error
	// Permit, when set, decides relaying at each RCPT. It gets the
	// default decision in PermitInput.Default and returns the final one:
	// a rule that matches returns its value, no rule returns Default. An
	// error refuses the recipient with 451 4.3.0, never allows it.
	Permit func(ctx context.Context, in PermitInput) (bool, error)
	// LookupPTR, when set, names the client for logs and the Received
	// header (one call per connection); nil or a failure writes
	// "unknown".
	LookupPTR func(ctx context.Context, ip netip.Addr) (string, error)

	// Logger gets one line per event; nil discards.
	Logger *slog.Logger
	// Registerer, when set, gets the postern_relay_sessions,
	// postern_relay_messages_received_total and postern_relay_rejects_total
	// metrics.
	Registerer prometheus.Registerer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// settle checks cfg and fills in the defaults, returning a copy.
func (cfg Config) settle() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(cfg.Hostname) == "" || strings.ContainsAny(cfg.Hostname, " \t\r\n") {
		bad("smtpd: Hostname %q must be a host name (it goes into the greeting and the Received header)", cfg.Hostname)
	}
	if cfg.Store == nil {
		bad("smtpd: Store is required (where accepted messages go)")
	}
	if len(cfg.Listeners) == 0 {
		bad("smtpd: no Listeners: give at least one")
	}
	names := map[string]bool{}
	cfg.Listeners = append([]Listener(nil), cfg.Listeners...)
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if l.Name == "" {
			bad("smtpd: listener %d has no Name", i)
		} else if names[l.Name] {
			bad("smtpd: listener name %q used twice", l.Name)
		}
		names[l.Name] = true
		if l.Mode == "" {
			l.Mode = ModeSMTP
		}
		switch l.Mode {
		case ModeSMTP:
		case ModeSubmission, ModeSubmissions:
			if l.TLS == nil {
				bad("smtpd: listener %q: mode %s needs TLS (AUTH is only offered over TLS)", l.Name, l.Mode)
			}
			if cfg.Users == nil {
				bad("smtpd: listener %q: mode %s requires AUTH, but Config.Users is nil", l.Name, l.Mode)
			}
		default:
			bad("smtpd: listener %q: unknown mode %q (smtp, submission or submissions)", l.Name, l.Mode)
		}
		for _, p := range l.ProxyTrusted {
			if !p.IsValid() {
				bad("smtpd: listener %q: invalid ProxyTrusted prefix", l.Name)
			}
		}
		if l.MaxConnections < 0 || l.MaxConnectionsPerIP < 0 {
			bad("smtpd: listener %q: connection caps must be >= 0 (0: no cap)", l.Name)
		}
	}
	for _, p := range cfg.Networks {
		if !p.IsValid() {
			bad("smtpd: invalid prefix in Networks")
		}
	}
	if len(cfg.Mechanisms) == 0 {
		cfg.Mechanisms = []string{"plain", "login"}
	}
	mechs := make([]string, 0, len(cfg.Mechanisms))
	for _, m := range cfg.Mechanisms {
		switch up := strings.ToUpper(m); up {
		case "PLAIN", "LOGIN":
			mechs = append(mechs, up)
		default:
			bad("smtpd: unknown AUTH mechanism %q (plain or login)", m)
		}
	}
	cfg.Mechanisms = mechs
	switch cfg.BareNewline {
	case "":
		cfg.BareNewline = BareNewlineNormalize
	case BareNewlineNormalize, BareNewlineReject:
	default:
		bad("smtpd: BareNewline %q: use normalize or reject", cfg.BareNewline)
	}
	if cfg.MaxAuthFailures < 0 || cfg.MaxAuthFailuresPerIP < 0 || cfg.MessageSize < 0 || cfg.Recipients < 0 ||
		cfg.Hops < 0 || cfg.CommandTimeout < 0 || cfg.HeaderSectionLimit < 0 || cfg.ProxyHeaderTimeout < 0 {
		bad("smtpd: limits must not be negative (0 takes the default)")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxAuthFailures, DefaultMaxAuthFailures)
	def(&cfg.MaxAuthFailuresPerIP, DefaultMaxAuthFailuresPerIP)
	def(&cfg.Recipients, DefaultRecipients)
	def(&cfg.Hops, DefaultHops)
	def(&cfg.HeaderSectionLimit, DefaultHeaderSectionLimit)
	if cfg.MessageSize == 0 {
		cfg.MessageSize = DefaultMessageSize
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.ProxyHeaderTimeout == 0 {
		cfg.ProxyHeaderTimeout = DefaultProxyHeaderTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, errors.Join(errs...)
}
