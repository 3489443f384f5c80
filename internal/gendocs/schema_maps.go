package main

import (
	"github.com/postern-mta/postern/policies"
)

// The settings that are not one literal kind: lists, routes, throttles,
// sites, the store, DNS servers. Their keys are checked against the
// loader's (keyProbes); their descriptions summarise docs/policy.md.

// structured builds the schema of each such setting, by path.
var structured = map[string]func(g *schemaGen) (*object, error){
	"local-domains":    localDomains,
	"lists":            lists,
	"routing.routes":   routes,
	"limits.throttles": throttles,
	"limits.sites":     sites,
	"limits.store":     store,
	"dns.servers":      dnsServers,

	"relay.listeners":            listeners,
	"relay.networks":             networks,
	"relay.auth.mechanisms":      mechanisms,
	"relay.permit":               permit,
	"relay.queue.min-free-space": freeSpace,
	"relay.dsn.from":             dsnFrom,
}

// oneOrList is a scalar item alone or a list of them; null is none.
func oneOrList(item *object) *object {
	return anyOf(obj("type", "null"), item, obj("type", "array", "items", item))
}

// nonEmpty is a scalar whose text is not empty.
func nonEmpty() *object {
	return anyOf(obj("type", "string", "minLength", 1), obj("type", asText))
}

// localDomains is one domain or a list of them.
func localDomains(g *schemaGen) (*object, error) {
	return oneOrList(g.def(hostLit.name, hostLit.schema)), nil
}

// lists maps a name to its entries, or to {file: PATH}.
func lists(g *schemaGen) (*object, error) {
	file, err := g.closed("list-file", map[string]*object{
		"file": obj("description", "A file with one entry a line; # starts a comment. Relative to the policy's directory.", "anyOf", nonEmpty().vals["anyOf"]),
	}, "file")
	if err != nil {
		return nil, err
	}
	entry := obj("type", scalarTypes)
	return obj("type", "object", "propertyNames", str(name),
		"additionalProperties", anyOf(entry, obj("type", "array", "items", entry), file)), nil
}

// secrets defines a secret: {env: NAME}, {file: PATH} or a literal. The
// source alone (never literal) is secret-source.
func secrets(g *schemaGen) (*object, error) {
	src, err := g.closed("secret", map[string]*object{
		"env":  obj("description", "Environment variable holding the secret.", "type", "string", "pattern", pattern(envName)),
		"file": obj("description", "File holding the secret (trailing newlines removed), relative to the policy's directory.", "anyOf", nonEmpty().vals["anyOf"]),
	})
	if err != nil {
		return nil, err
	}
	g.def("secret-source", describe("{env: NAME} or {file: PATH}.", nil, src.set("minProperties", 1).set("maxProperties", 1)))
	return g.def("secret", obj("description", "{env: NAME}, {file: PATH}, or a literal string (check warns about it).",
		"anyOf", append(nonEmpty().vals["anyOf"].([]any), ref("secret-source")))), nil
}

// routes maps a name to a route; a relay needs an address, the other
// types take only a description.
func routes(g *schemaGen) (*object, error) {
	secret, err := secrets(g)
	if err != nil {
		return nil, err
	}
	auth, err := g.closed("auth", map[string]*object{
		"username": obj("description", "The user name.", "anyOf", nonEmpty().vals["anyOf"]),
		"secret":   secret,
	}, "username", "secret")
	if err != nil {
		return nil, err
	}
	boolRef := g.def(boolLit.name, boolLit.schema)
	types := []string{string(policies.RouteMX), string(policies.RouteLocal), string(policies.RouteRelay)}
	route, err := g.closed("route", map[string]*object{
		"type":                 obj("description", "mx: the recipient domain's MX hosts; local: back to the embedding MTA; relay: a fixed next hop. Required.", "enum", types),
		"address":              obj("description", "Relay only, required: a host name or an IP address (in brackets or not). The port goes in port.", "anyOf", []any{str(relayAddress), obj("type", asText)}),
		"port":                 describe("Relay only: the TCP port.", 25, anyOf(obj("type", "integer", "minimum", 1, "maximum", 65535), str(integer))),
		"protocol":             describe("Relay only: smtp, or lmtp (RFC 2033).", "smtp", obj("enum", []string{"smtp", "lmtp"})),
		"implicit-tls":         describe("Relay only: TLS from the first byte (port 465 style) instead of STARTTLS.", false, boolRef),
		"allow-invalid-certs":  describe("Relay only: accept a certificate that fails verification.", false, boolRef),
		"allow-plaintext-auth": describe("Relay only: allow AUTH without TLS.", false, boolRef),
		"auth":                 describe("Relay only: username and secret, both required.", nil, auth),
		"description":          obj("description", "Free text for people.", "type", scalarTypes),
	}, "type")
	if err != nil {
		return nil, err
	}
	route.set("if", obj("properties", obj("type", obj("const", string(policies.RouteRelay))))).
		set("then", obj("required", []string{"address"})).
		set("else", obj("propertyNames", obj("enum", []string{"type", "description"})))
	return obj("type", []string{"object", "null"},
		"propertyNames", obj("pattern", pattern(name), "not", obj("enum", []string{string(policies.RouteMX), string(policies.RouteLocal)})),
		"additionalProperties", route), nil
}

// throttles is a list of throttles, each with a name and a limit.
func throttles(g *schemaGen) (*object, error) {
	word := anyOf(obj("enum", policies.ThrottleKeys), str(`^meta\..+$`))
	t, err := g.closed("throttle", map[string]*object{
		"name":        obj("description", "Required, unique: letters, digits, _ . -", "anyOf", []any{str(name), obj("type", asText)}),
		"match":       describe("A boolean expression; absent: the throttle applies to every delivery.", nil, ref("condition")),
		"key":         obj("description", "Counted per value of these: a subset of the throttle keys and meta.NAME; empty or absent: one counter.", "anyOf", oneOrList(word).vals["anyOf"]),
		"concurrency": obj("description", "Deliveries in flight at once, per key value.", "anyOf", []any{obj("type", "integer", "minimum", 1), str(integer)}),
		"rate":        obj("description", "Deliveries started per period, per key value: COUNT/DURATION (100/1m).", "type", "string", "pattern", pattern(rate)),
	}, "name")
	if err != nil {
		return nil, err
	}
	t.set("anyOf", []any{obj("required", []string{"concurrency"}), obj("required", []string{"rate"})})
	return obj("type", []string{"array", "null"}, "items", t), nil
}

// sites maps a name to MX host patterns.
func sites(*schemaGen) (*object, error) {
	// A number with a dot (1.5) is a host name as text.
	p := anyOf(str(sitePattern), obj("type", "number"))
	return obj("type", []string{"object", "null"}, "propertyNames", str(name), "additionalProperties", oneOrList(p)), nil
}

// store is memory, a Redis URL, or the URL with a password source and
// options.
func store(g *schemaGen) (*object, error) {
	if _, err := secrets(g); err != nil {
		return nil, err
	}
	m, err := g.closed("store", map[string]*object{
		"url":       obj("description", "redis://HOST:PORT/DB, or rediss:// for TLS; several HOST:PORT separated by commas for a Redis Cluster.", "type", "string", "pattern", pattern(redisURL)),
		"password":  describe("{env: NAME} or {file: PATH}; never written in the policy.", nil, ref("secret-source")),
		"cluster":   describe("The servers are a Redis Cluster.", nil, ref(boolLit.name)),
		"lease-ttl": describe("How long a concurrency slot outlives a process that died holding it: 3s to 1h.", nil, ref(durationLit.name)),
	}, "url")
	if err != nil {
		return nil, err
	}
	g.def(boolLit.name, boolLit.schema)
	g.def(durationLit.name, durationLit.schema)
	return anyOf(obj("const", "memory"), str(redisURL), m), nil
}

// dnsServers is one server URL or a list of them.
func dnsServers(*schemaGen) (*object, error) {
	return oneOrList(str(dnsServer)), nil
}

// prefixes is one IP prefix or address, or a list of them; at least one
// when nonEmpty, else null (none) as well.
func prefixes(nonEmpty bool) *object {
	p := str(ipPrefix)
	if nonEmpty {
		return anyOf(p, obj("type", "array", "minItems", 1, "items", p))
	}
	return oneOrList(p)
}

// listeners is a non-empty list of listeners, each with a name and an
// address.
func listeners(g *schemaGen) (*object, error) {
	tls, err := g.closed("listener-tls", map[string]*object{
		"cert": obj("description", "The certificate chain, a PEM file (relative to the policy's directory).", "anyOf", nonEmpty().vals["anyOf"]),
		"key":  obj("description", "The private key, a PEM file (relative to the policy's directory).", "anyOf", nonEmpty().vals["anyOf"]),
	}, "cert", "key")
	if err != nil {
		return nil, err
	}
	proxy, err := g.closed("proxy-protocol", map[string]*object{
		"trusted": obj("description", "The load balancers: only they may connect, and their PROXY header gives the client's address.", "anyOf", prefixes(true).vals["anyOf"]),
	}, "trusted")
	if err != nil {
		return nil, err
	}
	connections := anyOf(obj("type", "integer", "minimum", 1, "maximum", 100000), str(integer))
	l, err := g.closed("listener", map[string]*object{
		"name":                   obj("description", "Required, unique: letters, digits, _ . - (logs, metrics, the listener variable).", "anyOf", []any{str(name), obj("type", asText)}),
		"address":                obj("description", "Required: IP:PORT, an IPv6 address in brackets ([::]:587); port 0: a free port.", "anyOf", []any{str(listenAddress), obj("type", asText)}),
		"mode":                   describe("smtp, submission (STARTTLS and AUTH required) or submissions (implicit TLS, AUTH required).", "smtp", obj("enum", []string{"smtp", "submission", "submissions"})),
		"tls":                    describe("The certificate and key: STARTTLS is offered (smtp, submission), or TLS from the first byte (submissions).", nil, tls),
		"proxy-protocol":         describe("Read a PROXY protocol header from the trusted peers, refuse the others.", nil, proxy),
		"max-connections":        describe("Open connections of the listener.", 200, connections),
		"max-connections-per-ip": describe("Open connections from one client address.", 20, connections),
	}, "name", "address")
	if err != nil {
		return nil, err
	}
	return obj("type", "array", "minItems", 1, "items", l), nil
}

// networks is a prefix, a list of them, or null (nobody).
func networks(*schemaGen) (*object, error) { return prefixes(false), nil }

// mechanisms is plain, login, or a non-empty list of them.
func mechanisms(*schemaGen) (*object, error) {
	m := obj("enum", []string{"plain", "login"})
	return anyOf(m, obj("type", "array", "minItems", 1, "items", m)), nil
}

// permit is a list of rules whose then and else are booleans or {expr:
// ...}: the rule form only; empty or null for none.
func permit(g *schemaGen) (*object, error) {
	rules, err := g.rules(boolLit)
	if err != nil {
		return nil, err
	}
	delete(rules.vals, "minItems")
	rules.keys = without(rules.keys, "minItems")
	rules.set("type", []string{"array", "null"})
	return rules, nil
}

// without returns keys without k.
func without(keys []string, k string) []string {
	var out []string
	for _, x := range keys {
		if x != k {
			out = append(out, x)
		}
	}
	return out
}

// freeSpace is a percentage or a size.
func freeSpace(g *schemaGen) (*object, error) {
	lit, err := sizeLiteral(policies.Field{Path: "relay.queue.min-free-space"}, []string{"", "0", "9223372036854775807", ""})
	if err != nil {
		return nil, err
	}
	return anyOf(str(percent), lit.schema), nil
}

// dsnFrom is an address, with {hostname}.
func dsnFrom(*schemaGen) (*object, error) {
	return obj("type", "string", "pattern", pattern("@")), nil
}
