package policies

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// Relay is the relay: block, read by `postern relay`, the relay daemon:
// the SMTP listeners (RFC 5321 submission per RFC 6409, implicit TLS per
// RFC 8314, STARTTLS per RFC 3207), whom it relays for, its intake limits,
// its queue and the DSNs it sends (RFC 3464). Every setting is a literal
// except Permit (session-phase rules) and Queue.DestinationConcurrency (a
// recipient-phase Value).
//
// [Set.Relay] never returns nil: a policy without a relay: block has every
// relay setting at its default (one smtp listener on 127.0.0.1:10025,
// loopback networks). The Relay is part of an immutable [Set]: read it,
// never change it.
//
// The loader does not read the files the block names (TLS certificates and
// keys, the users file): it checks their syntax, and the daemon reads them
// when it starts and on reload, reporting a problem at the setting's
// position ([Relay.Position], [Relay.Errorf]).
type Relay struct {
	// Listeners are the SMTP listeners (relay.listeners), at least one.
	Listeners []Listener
	// Networks are the clients that may relay without AUTH
	// (relay.networks); an IPv4-mapped IPv6 prefix is written as the IPv4
	// prefix it stands for. Compare client addresses with [Relay.InNetworks].
	Networks []netip.Prefix
	// Auth is relay.auth; AUTH is offered only when Auth.Enabled().
	Auth RelayAuth
	// Permit are the relay.permit rules, evaluated per RCPT command.
	Permit *Permit
	// Limits are relay.limits, the intake limits.
	Limits RelayLimits
	// Queue is relay.queue.
	Queue RelayQueue
	// DSN is relay.dsn.
	DSN RelayDSN
	// Hostname is the policy's hostname when it is a literal, else its
	// default: the relay's greeting, its Received lines, the
	// Reporting-MTA of its DSNs and {hostname} in relay.dsn.from.
	Hostname string

	file     string
	at       map[string]Pos // where each relay setting is written, by path
	networks []prefixEntry  // relay.networks as written, when it is
	lists    map[string][]string
}

// Listener is one entry of relay.listeners.
type Listener struct {
	// Name appears in logs and metrics and is the listener variable of
	// relay.permit rules.
	Name string
	// Address is the IP address and port to listen on; port 0 lets the
	// kernel choose a free port.
	Address netip.AddrPort
	// Mode is smtp, submission or submissions.
	Mode ListenerMode
	// TLS is the certificate and key; nil for none. With TLS an smtp or
	// submission listener offers STARTTLS; submissions needs it.
	TLS *ListenerTLS
	// ProxyProtocol, when not nil, makes the listener read a PROXY
	// protocol header (v1 or v2) from the peers in Trusted, and refuse
	// connections from any other peer.
	ProxyProtocol *ProxyProtocol
	// MaxConnections bounds the listener's open connections.
	MaxConnections int
	// MaxConnectionsPerIP bounds the open connections from one client
	// address.
	MaxConnectionsPerIP int
	// At is where the listener is written (zero for the default one).
	At Pos

	path string // "relay.listeners[0]"
}

// LoopbackOnly reports whether only processes on this machine can reach
// the listener: its address is a loopback address and it does not take
// PROXY protocol headers (which would make every client of the proxy
// look local).
func (l *Listener) LoopbackOnly() bool {
	return l.Address.Addr().Unmap().IsLoopback() && l.ProxyProtocol == nil
}

// ListenerMode is the mode of a relay listener.
type ListenerMode string

// The listener modes.
const (
	// ModeSMTP relays for relay.networks and authenticated clients;
	// STARTTLS is offered when the listener has tls.
	ModeSMTP ListenerMode = "smtp"
	// ModeSubmission is message submission (RFC 6409): STARTTLS, then
	// AUTH, are required before MAIL.
	ModeSubmission ListenerMode = "submission"
	// ModeSubmissions is submission over implicit TLS (RFC 8314): TLS
	// from the first byte, then AUTH required before MAIL.
	ModeSubmissions ListenerMode = "submissions"
)

// ListenerTLS are a listener's certificate and key files (PEM), resolved
// from the policy's directory, read by the daemon at start and on reload.
type ListenerTLS struct {
	Cert string
	Key  string
}

// ProxyProtocol is a listener's proxy-protocol setting.
type ProxyProtocol struct {
	// Trusted are the peers (load balancers) whose PROXY header gives the
	// client's address; a connection from any other peer is refused.
	Trusted []netip.Prefix
}

// RelayAuth is relay.auth: SMTP AUTH (RFC 4954) over TLS.
type RelayAuth struct {
	// UsersFile is the users file ("user:bcrypt-hash" lines), resolved
	// from the policy's directory; "" when AUTH is off.
	UsersFile string
	// Mechanisms are the SASL mechanisms offered: plain (RFC 4616),
	// login.
	Mechanisms []string
	// MaxFailures is the number of failed AUTH attempts at which a
	// session is closed (421 4.7.0).
	MaxFailures int
}

// Enabled reports whether AUTH is offered (a users file is set).
func (a RelayAuth) Enabled() bool { return a.UsersFile != "" }

// RelayLimits is relay.limits.
type RelayLimits struct {
	// MessageSize is the largest message accepted, in bytes (SIZE, RFC
	// 1870).
	MessageSize int64
	// Recipients is the most RCPT commands accepted per message.
	Recipients int
	// Hops is the number of Received header fields at which a message is
	// refused as looping (RFC 5321 section 6.3).
	Hops int
	// BareNewline is what is done with a bare LF or CR in the message.
	BareNewline BareNewline
	// CommandTimeout is how long the relay waits for a client's next
	// command (RFC 5321 section 4.5.3.2).
	CommandTimeout time.Duration
}

// BareNewline is the value of relay.limits.bare-newline.
type BareNewline string

// The bare-newline treatments.
const (
	// BareNewlineNormalize turns a bare LF or CR into CRLF.
	BareNewlineNormalize BareNewline = "normalize"
	// BareNewlineReject refuses the message (550 5.5.2) and closes the
	// session.
	BareNewlineReject BareNewline = "reject"
)

// RelayQueue is relay.queue. The retry schedule is not here: it is the
// top-level queue.retry, queue.notify and queue.expire.
type RelayQueue struct {
	// MaxMessages is the most messages the spool holds; beyond it MAIL
	// is answered 452 4.3.1.
	MaxMessages int
	// MinFreeSpace is the free space the spool's file system keeps;
	// below it MAIL is answered 452 4.3.1.
	MinFreeSpace FreeSpace
	// Workers is the most deliveries in flight, all destinations.
	Workers int
	// DestinationConcurrency is the most deliveries in flight to one
	// destination (recipient phase, evaluated per group).
	DestinationConcurrency *Value[int]
	// StartupSpread is the window over which the messages due when the
	// daemon starts are spread.
	StartupSpread time.Duration
	// ShutdownTimeout is how long a stopping daemon lets sessions and
	// deliveries finish.
	ShutdownTimeout time.Duration
	// StateSyncInterval is the period of the file-system sync of state
	// that is not synced at once.
	StateSyncInterval time.Duration
}

// FreeSpace is relay.queue.min-free-space: a percentage of the file
// system's size, or a number of bytes (one of the two is zero).
type FreeSpace struct {
	Percent float64
	Size    int64
}

// Min returns the free space to keep, in bytes, on a file system of
// total bytes.
func (f FreeSpace) Min(total int64) int64 {
	if f.Percent > 0 {
		return int64(float64(total) * f.Percent / 100)
	}
	return f.Size
}

// String writes f as the policy does: "5%", "2GiB", or "0".
func (f FreeSpace) String() string {
	if f.Percent > 0 {
		return strconv.FormatFloat(f.Percent, 'f', -1, 64) + "%"
	}
	return FormatSize(f.Size)
}

// RelayDSN is relay.dsn.
type RelayDSN struct {
	// From is the From header field of the DSNs the relay sends, with
	// {hostname} replaced by Relay.Hostname (the envelope sender of a
	// DSN is always <>).
	From string
	// FromTemplate is relay.dsn.from as written.
	FromTemplate string
	// ReturnLimit is how many bytes of the original message a DSN
	// returns at most; a larger message returns its header only.
	ReturnLimit int64
}

// Relay returns the relay: block. It is never nil: without the block,
// every relay setting has its default.
func (s *Set) Relay() *Relay { return &s.relay }

// Position returns where the relay setting at path is written
// ("relay.listeners[0].tls.cert", "relay.auth.users-file",
// "relay.networks[2]"; the "relay." may be left out). For a setting the
// policy does not write it gives the position of the nearest enclosing one
// that is written, and the zero Pos when there is none (the setting is at
// its default).
func (r *Relay) Position(path string) Pos {
	if !strings.HasPrefix(path, "relay.") {
		path = "relay." + path
	}
	for path != "" {
		if p, ok := r.at[path]; ok {
			return p
		}
		switch i := strings.LastIndexAny(path, ".["); {
		case i < 0:
			path = ""
		default:
			path = path[:i]
		}
	}
	return Pos{}
}

// Errorf makes an error positioned at the relay setting at path (see
// [Relay.Position]), for the problems the daemon finds with what the
// policy names: a certificate it cannot read, an address it cannot
// listen on. Without a position it names the policy file.
func (r *Relay) Errorf(path, format string, args ...any) *Error {
	if !strings.HasPrefix(path, "relay.") {
		path = "relay." + path
	}
	p := r.Position(path)
	if p.File == "" {
		p.File = r.file
	}
	return &Error{File: p.File, Line: p.Line, Column: p.Column, Setting: path, Message: fmt.Sprintf(format, args...)}
}

// InNetworks reports whether a client at addr may relay without AUTH:
// addr, unmapped (::ffff:192.0.2.1 is 192.0.2.1), is in relay.networks.
func (r *Relay) InNetworks(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range r.Networks {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// The defaults of the relay block.
const (
	defaultListenerName        = "mta"
	defaultMaxConnections      = 200
	defaultMaxConnectionsPerIP = 20
	// DefaultRelayMessageSize is the default of relay.limits.message-size
	// (Postfix's message_size_limit).
	DefaultRelayMessageSize = 10240000
)

// DefaultRelayAddress is the address of the default listener.
var DefaultRelayAddress = netip.MustParseAddrPort("127.0.0.1:10025")

func defaultListeners() []Listener {
	return []Listener{{Name: defaultListenerName, Address: DefaultRelayAddress, Mode: ModeSMTP,
		MaxConnections: defaultMaxConnections, MaxConnectionsPerIP: defaultMaxConnectionsPerIP}}
}

func defaultNetworks() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// relayFields declares the relay: block.
func relayFields() []Field {
	return []Field{
		{Path: "relay.listeners", Type: "list of listeners", Phase: "literal",
			Default: listenersDefaultText(),
			Doc: "The SMTP listeners of `postern relay`. Each has name (required, unique: logs, metrics and the listener variable), address (required: IP:PORT, [IPv6]:PORT; port 0: a free port), " +
				"mode (smtp: relays for relay.networks and authenticated clients, STARTTLS offered when tls is set; submission: RFC 6409, STARTTLS and then AUTH required before MAIL, needs tls and relay.auth; submissions: RFC 8314 implicit TLS, AUTH required, needs tls and relay.auth; default smtp), " +
				"tls ({cert: PATH, key: PATH}, PEM files relative to the policy's directory), proxy-protocol ({trusted: [PREFIX, ...]}: a PROXY protocol v1/v2 header is required from these peers, which gives the client's address, and connections from any other peer are refused), " +
				"max-connections (200) and max-connections-per-ip (20; more get 421 4.7.0; an IPv6 client counts by its /84 network, as Postfix does, since one host may hold a whole /64). AUTH is offered only over TLS. A listener that is not on a loopback address, or takes PROXY headers, is open to other machines: the open-relay guard applies (see The relay daemon).",
			Example: "relay:\n  listeners:\n    - name: mta\n      address: 127.0.0.1:10025\n    - name: submission\n      address: \"[::]:587\"\n      mode: submission\n      tls: {cert: /etc/postern/tls.crt, key: /etc/postern/tls.key}\n      max-connections-per-ip: 5",
			decode:  decodeListeners,
			node:    listenersNode,
			init:    func(s *Set, _ string) { s.relay.Listeners = defaultListeners() }},
		{Path: "relay.networks", Type: "list of IP prefixes", Phase: "literal", Default: `[127.0.0.0/8, "::1/128"]`,
			Doc:     "Clients that may relay without AUTH: prefixes (192.0.2.0/24, 2001:db8::/32) or single addresses, no bits set past the prefix length. A client's address is compared unmapped (::ffff:192.0.2.1 is 192.0.2.1), and an IPv4-mapped prefix stands for its IPv4 prefix. [] lets nobody relay without AUTH (unless a permit rule allows it).",
			Example: "relay:\n  networks: [127.0.0.0/8, \"::1/128\", 192.0.2.0/24]",
			decode:  decodeNetworks,
			node:    func(s *Set) *yaml.Node { return prefixesNode(s.relay.Networks) },
			init:    func(s *Set, _ string) { s.relay.Networks = defaultNetworks() }},
		literalField("relay.auth.users-file", pathKind, func(s *Set) *string { return &s.relay.Auth.UsersFile }, "",
			"The users of SMTP AUTH (RFC 4954): a file of user:HASH lines, HASH a bcrypt hash ($2a$, $2b$ or $2y$, as htpasswd -B writes), # comments; relative to the policy's directory. Empty: AUTH is off. `postern check` does not read it: the daemon reads it at start and again on reload (SIGHUP), and refuses to start when it cannot. AUTH is offered only over TLS; an authenticated client may relay (unless a permit rule says otherwise), and its identity is the authenticated_as variable.",
			storeUsersFile),
		literalField("relay.auth.mechanisms", mechanismsKind, func(s *Set) *[]string { return &s.relay.Auth.Mechanisms }, []string{"plain", "login"},
			"SASL mechanisms offered: plain (RFC 4616) and login. At least one. Used only with users-file.", storeMechanisms),
		literalField("relay.auth.max-failures", intKind(1, 100), func(s *Set) *int { return &s.relay.Auth.MaxFailures }, 3,
			"Failed AUTH attempts per session: the failure that reaches this number is answered 421 4.7.0 and the session closed. Besides, a client address (an IPv6 one by its /84 network) with more than 10 failures in a minute gets 454 4.7.0 for AUTH until the minute ends."),
		permitField(),
		literalField("relay.limits.message-size", messageSizeKind, func(s *Set) *int64 { return &s.relay.Limits.MessageSize }, DefaultRelayMessageSize,
			"Largest message accepted, in bytes: advertised with SIZE (RFC 1870); a MAIL command declaring more, or a message growing past it, is refused with 552 5.3.4."),
		literalField("relay.limits.recipients", intKind(1, 100000), func(s *Set) *int { return &s.relay.Limits.Recipients }, 1000,
			"RCPT commands accepted per message; more are answered 452 4.5.3 (the client sends them in another transaction)."),
		literalField("relay.limits.hops", intKind(1, 1000), func(s *Set) *int { return &s.relay.Limits.Hops }, 100,
			"A message whose header already has this many Received fields is refused with 554 5.4.6 (a mail loop, RFC 5321 section 6.3)."),
		literalField("relay.limits.bare-newline", bareNewlineKind, func(s *Set) *BareNewline { return &s.relay.Limits.BareNewline }, BareNewlineNormalize,
			"A bare LF or CR in a message (SMTP smuggling): normalize turns it into CRLF; reject refuses the message with 550 5.5.2 and closes the session."),
		literalField("relay.limits.command-timeout", positiveDurationKind, func(s *Set) *time.Duration { return &s.relay.Limits.CommandTimeout }, 5*time.Minute,
			"How long the relay waits for a client's next command or data line before it closes the session (RFC 5321 section 4.5.3.2)."),
		literalField("relay.queue.max-messages", intKind(1, 100000000), func(s *Set) *int { return &s.relay.Queue.MaxMessages }, 100000,
			"Messages the spool may hold; when it is full, MAIL is answered 452 4.3.1 until deliveries make room."),
		literalField("relay.queue.min-free-space", freeSpaceKind, func(s *Set) *FreeSpace { return &s.relay.Queue.MinFreeSpace }, FreeSpace{Percent: 5},
			"Free space the spool's file system keeps, as a percentage of its size (5%) or a size (2GiB); 0: no floor. Below it MAIL is answered 452 4.3.1 and /readyz reports not ready."),
		literalField("relay.queue.workers", intKind(1, 10000), func(s *Set) *int { return &s.relay.Queue.Workers }, 100,
			"Deliveries in flight at once, all destinations together."),
		valueField("relay.queue.destination-concurrency", intKind(1, 10000), expr.Recipient, constant(20), func(s *Set) **Value[int] { return &s.relay.Queue.DestinationConcurrency },
			"Deliveries in flight at once to one destination (a recipient domain, or the relay of a relay route); the others wait in the queue. Evaluated per group when it is dispatched, so route and route_type are available. The throttles of limits.throttles apply as well.",
			"relay:\n  queue:\n    destination-concurrency:\n      - if: route_type == \"relay\"\n        then: 50\n      - else: 10", valueOpts{extra: routeVars}, nil),
		literalField("relay.queue.startup-spread", durationKind, func(s *Set) *time.Duration { return &s.relay.Queue.StartupSpread }, time.Minute,
			"The messages due when the daemon starts are spread evenly over this window, so that a restart after an outage does not open every connection at once. 0: all at once."),
		literalField("relay.queue.shutdown-timeout", positiveDurationKind, func(s *Set) *time.Duration { return &s.relay.Queue.ShutdownTimeout }, 30*time.Second,
			"On SIGTERM or SIGINT, how long sessions inside DATA and deliveries in flight may finish before they are cut off (a cut-off message is never acknowledged; a cut-off delivery is retried)."),
		literalField("relay.queue.state-sync-interval", positiveDurationKind, func(s *Set) *time.Duration { return &s.relay.Queue.StateSyncInterval }, time.Second,
			"Period of the file-system sync of the queue state that is not synced at once (attempt counts, next-attempt times). Accepted messages are synced before they are acknowledged, whatever this says."),
		literalField("relay.dsn.from", dsnFromKind, func(s *Set) *string { return &s.relay.DSN.FromTemplate }, "MAILER-DAEMON@{hostname}",
			"From header field of the delivery status notifications (RFC 3464) the relay sends: an address, optionally with a display name (Mail Delivery System <MAILER-DAEMON@{hostname}>); {hostname} is replaced by hostname. The envelope sender of a DSN is always <>."),
		literalField("relay.dsn.return-limit", sizeKind[int64](0, 1<<30), func(s *Set) *int64 { return &s.relay.DSN.ReturnLimit }, 50000,
			"Largest original message a DSN returns whole, in bytes (Postfix's bounce_size_limit); a larger one, or one sent with RET=HDRS, returns its header only. 0: always the header only."),
	}
}

// listenersDefaultText is relay.listeners' default as YAML.
func listenersDefaultText() string {
	n := listenersNode(&Set{relay: Relay{Listeners: defaultListeners()}})
	n.Style = yaml.FlowStyle
	for _, c := range n.Content {
		c.Style = yaml.FlowStyle
	}
	out, _ := yaml.Marshal(n)
	return string(trimNL(out))
}

// finishRelay works out what follows from the whole policy: the host
// name, the DSN sender, the positions of the relay settings.
func finishRelay(d *decoder, s *Set) {
	r := &s.relay
	r.file, r.lists = d.file, s.Lists
	if h, ok := s.Hostname.Literal(); ok {
		r.Hostname = h
	} else {
		r.Hostname = s.Hostname.Default()
	}
	r.DSN.From = strings.ReplaceAll(r.DSN.FromTemplate, "{hostname}", r.Hostname)
	if r.at == nil {
		r.at = map[string]Pos{}
	}
	for path, n := range d.literalAt {
		if strings.HasPrefix(path, "relay.") {
			r.at[path] = d.pos(n)
		}
	}
	if p := r.Queue.DestinationConcurrency.At(); p.Line > 0 {
		r.at["relay.queue.destination-concurrency"] = p
	}
}
