package policies

import (
	"net/netip"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
)

// Set is a compiled policy. It is immutable once loaded and safe for
// concurrent use.
type Set struct {
	// File is the policy's path as given to [LoadFile] (or the name given
	// to [Parse]); positions in errors and traces use it.
	File string
	// Dir is the directory relative paths in the file are resolved from.
	Dir string

	Hostname     *Value[string] // default EHLO/LHLO name, host phase
	LocalDomains []string
	Lists        map[string][]string

	Route  *Value[string]    // routing.route, recipient phase
	Routes map[string]*Route // named routes, including mx and local

	TLS        TLS
	IPStrategy IPStrategy
	Limits     Limits
	Queue      Queue
	DNS        DNS

	// Warnings found while loading: a literal secret, a rule that can
	// never be reached, an unused list or route.
	Warnings []*Warning

	lib   *expr.Library
	relay Relay // the relay: block, see Relay
}

// Library returns the function library bound to the policy's lists and
// local domains, for building an [expr.Env].
func (s *Set) Library() *expr.Library { return s.lib }

// TLS holds the tls: section.
type TLS struct {
	MTASTS            *Value[TLSMode]    // recipient phase (route available)
	DANE              *Value[TLSMode]    // host phase
	STARTTLS          *Value[TLSMode]    // host phase
	AllowInvalidCerts *Value[bool]       // host phase
	MinVersion        *Value[TLSVersion] // host phase
	HandshakeTimeout  *Value[time.Duration]
	MTASTSTimeout     *Value[time.Duration]
	// MTASTSCache is the directory (absolute) of the MTA-STS policy
	// cache that survives restarts (tls.mta-sts-cache); "" keeps
	// policies in memory only.
	MTASTSCache string
}

// DefaultMTASTSTimeout is the default of tls.timeouts.mta-sts.
const DefaultMTASTSTimeout = 5 * time.Minute

// IPStrategy holds the ip-strategy: section.
type IPStrategy struct {
	Lookup       *Value[Lookup]       // host phase
	SourceIPs    *Value[[]netip.Addr] // host phase
	EHLOHostname *Value[string]       // connection phase; "" means use hostname
	// RefusePrivate drops private addresses (RFC 1918, RFC 6598 shared,
	// IPv6 unique-local and site-local) of MX hosts; host phase.
	RefusePrivate *Value[bool]
}

// Timeouts are the per-command SMTP timeouts (connection phase).
type Timeouts struct {
	Connect  *Value[time.Duration]
	Greeting *Value[time.Duration]
	EHLO     *Value[time.Duration]
	MailFrom *Value[time.Duration]
	RcptTo   *Value[time.Duration]
	Data     *Value[time.Duration]
}

// Limits holds the limits: section.
// Queue holds the queue: section, the retry schedule the embedding MTA's
// queue follows (recipient phase, evaluated per group).
type Queue struct {
	// Retry are the waits after a temporary failure: the first after the
	// first attempt, and so on (retry_num picks it); the last repeats.
	Retry *Value[[]time.Duration]
	// Notify are the times since the message was queued at which a
	// delay notification is due, one each (notify_num picks it).
	Notify *Value[[]time.Duration]
	// Expire is how long a message may stay queued: after it, temporary
	// failures are permanent.
	Expire *Value[time.Duration]
}

type Limits struct {
	MX                    *Value[int] // recipient phase
	Multihomed            *Value[int] // host phase
	Recipients            *Value[int] // recipient phase
	MessagesPerConnection *Value[int] // host phase
	Timeouts              Timeouts
	Throttles             []*Throttle
	// Sites name providers by their MX hosts (limits.sites), for the
	// site throttle key and variable.
	Sites []Site
	// NeedSite is set when something uses the site of a group: a
	// limits.sites entry, a throttle keyed by site, or an expression
	// reading site. Otherwise the engine does not work it out.
	NeedSite bool
	// Store is "memory" or a Redis URL: redis:// or rediss:// (TLS),
	// HOST:PORT (several, comma-separated, for a Cluster), /DB; never
	// with a password.
	Store string
	// StorePassword is the Redis password (limits.store.password), a
	// secret; zero for none.
	StorePassword Secret
	// StoreCluster makes the Redis store a Cluster client even with one
	// seed address (limits.store.cluster).
	StoreCluster bool
	// StoreLeaseTTL is how long a Redis concurrency lease outlives a
	// process that stopped renewing it (limits.store.lease-ttl); zero for
	// the store's default (30s).
	StoreLeaseTTL time.Duration
	// OnStoreError is what a delivery does when the store cannot be
	// reached: "defer" (the default) or "allow" (go on unthrottled).
	OnStoreError string
	// Expressions bounds every expression of the policy
	// (limits.expressions): size and nesting when it loads, the
	// evaluation budget when it runs.
	Expressions expr.Limits
	// MaxFileSize bounds the files the policy names: lists, the zone
	// file, secret files (limits.max-file-size).
	MaxFileSize int64
}

// Site is one entry of limits.sites: a provider's name and the patterns
// of its MX hosts (a host name, or "*.DOMAIN" for any name under DOMAIN),
// lower-case, without a trailing dot.
type Site struct {
	Name     string
	Patterns []string
}

// Matches reports whether host, lower-case without a trailing dot, is
// one of the site's MX hosts.
func (s Site) Matches(host string) bool {
	for _, p := range s.Patterns {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if strings.HasSuffix(host, suffix) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}

// Route is a named route of routing.routes.
type Route struct {
	Name string
	Type RouteType
	// Relay settings (Type == RouteRelay).
	Address            string // host name or IP literal
	AddressIP          netip.Addr
	Port               int
	Protocol           string // smtp or lmtp
	ImplicitTLS        bool
	AllowInvalidCerts  bool
	AllowPlaintextAuth bool
	Auth               *Auth
	At                 Pos
}

// Auth is a relay's credentials. The secret is a [Secret]: its value is
// read only when needed and never printed.
type Auth struct {
	Username string
	Secret   Secret
}

// Throttle is one entry of limits.throttles.
type Throttle struct {
	Name        string
	Match       *expr.Program // nil: always applies
	Key         []string
	Concurrency int
	Rate        Rate
	// Phase is when the throttle is checked: recipient (per group, before
	// DNS) unless the key uses mx, remote_ip or local_ip (connection).
	Phase expr.Phase
	// AfterMX marks a recipient-phase throttle keyed by site: it is
	// checked per group after the MX lookup, and its match may use site.
	AfterMX bool
	// PerMessage marks a throttle keyed only by sender and/or
	// sender_domain: counted once per message, whatever its groups.
	PerMessage bool
	At         Pos
}

// DNS holds the dns: section. It is literal-only: the resolver exists
// before any message does.
type DNS struct {
	Resolver string // system | custom | cloudflare | google | quad9 | static
	Servers  []string
	ZoneFile string // absolute, for static
	// ZoneFileAt is where the policy names the zone file, for errors
	// found when the zone is read.
	ZoneFileAt Pos
	Secure     bool // static answers are DNSSEC-authenticated
	// MTASTSPolicies is the directory (absolute) of the MTA-STS policy
	// files DOMAIN.txt that stand in for HTTPS fetches with resolver:
	// static (dns.mta-sts-policies); "" for none.
	MTASTSPolicies string
	Timeout        time.Duration
	Attempts       int
	// TimeoutSet and AttemptsSet say the policy wrote timeout and
	// attempts; with resolver: system, unset ones come from resolv.conf's
	// options.
	TimeoutSet  bool
	AttemptsSet bool
	Concurrency int
	// Budget bounds the time all the DNS lookups of one evaluation (one
	// message) may take together.
	Budget     time.Duration
	TCPOnError bool
	EDNS       bool
	DNSSEC     bool
	Cache      DNSCache
}

// DNSCache holds dns.cache.
type DNSCache struct {
	Size        int
	MinTTL      time.Duration
	MaxTTL      time.Duration
	NegativeTTL time.Duration
}

// Pos is a position in a policy file; String renders "file:line:col".
type Pos = expr.Position

// defaultFile names the source of compiled defaults in positions.
const defaultFile = expr.DefaultFile
