package policies

import (
	"net/netip"
	"time"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// Field documents one setting of the policy format. [Fields] lists them
// all; the loader, `postern check --print-defaults` and docs/policy.md are
// driven by the same list, so they cannot disagree.
type Field struct {
	Path    string // dotted path: "tls.starttls"
	Type    string // human description of the type
	Phase   string // recipient, host, connection, or "literal" for settings that cannot depend on the message
	Default string // the default, as YAML would write it
	Doc     string
	Example string // a YAML fragment, may be empty

	value  bool                                   // a Value: any of the four forms
	early  bool                                   // decoded before expressions (lists, routes)
	decode func(d *decoder, s *Set, n *yaml.Node) // reads the setting
	node   func(s *Set) *yaml.Node                // renders the setting's current value
	init   func(s *Set, hostname string)          // sets the default
	// compile compiles default rule lists (only routing.route has one).
	compile func(d *decoder, s *Set)
}

// IsValue reports whether the setting accepts the four Value forms
// (literal, list, rules, expression) rather than only a literal.
func (f Field) IsValue() bool { return f.value }

// Fields returns the schema of the policy format, in file order.
func Fields() []Field { return fields }

var fields []Field

// fieldIndex maps a path to its field; sectionKeys maps a section path to
// its child keys, in order.
var (
	fieldIndex  = map[string]*Field{}
	sectionKeys = map[string][]string{}
)

func init() {
	fields = buildFields()
	for i := range fields {
		f := &fields[i]
		fieldIndex[f.Path] = f
		parent, key := splitPath(f.Path)
		addKey(parent, key)
	}
}

func addKey(section, key string) {
	for _, k := range sectionKeys[section] {
		if k == key {
			return
		}
	}
	sectionKeys[section] = append(sectionKeys[section], key)
	if section != "" {
		p, k := splitPath(section)
		addKey(p, k)
	}
}

func splitPath(p string) (string, string) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '.' {
			return p[:i], p[i+1:]
		}
	}
	return "", p
}

// valueField declares a setting that is a Value[T].
func valueField[T any](path string, k *kind[T], phase expr.Phase, def func(host string) T, get func(*Set) **Value[T],
	doc, example string, o valueOpts, strictest *T) Field {
	return Field{
		Path: path, Type: k.name, Phase: phase.String(), Doc: doc, Example: example, value: true,
		Default: defaultText(k, def),
		init: func(s *Set, host string) {
			dv := def(host)
			v := &Value[T]{setting: path, phase: phase, k: k, def: dv, onError: dv}
			if strictest != nil {
				v.onError, v.strict = *strictest, true
			}
			*get(s) = v
		},
		decode: func(d *decoder, s *Set, n *yaml.Node) { decodeValue(d, n, *get(s), o) },
		node:   func(s *Set) *yaml.Node { return (*get(s)).Node() },
	}
}

func defaultText[T any](k *kind[T], def func(string) T) string {
	n := k.format(def("HOSTNAME"))
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		return "[]"
	}
	out, _ := yaml.Marshal(n)
	return string(trimNL(out))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return b
}

func constant[T any](v T) func(string) T { return func(string) T { return v } }

func ptr[T any](v T) *T { return &v }

func buildFields() []Field {
	return append([]Field{
		{Path: "version", Type: "integer: 1", Phase: "literal", Default: "(required)", early: true,
			Doc:  "Version of the policy format. Required; only 1 exists.",
			node: func(*Set) *yaml.Node { return itoaNode(1) }},
		withDefault(valueField("hostname", hostnameKind(false), expr.Host, func(h string) string { return h },
			func(s *Set) **Value[string] { return &s.Hostname },
			"Default EHLO/LHLO name.", "hostname: mta.example.org", valueOpts{}, nil), "the machine's host name"),
		{Path: "local-domains", Type: "list of domains", Phase: "literal", Default: "[]", early: true,
			Doc:     "Domains is_local_domain() answers true for (an embedding MTA may answer instead).",
			Example: "local-domains: [example.org, example.net]",
			decode:  decodeLocalDomains,
			node: func(s *Set) *yaml.Node {
				return flowList(s.LocalDomains)
			}},
		{Path: "lists", Type: "map of name to list of strings, or {file: PATH}", Phase: "literal", Default: "{}", early: true,
			Doc:     "Named string sets for in_list(NAME, value). A {file:} list has one entry a line; # starts a comment. Comparison is case-insensitive.",
			Example: "lists:\n  microsoft: [outlook.com, hotmail.com]\n  blocked: {file: lists/blocked.txt}",
			decode:  decodeLists,
			node:    func(s *Set) *yaml.Node { return listsNode(s) }},
		routeField(),
		{Path: "routing.routes", Type: "map of route name to route", Phase: "literal", Default: "{}", early: true,
			Doc:     "Named routes. mx and local always exist. A route has type (mx | local | relay); a relay has address (host name or IP literal), port (25), protocol (smtp | lmtp), implicit-tls (false), allow-invalid-certs (false), allow-plaintext-auth (false), auth {username, secret} and an optional description.",
			Example: "routing:\n  routes:\n    relay-eu:\n      type: relay\n      address: smtp.eu.example\n      port: 587\n      auth:\n        username: relay-user\n        secret: {env: RELAY_EU_SECRET}",
			decode:  decodeRoutes,
			node:    routesNode},
		valueField("tls.mta-sts", tlsModeKind, expr.Recipient, constant(TLSOptional), func(s *Set) **Value[TLSMode] { return &s.TLS.MTASTS },
			"MTA-STS (RFC 8461) for the recipient domain, decided before the MX lookup (route is available). optional: the domain's policy is looked up (TXT _mta-sts, then HTTPS, cached) and obeyed when there is one — enforce skips MX hosts it does not list and makes TLS with PKIX mandatory on the others, testing only reports; require: also, no usable policy fails the group (permanently when the domain publishes none, temporarily when it cannot be fetched); disable: not looked up. DANE takes precedence on hosts with usable TLSA records. On a run-time error: require (and a missing policy defers).",
			"tls:\n  mta-sts: require", valueOpts{extra: routeVars, why: "it is decided per domain, before the MX lookup"}, ptr(TLSRequire)),
		valueField("tls.dane", tlsModeKind, expr.Host, constant(TLSOptional), func(s *Set) **Value[TLSMode] { return &s.TLS.DANE },
			"DANE (RFC 7672) per host: when the host's MX answer (for an implicit MX or a relay: its address records) and its address records are DNSSEC-secure, its TLSA records (at the CNAME-expanded name when the expansion is secure) decide the certificate check in place of PKIX, and TLS is mandatory. optional: DANE when the records are there; a failed TLSA lookup still skips the host (no downgrade); require: a host without DANE is skipped — permanently when its zone is provably insecure, temporarily when the resolver cannot validate DNSSEC; disable: no TLSA lookup. On a run-time error: require.", "", valueOpts{}, ptr(TLSRequire)),
		valueField("tls.starttls", tlsModeKind, expr.Host, constant(TLSOptional), func(s *Set) **Value[TLSMode] { return &s.TLS.STARTTLS },
			"STARTTLS (RFC 3207) per host: disable never tries TLS; optional uses it when offered; require fails the host without it — temporarily: the next host is tried, and when none offers TLS the recipients are deferred, never bounced (a downgrade on the path must not bounce mail; only a REQUIRETLS message may). On a run-time error: require.",
			"tls:\n  starttls:\n    - if: mx endsWith \".legacy.example\"\n      then: optional\n    - else: require", valueOpts{}, ptr(TLSRequire)),
		valueField("tls.allow-invalid-certs", boolKind, expr.Host, constant(false), func(s *Set) **Value[bool] { return &s.TLS.AllowInvalidCerts },
			"Accept certificates that fail PKIX verification when TLS is mandatory (with opportunistic TLS an unverified certificate is accepted anyway, with a warning). An MTA-STS enforce policy and REQUIRETLS override it; DANE does not use PKIX. On a run-time error: false.", "", valueOpts{}, ptr(false)),
		valueField("tls.min-version", tlsVersionKind, expr.Host, constant[TLSVersion]("1.2"), func(s *Set) **Value[TLSVersion] { return &s.TLS.MinVersion },
			"Lowest TLS version accepted. On a run-time error: 1.3.", "", valueOpts{}, ptr[TLSVersion]("1.3")),
		valueField("tls.timeouts.handshake", durationKind, expr.Host, constant(3*time.Minute), func(s *Set) **Value[time.Duration] { return &s.TLS.HandshakeTimeout },
			"STARTTLS command and TLS handshake (or the implicit-TLS handshake).", "", valueOpts{}, nil),
		valueField("tls.timeouts.mta-sts", durationKind, expr.Recipient, constant(DefaultMTASTSTimeout), func(s *Set) **Value[time.Duration] { return &s.TLS.MTASTSTimeout },
			"How long a delivery waits for the HTTPS fetch of an MTA-STS policy (RFC 8461 section 3.3). The fetch itself is bounded by this setting's value when it is a constant, else by its default; a fetch that outlives the wait still fills the cache.", "", valueOpts{extra: routeVars}, nil),
		literalField("tls.mta-sts-cache", pathKind, func(s *Set) *string { return &s.TLS.MTASTSCache }, "",
			"Directory where fetched MTA-STS policies are kept across restarts, one file per domain (relative to the policy's directory; created if missing). Empty: in memory only. An embedder's Options.MTASTSCache takes precedence.", storeSTSCache),
		valueField("ip-strategy.lookup", lookupKind, expr.Host, constant(IPv4ThenIPv6), func(s *Set) **Value[Lookup] { return &s.IPStrategy.Lookup },
			"Address families resolved for a host, in the order tried.", "ip-strategy:\n  lookup:\n    - if: mx endsWith \".google.com\"\n      then: ipv4_only\n    - else: ipv6_then_ipv4", valueOpts{}, nil),
		valueField("ip-strategy.source-ips", ipListKind, expr.Host, constant[[]netip.Addr](nil), func(s *Set) **Value[[]netip.Addr] { return &s.IPStrategy.SourceIPs },
			"Source addresses. For each connection the entries of the remote address's family are used: one: it; several: spread evenly; none: the kernel chooses.",
			"ip-strategy:\n  source-ips: [192.0.2.10, 192.0.2.11, 2001:db8::10]", valueOpts{}, nil),
		valueField("ip-strategy.ehlo-hostname", hostnameKind(true), expr.Connection, constant(""), func(s *Set) **Value[string] { return &s.IPStrategy.EHLOHostname },
			"EHLO/LHLO name per connection; empty: hostname. May depend on local_ip to match each source address's PTR.",
			"ip-strategy:\n  ehlo-hostname:\n    - if: local_ip == \"192.0.2.10\"\n      then: out1.example.org\n    - else: out2.example.org", valueOpts{}, nil),
		valueField("ip-strategy.refuse-private", boolKind, expr.Host, constant(false), func(s *Set) **Value[bool] { return &s.IPStrategy.RefusePrivate },
			"Never connect an MX host's private addresses: RFC 1918 (10/8, 172.16/12, 192.168/16), RFC 6598 shared space (100.64/10), IPv6 unique-local (fc00::/7), site-local (fec0::/10) and local-use NAT64 (64:ff9b:1::/48), also in their IPv4-mapped, IPv4-compatible and NAT64 (64:ff9b::/96) forms. Relays are not affected. (Loopback, unspecified, link-local, multicast and reserved addresses are never connected for MX hosts, whatever this says.)",
			"ip-strategy:\n  refuse-private: true", valueOpts{}, nil),
		valueField("limits.mx", intKind(1, 100), expr.Recipient, constant(5), func(s *Set) **Value[int] { return &s.Limits.MX },
			"MX hosts tried per attempt. Evaluated per group, so route and route_type are available.", "", valueOpts{extra: routeVars}, nil),
		valueField("limits.multihomed", intKind(1, 100), expr.Host, constant(2), func(s *Set) **Value[int] { return &s.Limits.Multihomed },
			"Addresses tried per host.", "", valueOpts{}, nil),
		valueField("limits.recipients", intKind(1, 100000), expr.Recipient, constant(100), func(s *Set) **Value[int] { return &s.Limits.Recipients },
			"RCPT commands per transaction: larger groups are split. Evaluated per group (for its first recipient), so route and route_type are available.", "", valueOpts{extra: routeVars}, nil),
		valueField("limits.messages-per-connection", intKind(1, 100000), expr.Host, constant(20), func(s *Set) **Value[int] { return &s.Limits.MessagesPerConnection },
			"Transactions sent over one connection before it is closed.", "", valueOpts{}, nil),
		timeoutField("connect", 5*time.Minute, func(s *Set) **Value[time.Duration] { return &s.Limits.Timeouts.Connect }),
		timeoutField("greeting", 5*time.Minute, func(s *Set) **Value[time.Duration] { return &s.Limits.Timeouts.Greeting }),
		timeoutField("ehlo", 5*time.Minute, func(s *Set) **Value[time.Duration] { return &s.Limits.Timeouts.EHLO }),
		timeoutField("mail-from", 5*time.Minute, func(s *Set) **Value[time.Duration] { return &s.Limits.Timeouts.MailFrom }),
		timeoutField("rcpt-to", 5*time.Minute, func(s *Set) **Value[time.Duration] { return &s.Limits.Timeouts.RcptTo }),
		timeoutField("data", 10*time.Minute, func(s *Set) **Value[time.Duration] { return &s.Limits.Timeouts.Data }),
		{Path: "limits.throttles", Type: "list of throttles", Phase: "literal", Default: "[]",
			Doc:     "Concurrency and rate limits counted per key. Each has name (required, unique), match (boolean expression, optional), key (subset of sender, sender_domain, rcpt, rcpt_domain, route, site, mx, remote_ip, local_ip, and meta.NAME; empty: one global counter), concurrency and/or rate (COUNT/DURATION). A key with mx, remote_ip or local_ip makes the throttle per connection; one with site, per group after the MX lookup (see limits.sites); otherwise it is checked per group before DNS. A concurrency slot is one delivery in flight — a group's transaction, or for a per-connection throttle one connection attempt — held from its start to its end; a rate token is one delivery started. A throttle keyed only by sender and/or sender_domain counts once per message, however many domains it goes to. A full throttle defers, it never rejects, with retry_after from the store's estimate; a full per-connection throttle defers the whole group rather than trying the next address or MX, which would defeat a per-MX limit.",
			Example: "limits:\n  throttles:\n    - name: microsoft\n      match: in_list(\"microsoft\", rcpt_domain)\n      key: [rcpt_domain]\n      concurrency: 10\n      rate: 100/1m",
			decode:  decodeThrottles,
			node:    throttlesNode},
		{Path: "limits.sites", Type: "map of site name to MX host patterns", Phase: "literal", Default: "{}",
			Doc:     "Providers named by their MX hosts, for the site throttle key and variable (the MX rollup): a domain whose MX hosts include one matching a site's pattern (a host name, or *.DOMAIN for any name under DOMAIN) is that site, the first that matches in this order; a domain matching none is its MX hosts' names, sorted and joined with commas.",
			Example: "limits:\n  sites:\n    google: [\"*.google.com\", \"*.googlemail.com\"]\n    microsoft: [\"*.mail.protection.outlook.com\"]\n  throttles:\n    - name: per-provider\n      key: [site]\n      concurrency: 50\n      rate: 1000/1m",
			decode:  decodeSites,
			node:    sitesNode},
		{Path: "limits.store", Type: "memory | redis://HOST:PORT/DB | {url, password, cluster, lease-ttl}", Phase: "literal", Default: "memory",
			Doc:     "Where throttle counters live: in this process (memory), or in Redis, shared by a fleet of MTAs: a single server or a Redis Cluster (several HOST:PORT separated by commas, or cluster: true). rediss:// uses TLS (verified against the same roots as SMTP). The password is a secret, {env: NAME} or {file: PATH}: a password in the URL, or a literal one, is refused. lease-ttl (3s to 1h, default 30s) is how long a concurrency slot outlives a process that died holding it.",
			Example: "limits:\n  store:\n    url: rediss://redis.internal:6380/0\n    password: {env: POSTERN_REDIS_PASSWORD}",
			decode:  decodeStore,
			node:    storeNode,
			init:    func(s *Set, _ string) { s.Limits.Store = "memory" }},
		{Path: "limits.on-store-error", Type: "defer | allow", Phase: "literal", Default: "defer",
			Doc:    "When the throttle store cannot be reached: defer the deliveries its throttles apply to (temporary, class store, retry after a minute), or allow them unthrottled. Either way it is logged and every recipient gets a result.",
			decode: decodeOnStoreError,
			node:   func(s *Set) *yaml.Node { return strNode(s.Limits.OnStoreError) },
			init:   func(s *Set, _ string) { s.Limits.OnStoreError = "defer" }},
		valueField("queue.retry", durationListKind(1), expr.Recipient,
			constant([]time.Duration{2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}),
			func(s *Set) **Value[[]time.Duration] { return &s.Queue.Retry },
			"How long to wait after a temporary failure before the next attempt: the first duration after the first attempt (retry_num 0), the second after the second, and so on; the last repeats. Every temporary result carries the time (retry_after) and where it comes from: this schedule, a full throttle, or a reply that said when (\"try again in 5 minutes\"). Evaluated per group, so route, route_type, last_error and queue_name can pick a schedule.",
			"queue:\n  retry:\n    - if: last_error == \"dns\"\n      then: [10m, 1h]\n    - else: [2m, 5m, 10m, 15m, 30m, 1h, 2h]", valueOpts{extra: routeVars}, nil),
		valueField("queue.notify", durationListKind(0), expr.Recipient,
			constant([]time.Duration{24 * time.Hour, 72 * time.Hour}),
			func(s *Set) **Value[[]time.Duration] { return &s.Queue.Notify },
			"When a delay notification (a delayed DSN, RFC 3464) is due, as times since the message was queued (queue_age): one for each duration, the first at the first, notify_num counting those sent. A temporary result says a notification is due (notify) once queue_age reaches the next one. [] sends none.",
			"", valueOpts{extra: routeVars}, nil),
		valueField("queue.expire", positiveDurationKind, expr.Recipient, constant(5*24*time.Hour),
			func(s *Set) **Value[time.Duration] { return &s.Queue.Expire },
			"How long a message may stay queued (queue_age). A message older than this is not attempted: its recipients fail permanently, class expired, and the MTA sends the bounce.",
			"", valueOpts{extra: routeVars}, nil),
		earlyField(literalField("limits.expressions.max-size", sizeKind(1, expr.CeilingMaxSize),
			func(s *Set) *int { return &s.Limits.Expressions.MaxSize }, expr.DefaultMaxSize,
			"Longest expression, in bytes (16KiB or 16384). Checked when the policy loads.")),
		earlyField(literalField("limits.expressions.max-depth", intKind(1, expr.CeilingMaxDepth),
			func(s *Set) *int { return &s.Limits.Expressions.MaxDepth }, expr.DefaultMaxDepth,
			"Deepest nesting of parentheses, brackets, braces and prefix operators (!, -, not) in one expression. Checked when the policy loads, before the expression is parsed.")),
		earlyField(literalField("limits.expressions.max-steps", intKind(1, expr.CeilingMaxSteps),
			func(s *Set) *int { return &s.Limits.Expressions.MaxSteps }, expr.DefaultMaxSteps,
			"Evaluation budget of one run of one expression: each iteration of all, any, none, one, filter, map, count, find... is a step, and so is every 64 bytes built by +, lower, upper, trim, replace, join, split or string. An expression that runs out is a run-time error: its setting takes its fallback (the default; the strictest value for TLS settings; a route defers the recipient), and the error is logged and shown in the trace.")),
		earlyField(literalField("limits.max-file-size", sizeKind[int64](1, 1<<30),
			func(s *Set) *int64 { return &s.Limits.MaxFileSize }, DefaultMaxFileSize,
			"Largest file the policy may name: a {file:} list, the zone file, a secret file. Files must be regular files (not a FIFO, a device or a directory).")),
	}, append(dnsFields(), relayFields()...)...)
}

// DefaultMaxFileSize is the default of limits.max-file-size.
const DefaultMaxFileSize = 16 << 20

// routeVars are the host-phase variables known to recipient-phase settings
// evaluated after routing (per group of one domain and route).
var routeVars = []string{"route", "route_type"}

func timeoutField(name string, def time.Duration, get func(*Set) **Value[time.Duration]) Field {
	return valueField("limits.timeouts."+name, durationKind, expr.Connection, constant(def), get,
		"Timeout of the "+map[string]string{
			"connect": "TCP connect", "greeting": "server greeting", "ehlo": "EHLO/LHLO reply",
			"mail-from": "MAIL FROM reply", "rcpt-to": "reply to each RCPT TO", "data": "DATA phase: the whole body and the final reply",
		}[name]+".", "", valueOpts{}, nil)
}

func withDefault(f Field, def string) Field {
	f.Default = def
	return f
}
