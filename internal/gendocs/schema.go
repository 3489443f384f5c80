package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/postern-mta/postern/internal/jsonout"
	"github.com/postern-mta/postern/policies"
	"go.yaml.in/yaml/v3"
)

// This file writes docs/policy.schema.json, a JSON Schema (draft 2020-12)
// of the policy format for editors that check YAML as it is typed
// (yaml-language-server). Its sections and settings, their descriptions,
// defaults and literal types come from policies.Fields(); the keys of the
// mappings the table does not list (a route, a throttle, a rule...) are
// asked of the loader, which names the keys it knows when it meets an
// unknown one.
//
// The schema must never refuse a policy the loader accepts: an editor that
// marks valid configuration red is worse than none. The loader reads the
// text of a YAML scalar, whatever type YAML gives it (`hostname: 123` is a
// host name, `limits.mx: "5"` a number), so where a text YAML reads as a
// number or a boolean could be valid, the schema takes that type too. It is
// as strict as it can be beyond that: unknown keys, enum words, booleans,
// the syntax of durations, sizes, rates and addresses. What it cannot see —
// expressions, route and list names, files, checks across settings —
// remains `postern check`'s.
//
// Only keywords that JSON Schema draft 7 reads the same way are used:
// yaml-language-server validates with draft 7 semantics whatever $schema
// says.

const (
	schemaDialect = "https://json-schema.org/draft/2020-12/schema"
	schemaID      = "https://github.com/postern-mta/postern/docs/policy.schema.json"
)

// renderSchema builds docs/policy.schema.json.
func renderSchema() ([]byte, error) {
	g := &schemaGen{defs: obj()}
	if err := g.probeKeys(); err != nil {
		return nil, err
	}
	root, err := g.root()
	if err != nil {
		return nil, err
	}
	root.set("$defs", g.defs)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// schemaGen accumulates the $defs while the settings are walked.
type schemaGen struct {
	defs *object
	keys map[string][]string // loader-known keys, by keyProbes name
}

// object is a JSON object that keeps its keys in the order they were set,
// so that the schema reads in table order.
type object struct {
	keys []string
	vals map[string]any
}

// obj makes an object from key, value pairs.
func obj(pairs ...any) *object {
	o := &object{vals: map[string]any{}}
	for i := 0; i+1 < len(pairs); i += 2 {
		o.set(pairs[i].(string), pairs[i+1])
	}
	return o
}

// set adds or replaces key k.
func (o *object) set(k string, v any) *object {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
	return o
}

// MarshalJSON writes the keys in order.
func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := marshal(o.vals[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshal is json.Marshal without HTML escaping: descriptions quote
// <addresses> and -> arrows.
var marshal = jsonout.Marshal

// pattern is a regular expression, written with \u escapes for every
// non-ASCII character (the Unicode spaces TrimSpace removes are invisible
// otherwise). Patterns use only syntax that Go's RE2 and ECMAScript read
// alike.
type pattern string

// MarshalJSON writes p as an ASCII JSON string.
func (p pattern) MarshalJSON() ([]byte, error) {
	b, err := marshal(string(p))
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	for _, r := range string(b) {
		if r < 0x80 {
			out.WriteRune(r)
			continue
		}
		for _, u := range utf16.Encode([]rune{r}) {
			fmt.Fprintf(&out, `\u%04x`, u)
		}
	}
	return []byte(out.String()), nil
}

// describe is schema s with a description and, unless def is nil, a
// default, both first. A reference goes under allOf: draft 7 ignores the
// keywords beside a $ref.
func describe(desc string, def any, s *object) *object {
	o := obj("description", desc)
	if def != nil {
		o.set("default", def)
	}
	if _, ok := s.vals["$ref"]; ok {
		return o.set("allOf", []any{s})
	}
	for _, k := range s.keys {
		o.set(k, s.vals[k])
	}
	return o
}

// ref points at a $defs entry.
func ref(name string) *object { return obj("$ref", "#/$defs/"+name) }

// scalarTypes are the JSON types of YAML scalars.
var scalarTypes = []string{"string", "number", "boolean", "null"}

// asText are the JSON types of YAML scalars that YAML does not read as
// strings (123, 1.5, true, null, ~) but whose text the loader may take for
// a name: `hostname: null` is the host "null".
var asText = []string{"number", "boolean", "null"}

// The syntax of durations, sizes, rates and addresses, as the loader reads
// them (policies.ParseDuration, ParseSize, ParseRate; an IP address is
// trimmed, then read by netip). Where being exact would take more than a
// regular expression (a count's range, a zone in an address) they accept
// more, never less.
var (
	space    = spaceClass()
	durUnit  = `(ns|us|µs|μs|ms|s|m|h)`
	durNum   = `[0-9]*(\.[0-9]*)?`
	goDur    = `[+-]?(0|(` + durNum + durUnit + `)+)`
	duration = `^` + space + `*([+-]?[0-9]+d(` + goDur + `)?|` + goDur + `)` + space + `*$`
	// A rate's period gets a 1 in front when it starts with no digit
	// ("10/m" is "10/1m").
	rate      = `^` + space + `*\+?[0-9]+` + space + `*/` + space + `*([0-9]*d(` + goDur + `)?|(` + durNum + durUnit + `)+)` + space + `*$`
	size      = `^` + space + `*[+-]?[0-9]+` + space + `*([kKmMgG][iI]?[bB]|[bB])?` + space + `*$`
	integer   = `^[+-]?[0-9]+$`
	ipChars   = space + `*[0-9A-Fa-f:.]+` + space + `*`
	ipAddress = `^` + ipChars + `$`
	// A name of a list, route, site or throttle.
	name = `^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// A host name is lower-cased before it is checked, so the runes that
	// lower-case to ASCII letters pass.
	hostLabel = label(lowersToASCII())
	hostName  = `^` + hostLabel + `(\.` + hostLabel + `)*\.{0,2}$`
	// A relay address is a host name as written or an IP address, either
	// in brackets or not.
	relayLabel   = label("")
	relayAddress = `^\[?(` + relayLabel + `(\.` + relayLabel + `)*\.?|` + ipChars + `)\]?$`
	sitePattern  = `^(\*\.)?[^*]*\.[^*]*$`
	// An IP prefix or address, as relay.networks reads it (trimmed).
	ipPrefix = `^` + ipChars + `(/[0-9]+)?` + space + `*$`
	// A listener's IP:PORT, an IPv6 address in brackets.
	listenAddress = `^(\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]+$`
	// A percentage of relay.queue.min-free-space.
	percent   = `^` + space + `*[0-9]+(\.[0-9]+)?` + space + `*%` + space + `*$`
	dnsServer = `^((udp|tcp)://[^#]*|tls://[^#]*#[A-Za-z0-9_.-]+)$`
	redisURL  = `^[Rr][Ee][Dd][Ii][Ss][Ss]?://.+$`
	envName   = `^[A-Za-z_][A-Za-z0-9_]*$`
)

// spaceClass is a character class of what strings.TrimSpace removes.
func spaceClass() string {
	var b strings.Builder
	b.WriteByte('[')
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !unicode.IsSpace(r) {
			continue
		}
		switch r {
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\v':
			b.WriteString(`\v`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(']')
	return b.String()
}

// lowersToASCII lists the non-ASCII runes strings.ToLower turns into an
// ASCII letter (İ, the Kelvin sign).
func lowersToASCII() string {
	var b strings.Builder
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if l := unicode.ToLower(r); l >= 'a' && l <= 'z' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// label is a DNS label as expr.IsHostname reads it, with extra runes.
func label(extra string) string {
	c := `A-Za-z0-9_` + extra
	return `[` + c + `]([` + c + `-]*[` + c + `])?`
}

// str is a string schema with a pattern.
func str(p string) *object { return obj("type", "string", "pattern", pattern(p)) }

// anyOf is a schema that accepts any of schemas.
func anyOf(schemas ...any) *object { return obj("anyOf", schemas) }

// literal is the schema of one kind of scalar setting.
type literal struct {
	name   string  // its $defs name
	schema *object // its literals
	expr   string  // the $defs name of its {expr: ...} form
}

// The expression forms: {expr: SOURCE}. A YAML scalar the expression
// language reads as a literal of the right type may be written unquoted.
var exprDefs = []struct {
	name, what string
	types      []string
}{
	{"expr-bool", "a boolean", []string{"string", "boolean"}},
	{"expr-integer", "an integer", []string{"string", "integer"}},
	{"expr-string", "a value of the setting's type (a string, or a list of strings for a list)", []string{"string"}},
}

var (
	intType     = regexp.MustCompile(`^integer, (\d+) to (\d+)$`)
	sizeType    = regexp.MustCompile(`^size, (?:(\S+) to (\S+)|at most (\S+))$`)
	oneOfType   = regexp.MustCompile(`^one of (.+)$`)
	altsType    = regexp.MustCompile(`^[^\s|]+(?: \| [^\s|]+)+$`)
	versionType = regexp.MustCompile(`^integer: (\d+)$`)
)

// literalOf reads a scalar setting's kind from its type text and default.
// A type it does not know fails the generation: the schema must then learn
// the new kind.
func literalOf(f policies.Field) (literal, error) {
	t := f.Type
	switch m := intType.FindStringSubmatch(t); {
	case t == "bool" || strings.HasPrefix(t, "bool "):
		return boolLit, nil
	case strings.HasPrefix(t, "duration"):
		return durationLit, nil
	case strings.HasPrefix(t, "list of durations"), strings.HasPrefix(t, "non-empty list of durations"):
		// One duration alone, or a list of them (positive: the loader
		// refuses 0, which the schema leaves to it).
		list := obj("type", "array", "items", str(duration))
		name := "durations"
		if strings.HasPrefix(t, "non-empty") {
			list.set("minItems", 1)
			name = "durations-non-empty"
		}
		return literal{name, anyOf(str(duration), list), "expr-string"}, nil
	case t == "host name":
		// A setting whose default is empty takes the empty string.
		if def, _ := defaultOf(f); def == "" {
			return hostOrEmptyLit, nil
		}
		return hostLit, nil
	case strings.HasPrefix(t, "route name"):
		return routeLit, nil
	case t == "path":
		return literal{"path", obj("type", scalarTypes), "expr-string"}, nil
	case t == "list of IP addresses":
		return literal{"ip-addresses", anyOf(str(ipAddress), obj("type", "array", "items", str(ipAddress))), "expr-string"}, nil
	case m != nil:
		lo, _ := strconv.Atoi(m[1])
		hi, _ := strconv.Atoi(m[2])
		return literal{fmt.Sprintf("integer-%d-%d", lo, hi), anyOf(obj("type", "integer", "minimum", lo, "maximum", hi), str(integer)), "expr-integer"}, nil
	case sizeType.MatchString(t):
		return sizeLiteral(f, sizeType.FindStringSubmatch(t))
	case oneOfType.MatchString(t):
		return enumLiteral(strings.Split(oneOfType.FindStringSubmatch(t)[1], ", "))
	case altsType.MatchString(t):
		return enumLiteral(strings.Split(t, " | "))
	}
	return literal{}, fmt.Errorf("no schema for type %q: teach internal/gendocs/schema.go this kind", t)
}

// The literal kinds the mappings share with the settings.
var (
	boolLit = literal{"bool", anyOf(obj("type", "boolean"), obj("enum", []string{"true", "false"})), "expr-bool"}

	durationLit = literal{"duration", obj("description", "A duration: 90s, 5m, 1h30m, 2d; 0 alone is zero.",
		"anyOf", []any{str(duration), obj("const", 0)}), "expr-string"}

	hostLit = literal{"host-name", anyOf(str(hostName), obj("type", asText)), "expr-string"}

	hostOrEmptyLit = literal{"host-name-or-empty", obj("description", "A host name, or empty for none.",
		"anyOf", []any{str(`^\.?$`), str(hostName), obj("type", asText)}), "expr-string"}

	routeLit = literal{"route-name", obj("description", "mx, local, or a route of routing.routes.",
		"anyOf", []any{obj("enum", []string{string(policies.RouteMX), string(policies.RouteLocal)}), str(name), obj("type", asText)}), "expr-string"}
)

// sizeLiteral is a size between the bounds of the type text.
func sizeLiteral(f policies.Field, m []string) (literal, error) {
	lo, hi := "1", m[3]
	if m[3] == "" {
		lo, hi = m[1], m[2]
	}
	l, err := policies.ParseSize(lo)
	if err != nil {
		return literal{}, fmt.Errorf("setting %s: %w", f.Path, err)
	}
	h, err := policies.ParseSize(hi)
	if err != nil {
		return literal{}, fmt.Errorf("setting %s: %w", f.Path, err)
	}
	return literal{"size-" + lo + "-" + hi, obj("description", "A size in bytes: 512, 16KiB, 10MB.",
		"anyOf", []any{obj("type", "integer", "minimum", l, "maximum", h), str(size)}), "expr-string"}, nil
}

// enumLiteral is one of words. A word YAML reads as something else (1.2,
// a number) is also accepted in that form, since the loader reads the
// text.
func enumLiteral(words []string) (literal, error) {
	alts := []any{obj("enum", words)}
	var other []any
	for _, w := range words {
		v, err := yamlValue(w)
		if err != nil {
			return literal{}, err
		}
		if _, ok := v.(string); !ok {
			other = append(other, v)
		}
	}
	if len(other) > 0 {
		alts = append(alts, obj("enum", other))
	}
	return literal{"one-of-" + strings.Join(words, "-"), anyOf(alts...), "expr-string"}, nil
}

// isDescription reports whether a Field's Default describes the default
// ("the machine's host name", "(required)") rather than writing it as YAML.
func isDescription(d string) bool {
	return strings.HasPrefix(d, "(") || (strings.Contains(d, " ") && !strings.HasPrefix(d, "[") && !strings.HasPrefix(d, "{"))
}

// defaultOf is a Field's Default as a JSON value; ok is false when the
// table describes it instead.
func defaultOf(f policies.Field) (any, bool) {
	if isDescription(f.Default) {
		return nil, false
	}
	v, err := yamlValue(f.Default)
	return v, err == nil
}

// yamlValue reads one YAML document as JSON-compatible values.
func yamlValue(s string) (any, error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		return nil, err
	}
	return jsonOf(&n), nil
}

// jsonOf converts a YAML node to the value an editor validates: mapping
// keys are their text (the loader reads them so), scalars take the type
// YAML resolves, aliases are followed. A float JSON cannot hold (.nan,
// .inf) and a timestamp stay text.
func jsonOf(n *yaml.Node) any {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return jsonOf(n.Content[0])
	case yaml.AliasNode:
		return jsonOf(n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = jsonOf(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, c := range n.Content {
			l[i] = jsonOf(c)
		}
		return l
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return n.Value
	}
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return n.Value
		}
	case string, bool, nil, int, int64, uint64:
	default:
		return n.Value
	}
	return v
}

// probeKey is a key no loader mapping knows and none resembles, so that
// the loader lists the keys it knows instead of suggesting one.
const probeKey = "zzzzzzzzzzzz"

// keyProbes are policies with probeKey in each mapping whose keys the
// table does not give.
var keyProbes = map[string]string{
	"route":     "routing:\n  routes:\n    r:\n      type: relay\n      address: a.example\n      " + probeKey + ": 1\n",
	"auth":      "routing:\n  routes:\n    r: {type: relay, address: a.example, auth: {" + probeKey + ": 1}}\n",
	"secret":    "routing:\n  routes:\n    r: {type: relay, address: a.example, auth: {username: u, secret: {" + probeKey + ": 1}}}\n",
	"throttle":  "limits:\n  throttles:\n    - {name: a, rate: 1/s, " + probeKey + ": 1}\n",
	"store":     "limits:\n  store: {url: 'redis://127.0.0.1:6379', " + probeKey + ": 1}\n",
	"list-file": "lists:\n  a: {" + probeKey + ": 1}\n",
	"rule":      "tls:\n  starttls: [{if: 'true', then: require, " + probeKey + ": 1}]\n",
	"expr":      "tls:\n  starttls: {" + probeKey + ": 1}\n",
	// The relay's listeners.
	"listener":       "relay:\n  listeners:\n    - {name: a, address: '127.0.0.1:25', " + probeKey + ": 1}\n",
	"listener-tls":   "relay:\n  listeners:\n    - {name: a, address: '127.0.0.1:25', tls: {cert: c, key: k, " + probeKey + ": 1}}\n",
	"proxy-protocol": "relay:\n  listeners:\n    - {name: a, address: '127.0.0.1:25', proxy-protocol: {trusted: [127.0.0.1], " + probeKey + ": 1}}\n",
}

var knownKeys = regexp.MustCompile(`unknown key "` + probeKey + `" in .* \(known keys: ([^)]*)\)$`)

// probeKeys asks the loader for the keys of each mapping of keyProbes.
func (g *schemaGen) probeKeys() error {
	g.keys = map[string][]string{}
	for what, p := range keyProbes {
		_, err := policies.Parse("probe.yaml", []byte("version: 1\n"+p), policies.Options{Hostname: "mta.example.org"})
		var list policies.ErrorList
		errors.As(err, &list)
		for _, e := range list {
			if m := knownKeys.FindStringSubmatch(e.Message); m != nil {
				g.keys[what] = strings.Split(m[1], ", ")
			}
		}
		if g.keys[what] == nil {
			return fmt.Errorf("the loader did not list the keys of a %s (%v): internal/gendocs/schema.go must learn its new message", what, err)
		}
	}
	return nil
}

// checkKeys fails unless keys are exactly the keys the loader knows in a
// what.
func (g *schemaGen) checkKeys(what string, keys ...string) error {
	known := map[string]bool{}
	for _, k := range g.keys[what] {
		known[k] = true
	}
	for _, k := range keys {
		if !known[k] {
			return fmt.Errorf("the schema has key %q in a %s, the loader does not know it", k, what)
		}
		delete(known, k)
	}
	for _, k := range g.keys[what] {
		if known[k] {
			return fmt.Errorf("the loader knows key %q in a %s, the schema does not: add it to internal/gendocs/schema.go", k, what)
		}
	}
	return nil
}

// closed is a mapping with exactly the keys the loader knows in a what,
// in its order; props gives each key's schema.
func (g *schemaGen) closed(what string, props map[string]*object, required ...string) (*object, error) {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	if err := g.checkKeys(what, keys...); err != nil {
		return nil, err
	}
	p := obj()
	for _, k := range g.keys[what] {
		p.set(k, props[k])
	}
	o := obj("type", "object")
	if len(required) > 0 {
		o.set("required", required)
	}
	return o.set("additionalProperties", false).set("properties", p), nil
}

// def adds a $defs entry, once, and returns a reference to it.
func (g *schemaGen) def(name string, schema *object) *object {
	if _, ok := g.defs.vals[name]; !ok {
		g.defs.set(name, schema)
	}
	return ref(name)
}

// root builds the schema of a whole policy: its sections and settings in
// table order.
func (g *schemaGen) root() (*object, error) {
	for _, e := range exprDefs {
		src, err := g.closed("expr", map[string]*object{"expr": obj("description", "An expression computing "+e.what+".", "type", e.types)}, "expr")
		if err != nil {
			return nil, err
		}
		g.defs.set(e.name, describe("Computed: {expr: SOURCE}, an expression of the setting's type.", nil, src))
	}
	g.defs.set("condition", obj("description", "A boolean expression.", "type", []string{"string", "boolean"}))
	root := obj("$schema", schemaDialect, "$id", schemaID, "title", "Postern policy",
		"description", "A Postern policy file (docs/policy.md). postern check is the judge: this schema is built never to flag a policy the loader accepts, and catches unknown keys and values of the wrong type as you type.",
		"$comment", "Generated by internal/gendocs from policies.Fields(); do not edit. Run make docs.",
		"type", "object")
	var required []string
	sections := map[string]*object{"": obj()}
	used := map[string]bool{}
	for _, f := range policies.Fields() {
		used[f.Path] = true
		parent, key := splitPath(f.Path)
		props := g.section(sections, parent)
		s, err := g.setting(f)
		if err != nil {
			return nil, err
		}
		props.set(key, s)
		if parent == "" && f.Default == "(required)" {
			required = append(required, key)
		}
	}
	for path := range structured {
		if !used[path] {
			return nil, fmt.Errorf("setting %s is gone from policies.Fields(): update structured in internal/gendocs/schema_maps.go", path)
		}
	}
	root.set("required", required).set("additionalProperties", false).set("properties", sections[""])
	return root, nil
}

// section returns the properties of the section at path, creating it
// (and its parents) on first use.
func (g *schemaGen) section(sections map[string]*object, path string) *object {
	if p, ok := sections[path]; ok {
		return p
	}
	parent, key := splitPath(path)
	props := obj()
	sections[path] = props
	// An empty section (`tls:` with nothing under it) loads.
	g.section(sections, parent).set(key, obj("type", []string{"object", "null"}, "additionalProperties", false, "properties", props))
	return props
}

// splitPath splits "a.b.c" into "a.b" and "c".
func splitPath(p string) (string, string) {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// setting is the schema of one setting: its description, default and
// values.
func (g *schemaGen) setting(f policies.Field) (*object, error) {
	var body *object
	var err error
	if build, ok := structured[f.Path]; ok {
		body, err = build(g)
	} else {
		body, err = g.scalar(f)
	}
	if err != nil {
		return nil, fmt.Errorf("setting %s: %w", f.Path, err)
	}
	def, _ := defaultOf(f)
	return describe(f.Doc, def, body), nil
}

// scalar is the schema of a setting of one literal kind: the literal
// alone, or, for a Value, any of its four forms.
func (g *schemaGen) scalar(f policies.Field) (*object, error) {
	if m := versionType.FindStringSubmatch(f.Type); m != nil {
		n, _ := strconv.Atoi(m[1])
		return obj("enum", []any{n, m[1]}), nil
	}
	lit, err := literalOf(f)
	if err != nil {
		return nil, err
	}
	r := g.def(lit.name, lit.schema)
	if !f.IsValue() {
		return r, nil
	}
	value := "value-" + lit.name
	if _, ok := g.defs.vals[value]; !ok {
		v, err := g.value(lit)
		if err != nil {
			return nil, err
		}
		g.defs.set(value, v)
	}
	return ref(value), nil
}

// value is the schema of a Value of kind lit: a literal (or a literal
// list, for a list kind), {expr: ...}, or rules whose then and else are
// literals or {expr: ...}.
func (g *schemaGen) value(lit literal) (*object, error) {
	rules, err := g.rules(lit)
	if err != nil {
		return nil, err
	}
	return obj("description", "A literal, rules (- if: ... then: ...), or {expr: ...}.",
		"anyOf", []any{ref(lit.name), ref(lit.expr), rules}), nil
}

// rules is the schema of a rule list of kind lit: if/then rules and an
// else, whose values are literals or {expr: ...}.
func (g *schemaGen) rules(lit literal) (*object, error) {
	if err := g.checkKeys("rule", "if", "then", "else"); err != nil {
		return nil, err
	}
	g.def(lit.name, lit.schema)
	branch := []any{ref(lit.name), ref(lit.expr)}
	thenRule := obj("type", "object", "required", []string{"if", "then"}, "additionalProperties", false,
		"properties", obj("if", ref("condition"),
			"then", obj("description", "The value when if is true: a literal, or {expr: ...}.", "anyOf", branch)))
	elseRule := obj("type", "object", "required", []string{"else"}, "additionalProperties", false,
		"properties", obj("else", obj("description", "The value when no rule matched: a literal, or {expr: ...}. Must be the last rule.", "anyOf", branch)))
	return obj("description", "Rules: the first if that is true gives the value; else (optional, last) when none is.",
		"type", "array", "minItems", 1, "items", anyOf(thenRule, elseRule)), nil
}
