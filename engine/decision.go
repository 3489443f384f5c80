package engine

import (
	"net/netip"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/dane"
	"github.com/postern-mta/postern/transport/mtasts"
)

// Message is what the engine needs to know about a message: its envelope
// and the recipient-phase variables of section 4 of the policy format.
type Message struct {
	// ID is the embedder's name for the message (its queue ID): every log
	// line and OnAttempt call about the message carries it.
	ID   string
	From string   // return path; "" for the null sender <>
	To   []string // recipients, in envelope order
	Size int      // bytes

	Priority        int
	RetryNum        int
	NotifyNum       int
	ExpiresIn       int // seconds
	LastError       string
	LastStatus      string
	QueueName       string
	QueueAge        int // seconds
	Source          string
	ReceivedFromIP  string
	ReceivedViaPort int
	AuthenticatedAs string
	// Meta are embedder-supplied values, meta["key"] in expressions.
	Meta map[string]string

	// Delivery parameters ([Engine.Deliver] only).
	RequireTLS bool // REQUIRETLS (RFC 8689)
	// SMTPUTF8 says the message was received with SMTPUTF8 (RFC 6531):
	// its header may hold UTF-8, so it is sent with SMTPUTF8, and a server
	// that does not offer it is passed over (5.6.7). It is implied when
	// the sender or a recipient address is not ASCII.
	SMTPUTF8 bool
	Ret      transport.DSNReturn   // DSN RET: full message or headers (RFC 3461)
	EnvID    string                // DSN ENVID
	Notify   transport.NotifyFlags // DSN NOTIFY for every recipient without one of its own
	// RcptDSN are the DSN parameters of each recipient (RFC 3461), by
	// position in To; a recipient without an entry takes Notify and
	// sends no ORCPT.
	RcptDSN []RcptDSN
	// TLSRequiredNo says the message's header has "TLS-Required: No"
	// (RFC 8689 section 5): the sender asks that the recipient domain's
	// TLS policies (DANE, MTA-STS) not stop delivery; TLS is still used
	// when offered, and the policy's own tls.starttls still applies.
	// REQUIRETLS wins over it. [Engine.Deliver] sets it from the body's
	// header.
	TLSRequiredNo bool
}

// RcptDSN are one recipient's DSN parameters (RFC 3461 section 4).
type RcptDSN struct {
	// Notify is the recipient's NOTIFY; zero means Message.Notify.
	Notify transport.NotifyFlags
	// ORcpt is the original recipient address (ORCPT), sent as
	// rfc822;ADDRESS when the server offers DSN, and the
	// Original-Recipient of the DSNs about the recipient.
	ORcpt string
}

// dsnOf returns the DSN parameters of recipient i of m: its own, with
// Message.Notify when it has none.
func (m *Message) dsnOf(i int) RcptDSN {
	var p RcptDSN
	if i >= 0 && i < len(m.RcptDSN) {
		p = m.RcptDSN[i]
	}
	if p.Notify == 0 {
		p.Notify = m.Notify
	}
	return p
}

// Outcome is what happens to a group.
type Outcome string

// The outcomes of a group.
const (
	OutcomeDeliver Outcome = "deliver" // hosts to try
	OutcomeLocal   Outcome = "local"   // handed back to the embedding MTA
	OutcomeFail    Outcome = "fail"    // permanent failure
	OutcomeDefer   Outcome = "defer"   // temporary failure: try again later
)

// Decision is the engine's answer for one message: the recipients grouped
// as they would be delivered (one SMTP transaction per group).
type Decision struct {
	Policy  string      `json:"policy"`
	Message MessageInfo `json:"message"`
	Groups  []*Group    `json:"groups"`
}

// MessageInfo echoes the envelope.
type MessageInfo struct {
	Sender     string   `json:"sender"`
	Recipients []string `json:"recipients"`
	Size       int      `json:"size"`
}

// Group is a set of recipients with the same domain and route.
type Group struct {
	Domain     string      `json:"domain"`
	Route      RouteInfo   `json:"route"`
	Recipients []string    `json:"recipients"`
	Outcome    Outcome     `json:"outcome"`
	Error      *GroupError `json:"error"`
	MTASTS     MTASTSInfo  `json:"mta_sts"`
	// Site is the provider the group's mail goes to (the site variable):
	// a limits.sites name, or the MX rollup; "" before DNS.
	Site string `json:"site,omitempty"`
	// Limits settled for the group.
	Limits GroupLimits `json:"limits"`
	// Schedule is the retry schedule (queue.*) of a group that is not
	// local; nil for local groups and groups that failed before it.
	Schedule *Schedule `json:"schedule,omitempty"`
	// Hosts in the order they would be tried, cut at limits.mx.
	Hosts     []*Host        `json:"hosts"`
	Throttles []ThrottleInfo `json:"throttles"`
	// Lookups are the DNS questions asked for this group (with trace).
	Lookups []DNSQuery `json:"dns,omitempty"`
	// Trace lists every rule evaluated for this group, in order.
	Trace []policies.TraceEntry `json:"trace"`

	route     *policies.Route // the route taken; nil when routing failed
	wire      []string        // Recipients in canonical form, for the transport
	literal   netip.Addr      // the address of an address-literal domain
	badSender bool            // failed because the reverse-path does not parse
}

// GroupError explains a fail or defer outcome.
type GroupError struct {
	Temporary bool            `json:"temporary"`
	Class     transport.Class `json:"class"` // a last_error word
	Message   string          `json:"message"`
}

// RouteInfo describes the route of a group. Secrets are never included:
// Auth shows where the secret comes from.
type RouteInfo struct {
	Name        string             `json:"name"`
	Type        policies.RouteType `json:"type"`
	Address     string             `json:"address,omitempty"`
	Port        int                `json:"port,omitempty"`
	Protocol    string             `json:"protocol,omitempty"`
	ImplicitTLS bool               `json:"implicit_tls,omitempty"`
	Auth        *AuthInfo          `json:"auth,omitempty"`
}

// AuthInfo is a relay's user name and the source of its secret.
type AuthInfo struct {
	Username string `json:"username"`
	Secret   string `json:"secret"` // "<from env NAME>", never the value
}

// MTASTSInfo is the MTA-STS setting and what was found (RFC 8461).
type MTASTSInfo struct {
	Setting string `json:"setting"`
	// Record is the _mta-sts TXT record when one was looked up and found.
	Record string `json:"record,omitempty"`
	// Policy is the policy in force for the domain: fetched, or from the
	// cache; null when there is none.
	Policy *MTASTSPolicy `json:"policy"`
	// Error says why there is no policy, or, next to a cached policy,
	// why it could not be refreshed.
	Error string `json:"error,omitempty"`

	policy *mtasts.Policy // Policy, for matching hosts
	failed string         // the TLS-RPT result type of Error
}

// MTASTSPolicy is an MTA-STS policy as the dry-run shows it.
type MTASTSPolicy struct {
	ID     string   `json:"id"`
	Mode   string   `json:"mode"`
	MX     []string `json:"mx"`
	MaxAge Duration `json:"max_age"`
	// Source is "network" (fetched for this decision), "cache" (a cached
	// copy, fetched earlier) or "file" (resolver: static's policy files).
	Source string `json:"source"`
	// Age is how long ago the policy was fetched.
	Age Duration `json:"age"`
}

// GroupLimits are the per-group limits.
type GroupLimits struct {
	MX         int `json:"mx"`
	Recipients int `json:"recipients"`
}

// Host is one MX host (or the relay) with its settings.
type Host struct {
	Name       string          `json:"name"`
	Preference int             `json:"preference"`
	Secure     bool            `json:"mx_secure"`
	IPLookup   policies.Lookup `json:"ip_lookup"`
	// Addresses are tried in this order, cut at limits.multihomed.
	Addresses []netip.Addr `json:"addresses"`
	// Dropped are the addresses DNS gave that are never connected to for
	// an MX host (loopback, link-local, ...; private ones with
	// ip-strategy.refuse-private), each with the reason.
	Dropped []string `json:"dropped,omitempty"`
	// Skipped says why the host would be passed over; nil when it is
	// tried.
	Skipped               *string      `json:"skipped"`
	SkipTemporary         bool         `json:"skip_temporary,omitempty"`
	TLS                   HostTLS      `json:"tls"`
	EHLOHostname          string       `json:"-"`
	SourceIPs             []netip.Addr `json:"source_ips,omitempty"`
	MessagesPerConnection int          `json:"messages_per_connection"`
	Connections           []*Connect   `json:"connections"`

	skipClass transport.Class // last_error class of the reason in Skipped
	// skipTLSRPT is the TLS-RPT result type of an engine-side skip
	// (dane-required, dnssec-invalid, ...), "" for other skips.
	skipTLSRPT string
	verifier   *dane.Verifier // DANE is active
	stsEnforce bool           // an MTA-STS enforce policy lists the host
	anyCert    bool           // TLS required without authentication (unusable TLSA records)
	daneWord   string         // the DANE decision, as the metrics count it
}

// HostTLS are the TLS settings of a host, and what delivery will do.
type HostTLS struct {
	STARTTLS          policies.TLSMode    `json:"starttls"`
	DANE              policies.TLSMode    `json:"dane"`
	AllowInvalidCerts bool                `json:"allow_invalid_certs"`
	MinVersion        policies.TLSVersion `json:"min_version"`
	HandshakeTimeout  Duration            `json:"handshake_timeout"`
	// Required says TLS is mandatory for this host (no byte of the
	// message in plaintext): tls.starttls require, DANE, an MTA-STS
	// enforce policy, TLSA records that are all unusable, or REQUIRETLS.
	Required bool `json:"required"`
	// Verify is how the certificate is checked: "dane" (TLSA records, in
	// place of PKIX), "mta-sts" (PKIX, mandatory by an enforce policy),
	// "pkix", "none" (TLS without authentication) or "opportunistic"
	// (PKIX tried; a failure is kept as a warning).
	Verify string `json:"verify"`
	// DANEState says whether DANE is active for the host, and why.
	DANEState DANEInfo `json:"dane_state"`
	// MTASTS is how the domain's MTA-STS policy treats the host: "" (no
	// policy, or DANE takes precedence), "enforce", "testing",
	// "testing, not listed".
	MTASTS string `json:"mta_sts,omitempty"`
}

// DANEInfo is the DANE decision for a host (RFC 7672 section 2.2).
type DANEInfo struct {
	Active bool `json:"active"`
	// Reason says why DANE is, or is not, active.
	Reason string `json:"reason"`
	// Base is the TLSA base domain (also the name sent in SNI) when TLSA
	// records were used; Names are the names a DANE-TA certificate may
	// carry.
	Base  string   `json:"tlsa_base,omitempty"`
	Names []string `json:"names,omitempty"`
	// Records are the TLSA records found, each with its usability.
	Records []TLSARecord `json:"records,omitempty"`
}

// TLSARecord is one TLSA record in presentation form, and whether DANE
// can use it (RFC 7672 section 3.1.3).
type TLSARecord struct {
	Record   string `json:"record"`
	Usable   bool   `json:"usable"`
	Unusable string `json:"unusable,omitempty"` // why not
}

// Connect is one address of a host, with its connection-phase settings.
type Connect struct {
	RemoteIP netip.Addr `json:"remote_ip"`
	// SourceIP is the local address to bind; nil when the kernel chooses.
	SourceIP     *netip.Addr `json:"source_ip"`
	EHLOHostname string      `json:"ehlo_hostname"`
	Timeouts     Timeouts    `json:"timeouts"`

	throttles []throttleRef // connection-level throttles delivery acquires first
	source    netip.Addr    // where SourceIP points (one allocation for both)
}

// Timeouts are the per-command timeouts of a connection, as durations in
// Go's format.
type Timeouts struct {
	Connect  Duration `json:"connect"`
	Greeting Duration `json:"greeting"`
	EHLO     Duration `json:"ehlo"`
	MailFrom Duration `json:"mail_from"`
	RcptTo   Duration `json:"rcpt_to"`
	Data     Duration `json:"data"`
}

// Duration is a time.Duration written in Go's format ("5m0s") in JSON and
// text output.
type Duration time.Duration

// String returns Go's format.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes Go's format.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ThrottleInfo is a throttle that applies to the group.
type ThrottleInfo struct {
	Name        string        `json:"name"`
	Key         string        `json:"key"`
	Concurrency int           `json:"concurrency,omitempty"`
	Rate        policies.Rate `json:"rate,omitzero"`
	InUse       int           `json:"in_use"`
	WouldWait   Duration      `json:"would_wait"`
	// Phase is "recipient" (checked per group before DNS), "site"
	// (per group after the MX lookup: the key has site) or "connection"
	// (checked per connection; Key is then shown for the first address).
	Phase string `json:"phase"`
	// Recipient is set for a throttle whose key has rcpt: it is counted
	// per recipient, and listed once for each.
	Recipient string `json:"recipient,omitempty"`
	// PerMessage is set for a throttle keyed only by the sender: it is
	// counted once per message, whatever the number of groups.
	PerMessage bool `json:"per_message,omitempty"`
	// StoreError says why the store could not tell the use (dry-run).
	StoreError string `json:"store_error,omitempty"`

	ref throttleRef // the throttle and its key, for delivery
}

// DNSQuery is one DNS question and its answer, for the trace.
type DNSQuery struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Answer []string `json:"answer"`
	Secure bool     `json:"secure"`
	Cached bool     `json:"cached"`
	Stale  bool     `json:"stale,omitempty"`
	TTL    string   `json:"ttl,omitempty"`
	Error  string   `json:"error,omitempty"`
}
