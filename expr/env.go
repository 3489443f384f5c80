package expr

import (
	"fmt"
	"slices"
	"strings"
)

// Phase is the moment a setting is evaluated. Each phase adds variables; a
// later phase sees the variables of the earlier ones.
type Phase uint8

// The phases, in the order delivery reaches them.
const (
	// Recipient: per recipient, before any DNS lookup.
	Recipient Phase = iota
	// Host: per MX host or relay, after routing.
	Host
	// Connection: per remote address, before connecting.
	Connection
	// Session: per RCPT command while the relay daemon receives a message
	// over SMTP (RFC 5321), before the message is queued: relay.permit.
	// It stands apart from the delivery phases above: it sees the
	// variables the session knows — a few of the recipient phase's, see
	// [SessionVariables], and its own (listener, tls) — and no others.
	Session
)

// String returns the phase's name as used in policies and traces.
func (p Phase) String() string {
	switch p {
	case Recipient:
		return "recipient"
	case Host:
		return "host"
	case Connection:
		return "connection"
	case Session:
		return "session"
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Funcs is the function library as seen by expressions. Each field is
// called like a function (`is_local_domain(rcpt_domain)`). [Library.Funcs]
// fills it; an embedder may replace IsLocalDomain and IsLocalAddress with
// its own answers.
type Funcs struct {
	IsLocalDomain  func(domain string) bool          `expr:"is_local_domain"`
	IsLocalAddress func(address string) bool         `expr:"is_local_address"`
	InList         func(list, value string) bool     `expr:"in_list"`
	EmailPart      func(address, part string) string `expr:"email_part"`
	IsIPInCIDR     func(ip, cidr string) bool        `expr:"is_ip_in_cidr"`
	IsIPv4         func(ip string) bool              `expr:"is_ipv4"`
	IsIPv6         func(ip string) bool              `expr:"is_ipv6"`
	DomainMatches  func(domain, pattern string) bool `expr:"domain_matches"`
}

// Env is the variable environment of every phase. The zero value is a valid
// environment with every variable empty, but its functions are nil: call
// [Library.Funcs] (or set Funcs) before evaluating.
//
// Domains are lower-case without a trailing dot; IPs are in canonical text
// form; durations are integer seconds.
type Env struct {
	Funcs

	// Recipient phase.
	Sender          string            `expr:"sender"`
	SenderDomain    string            `expr:"sender_domain"`
	Rcpt            string            `expr:"rcpt"`
	RcptDomain      string            `expr:"rcpt_domain"`
	Recipients      []string          `expr:"recipients"`
	Size            int               `expr:"size"`
	Priority        int               `expr:"priority"`
	RetryNum        int               `expr:"retry_num"`
	NotifyNum       int               `expr:"notify_num"`
	ExpiresIn       int               `expr:"expires_in"`
	LastError       string            `expr:"last_error"`
	LastStatus      string            `expr:"last_status"`
	QueueName       string            `expr:"queue_name"`
	QueueAge        int               `expr:"queue_age"`
	Source          string            `expr:"source"`
	ReceivedFromIP  string            `expr:"received_from_ip"`
	ReceivedViaPort int               `expr:"received_via_port"`
	AuthenticatedAs string            `expr:"authenticated_as"`
	Meta            map[string]string `expr:"meta"`

	// Host phase.
	Route        string `expr:"route"`
	RouteType    string `expr:"route_type"`
	MX           string `expr:"mx"`
	MXPreference int    `expr:"mx_preference"`
	MXSecure     bool   `expr:"mx_secure"`
	Site         string `expr:"site"`

	// Connection phase.
	RemoteIP string `expr:"remote_ip"`
	LocalIP  string `expr:"local_ip"`

	// Session phase (relay.permit), besides [SessionVariables] of the
	// recipient phase.
	Listener string `expr:"listener"`
	TLS      bool   `expr:"tls"`

	// Meter is set by each run of a [Program] to its VM's meter, which
	// charges the evaluation budget; leave it alone.
	Meter *Meter `expr:"__meter"`
}

// Variable describes one variable of [Env].
type Variable struct {
	Name  string
	Phase Phase
	Type  string // expr-lang type as written in docs: string, int, bool, list of strings, map of strings
	Doc   string
}

// Variables lists every variable, in phase order. It drives phase checking,
// `--var` parsing and docs/variables.md.
var Variables = []Variable{
	{"sender", Recipient, "string", "Return path (MAIL FROM) address; \"\" for the null sender <>."},
	{"sender_domain", Recipient, "string", "Domain of the return path; \"\" for the null sender."},
	{"rcpt", Recipient, "string", "The recipient address being decided."},
	{"rcpt_domain", Recipient, "string", "Domain of the recipient, lower-case, no trailing dot."},
	{"recipients", Recipient, "list of strings", "Every recipient of the message."},
	{"size", Recipient, "int", "Message size in bytes."},
	{"priority", Recipient, "int", "Message priority (RFC 6710 MT-PRIORITY), 0 when absent."},
	{"retry_num", Recipient, "int", "Delivery attempts already made for this recipient."},
	{"notify_num", Recipient, "int", "Delay notifications (DSN) already sent for this recipient."},
	{"expires_in", Recipient, "int", "Seconds until the message expires from the queue."},
	{"last_error", Recipient, "string", "Class of the previous attempt's failure: none, dns, connection, tls, dane, mta-sts, unexpected-reply, rate, concurrency, io, loop, policy, store, or expired (loop: the next hop is this MTA itself; policy: the policy itself failed, a route expression error or an unreadable secret; store: the throttle store could not be reached; expired: the message stayed queued longer than queue.expire)."},
	{"last_status", Recipient, "string", "SMTP reply of the previous attempt (e.g. \"451 4.7.1 try later\"), \"\" when none."},
	{"queue_name", Recipient, "string", "Name of the queue the message is in (embedder-defined)."},
	{"queue_age", Recipient, "int", "Seconds since the message was queued."},
	{"source", Recipient, "string", "How the message arrived: authenticated, dmarc_pass, unauthenticated, dsn, report, autogenerated, unknown."},
	{"received_from_ip", Recipient, "string", "IP address the message was received from."},
	{"received_via_port", Recipient, "int", "Local port the message was received on."},
	{"authenticated_as", Recipient, "string", "SASL identity of the submitter, \"\" when not authenticated."},
	{"meta", Recipient, "map of strings", "Embedder-supplied values: meta[\"tenant\"] or meta.tenant; \"\" when absent."},
	{"route", Host, "string", "Name of the chosen route (also available to the recipient-phase settings decided per group: tls.mta-sts, tls.timeouts.mta-sts, limits.mx, limits.recipients, and throttles)."},
	{"route_type", Host, "string", "Type of the chosen route: mx, relay or local (available where route is)."},
	{"mx", Host, "string", "Host name being tried (MX host or relay address), no trailing dot."},
	{"mx_preference", Host, "int", "MX preference of the host; 0 for relays and implicit MX."},
	{"mx_secure", Host, "bool", "The MX answer was DNSSEC-authenticated."},
	{"site", Host, "string", "The provider the recipient domain's mail goes to, known after the MX lookup (also available to the match of throttles keyed by site): the name of the first limits.sites entry with a pattern matching one of the domain's MX hosts, else those hosts' names, sorted and joined with commas (the MX rollup); for a relay route, the relay's address."},
	{"remote_ip", Connection, "string", "Address about to be connected to."},
	{"local_ip", Connection, "string", "Chosen source address, \"\" when the kernel chooses."},
	{"listener", Session, "string", "Name of the relay listener (relay.listeners) the client is connected to."},
	{"tls", Session, "bool", "The SMTP session is encrypted: STARTTLS succeeded, or the listener is submissions (implicit TLS)."},
}

// SessionVariables are the recipient-phase variables the session phase
// also knows: what the relay has learnt of the client, its
// authentication and the envelope by the time of a RCPT command.
var SessionVariables = []string{"sender", "sender_domain", "rcpt", "rcpt_domain", "received_from_ip", "authenticated_as"}

// KnownIn reports whether v may be used by a setting of phase p: a
// delivery phase sees its own variables and those of the earlier delivery
// phases; the session phase sees its own and [SessionVariables].
func (v Variable) KnownIn(p Phase) bool {
	if p == Session {
		return v.Phase == Session || slices.Contains(SessionVariables, v.Name)
	}
	return v.Phase <= p
}

// Function describes one function of [Funcs].
type Function struct {
	Name      string
	Signature string
	Doc       string
}

// Functions lists the function library, for docs/variables.md.
var Functions = []Function{
	{"is_local_domain", "is_local_domain(domain string) bool", "domain is one of `local-domains` (case-insensitive), or the embedding MTA says it is local."},
	{"is_local_address", "is_local_address(address string) bool", "The embedding MTA's answer; false when it gives none."},
	{"in_list", "in_list(name string, value string) bool", "value is in the list `name` of `lists:` (case-insensitive). `name` must be a string literal naming a defined list: an unknown name is a load error."},
	{"email_part", "email_part(address string, part string) string", "`part` is \"local\" or \"domain\" (checked at load when literal); the domain part is lower-cased; \"\" when the address has no @."},
	{"is_ip_in_cidr", "is_ip_in_cidr(ip string, cidr string) bool", "ip is inside the prefix (\"192.0.2.0/24\", \"2001:db8::/32\"; a bare IP means that one address). A literal CIDR that does not parse is a load error; false when ip is not an IP."},
	{"is_ipv4", "is_ipv4(ip string) bool", "ip is an IPv4 address (IPv4-mapped IPv6 counts as IPv4)."},
	{"is_ipv6", "is_ipv6(ip string) bool", "ip is an IPv6 address (not IPv4-mapped)."},
	{"domain_matches", "domain_matches(domain string, pattern string) bool", "Case-insensitive match where pattern is a domain (\"example.com\": that domain only) or \"*.example.com\" (any subdomain, not example.com itself). A literal pattern that is not a domain is a load error."},
}

var varIndex = func() map[string]*Variable {
	m := make(map[string]*Variable, len(Variables))
	for i := range Variables {
		m[Variables[i].Name] = &Variables[i]
	}
	return m
}()

// LookupVariable returns the description of the variable called name.
func LookupVariable(name string) (Variable, bool) {
	v, ok := varIndex[name]
	if !ok {
		return Variable{}, false
	}
	return *v, true
}

// VariablesOf returns the names of the variables available to a setting of
// phase p, sorted as in [Variables].
func VariablesOf(p Phase) []string {
	var out []string
	for _, v := range Variables {
		if v.KnownIn(p) {
			out = append(out, v.Name)
		}
	}
	return out
}

// Reset clears every variable of e, keeping Funcs and the capacity of
// Recipients.
func (e *Env) Reset() {
	f, r := e.Funcs, e.Recipients[:0]
	*e = Env{Funcs: f, Recipients: r}
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
