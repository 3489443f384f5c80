package policies

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/internal/safefile"
	"go.yaml.in/yaml/v3"
)

// newDefaultSet returns a Set with every setting at its default (rule-list
// defaults are compiled later, once the library exists).
func newDefaultSet(d *decoder, hostname string) *Set {
	s := &Set{File: d.file, Dir: d.dir, Lists: map[string][]string{}}
	s.Routes = map[string]*Route{
		"mx":    {Name: "mx", Type: RouteMX},
		"local": {Name: "local", Type: RouteLocal},
	}
	s.DNS = DNS{Resolver: "system", Timeout: 5 * time.Second, Attempts: 2, Concurrency: 8, Budget: 30 * time.Second, TCPOnError: true,
		EDNS: true, DNSSEC: true, Cache: DNSCache{Size: 10000, MaxTTL: 24 * time.Hour, NegativeTTL: 5 * time.Minute}}
	s.Limits.Expressions = expr.Limits{MaxSize: expr.DefaultMaxSize, MaxDepth: expr.DefaultMaxDepth, MaxSteps: expr.DefaultMaxSteps}
	s.Limits.MaxFileSize = DefaultMaxFileSize
	for i := range fields {
		if fields[i].init != nil {
			fields[i].init(s, hostname)
		}
	}
	d.routes = s.Routes
	d.usedRoutes = map[string]bool{}
	d.usedLists = map[string]bool{}
	return s
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// decode reads the document root into s.
func (d *decoder) decode(s *Set, root *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "a policy is a mapping of settings (version: 1, routing: ..., tls: ...), found a %s", nodeKind(root))
		return
	}
	top := d.pairs(root, "")
	// Pass 0: the bounds every file read and every expression obeys.
	for _, p := range top {
		if p[0].Value == "limits" && p[1].Kind == yaml.MappingNode {
			d.early(s, "limits", p[1])
		}
	}
	d.maxFileSize = s.Limits.MaxFileSize
	// Pass 1: what expressions depend on.
	var version *yaml.Node
	for _, p := range top {
		switch p[0].Value {
		case "version":
			version = p[1]
		case "local-domains", "lists":
			fieldIndex[p[0].Value].decode(d, s, p[1])
		case "routing":
			if p[1].Kind == yaml.MappingNode {
				for _, rp := range d.pairs(p[1], "routing") {
					if rp[0].Value == "routes" {
						decodeRoutes(d, s, rp[1])
					}
				}
			}
		}
	}
	switch {
	case version == nil:
		d.errorf(root, "version", "missing: start the policy with `version: 1`")
	case version.Kind != yaml.ScalarNode || version.Value != "1":
		d.errorf(version, "version", "%q is not a supported version: this Postern reads version 1", version.Value)
	}
	s.lib = expr.NewLibrary(s.Lists, s.LocalDomains).WithLimits(s.Limits.Expressions)
	d.lib = s.lib
	// Pass 2: everything else.
	d.section(s, "", top)
	d.compileDefaults(s)
	d.checkDNS(s, root)
	d.lint(s)
}

// early decodes the early (limit) settings under the mapping at path
// prefix, quietly: pass 2 reports what else is wrong there.
func (d *decoder) early(s *Set, prefix string, n *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], follow(n.Content[i+1])
		full := join(prefix, k.Value)
		if f, ok := fieldIndex[full]; ok && f.early && f.decode != nil {
			f.decode(d, s, v)
		} else if _, ok := sectionKeys[full]; ok && v.Kind == yaml.MappingNode {
			d.early(s, full, v)
		}
	}
}

// section decodes the pairs of the mapping at path prefix.
func (d *decoder) section(s *Set, prefix string, pairs [][2]*yaml.Node) {
	for _, p := range pairs {
		k, v := p[0], p[1]
		full := join(prefix, k.Value)
		if f, ok := fieldIndex[full]; ok {
			if !f.early && f.decode != nil {
				f.decode(d, s, v)
			}
			continue
		}
		if _, ok := sectionKeys[full]; ok {
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue // an empty section
			}
			d.section(s, full, d.pairs(v, full))
			continue
		}
		d.unknownKey(k, prefix, sectionKeys[prefix])
	}
}

func (d *decoder) compileDefaults(s *Set) {
	for i := range fields {
		if fields[i].compile != nil {
			fields[i].compile(d, s)
		}
	}
}

// lint adds the warnings that need the whole file.
func (d *decoder) lint(s *Set) {
	for _, name := range sortedKeys(s.Lists) {
		if !d.usedLists[name] {
			d.warns = append(d.warns, &expr.Error{File: d.file, Line: d.listAt[name].Line, Column: d.listAt[name].Column,
				Setting: "lists." + name, Message: "warning: list " + name + " is never used (no in_list(\"" + name + "\", ...))"})
		}
	}
	if !d.routeDynamic {
		for _, name := range sortedKeys(s.Routes) {
			r := s.Routes[name]
			if r.At.Line > 0 && !d.usedRoutes[name] {
				d.warns = append(d.warns, &expr.Error{File: d.file, Line: r.At.Line, Column: r.At.Column,
					Setting: "routing.routes." + name, Message: "warning: route " + name + " is never chosen by routing.route"})
			}
		}
	}
}

func decodeLocalDomains(d *decoder, s *Set, n *yaml.Node) {
	for i, dom := range d.stringList(n, "local-domains") {
		dom = strings.TrimSuffix(strings.ToLower(dom), ".")
		if !expr.IsHostname(dom) {
			item := n
			if n.Kind == yaml.SequenceNode {
				item = n.Content[i]
			}
			d.errorf(item, fmt.Sprintf("local-domains[%d]", i), "%q is not a domain", dom)
			continue
		}
		s.LocalDomains = append(s.LocalDomains, dom)
	}
}

func decodeLists(d *decoder, s *Set, n *yaml.Node) {
	if d.listAt == nil {
		d.listAt = map[string]Pos{}
	}
	for _, p := range d.pairs(n, "lists") {
		name, path := p[0].Value, "lists."+p[0].Value
		if !nameRE.MatchString(name) {
			d.errorf(p[0], path, "%q is not a valid list name (letters, digits, _ . -)", name)
			continue
		}
		d.listAt[name] = d.pos(p[0])
		v := p[1]
		if v.Kind == yaml.MappingNode {
			s.Lists[name] = d.listFile(v, path)
			continue
		}
		entries := d.stringList(v, path)
		if entries == nil {
			entries = []string{}
		}
		s.Lists[name] = entries
	}
}

// listFile reads a {file: PATH} list: one entry a line, # comments.
func (d *decoder) listFile(n *yaml.Node, setting string) []string {
	var file *yaml.Node
	for _, p := range d.pairs(n, setting) {
		if p[0].Value == "file" {
			file = p[1]
		} else {
			d.unknownKey(p[0], setting, []string{"file"})
		}
	}
	if file == nil || file.Kind != yaml.ScalarNode || file.Value == "" {
		d.errorf(n, setting, "expected a list of strings or {file: PATH}")
		return []string{}
	}
	f, err := safefile.Open(d.path(file.Value))
	if err != nil {
		d.errorf(file, setting+".file", "cannot read the list: %v", err)
		return []string{}
	}
	defer f.Close()
	out := []string{}
	sc := bufio.NewScanner(safefile.Reader(f, file.Value, d.maxFileSize))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is longer than %d bytes", bufio.MaxScanTokenSize)
		}
		d.errorf(file, setting+".file", "cannot read the list: %v", err)
	}
	return out
}

func listsNode(s *Set) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, name := range sortedKeys(s.Lists) {
		m.Content = append(m.Content, scalar(name), flowList(s.Lists[name]))
	}
	if len(m.Content) == 0 {
		m.Style = yaml.FlowStyle
	}
	return m
}

var routeKeys = []string{"type", "address", "port", "protocol", "implicit-tls", "allow-invalid-certs", "allow-plaintext-auth", "auth", "description"}

func decodeRoutes(d *decoder, s *Set, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	for _, p := range d.pairs(n, "routing.routes") {
		name, path := p[0].Value, "routing.routes."+p[0].Value
		switch {
		case name == "mx" || name == "local":
			d.errorf(p[0], path, "%s is a built-in route and cannot be redefined: give your route another name", name)
			continue
		case !nameRE.MatchString(name):
			d.errorf(p[0], path, "%q is not a valid route name (letters, digits, _ . -)", name)
			continue
		}
		r := &Route{Name: name, Port: 25, Protocol: "smtp", At: d.pos(p[0])}
		s.Routes[name] = r
		fieldsSeen := map[string]*yaml.Node{}
		for _, rp := range d.pairs(p[1], path) {
			k, v := rp[0], rp[1]
			kp := path + "." + k.Value
			fieldsSeen[k.Value] = k
			switch k.Value {
			case "type":
				if t, err := enumKind(RouteMX, RouteLocal, RouteRelay).parse(v); err != nil {
					d.errorf(v, kp, "%v", err)
				} else {
					r.Type = t
				}
			case "address":
				r.Address = d.routeAddress(v, kp, r)
			case "port":
				if i, err := intKind(1, 65535).parse(v); err != nil {
					d.errorf(v, kp, "%v", err)
				} else {
					r.Port = i
				}
			case "protocol":
				if t, err := enumKind("smtp", "lmtp").parse(v); err != nil {
					d.errorf(v, kp, "%v", err)
				} else {
					r.Protocol = t
				}
			case "implicit-tls", "allow-invalid-certs", "allow-plaintext-auth":
				b, err := boolKind.parse(v)
				if err != nil {
					d.errorf(v, kp, "%v", err)
				}
				switch k.Value {
				case "implicit-tls":
					r.ImplicitTLS = b
				case "allow-invalid-certs":
					r.AllowInvalidCerts = b
				default:
					r.AllowPlaintextAuth = b
				}
			case "auth":
				r.Auth = d.auth(v, kp)
			case "description":
				if v.Kind != yaml.ScalarNode {
					d.errorf(v, kp, "expected a string")
				}
			default:
				d.unknownKey(k, path, routeKeys)
			}
		}
		if fieldsSeen["type"] == nil {
			d.errorf(p[0], path+".type", "missing: say type: relay (or mx, local)")
			continue
		}
		if r.Type == RouteRelay && fieldsSeen["address"] == nil {
			d.errorf(p[0], path+".address", "missing: a relay route needs the host name or IP address of the relay")
		}
		if r.Type != RouteRelay {
			for _, k := range routeKeys[1:] {
				if kn := fieldsSeen[k]; kn != nil && k != "description" {
					d.errorf(kn, path+"."+k, "only relay routes take %s (this route has type %s)", k, r.Type)
				}
			}
		}
	}
}

// routeAddress validates a relay address: a host name or an IP literal
// (optionally in brackets).
func (d *decoder) routeAddress(v *yaml.Node, setting string, r *Route) string {
	if v.Kind != yaml.ScalarNode || v.Value == "" {
		d.errorf(v, setting, "expected a host name or IP address")
		return ""
	}
	a := strings.TrimSuffix(strings.TrimPrefix(v.Value, "["), "]")
	if ip, err := parseIP(a); err == nil {
		r.AddressIP = ip
		return ip.String()
	}
	if strings.ContainsAny(a, ":/") {
		d.errorf(v, setting, "%q is not a host name or IP address (the port goes in port:)", v.Value)
		return ""
	}
	if !expr.IsHostname(a) {
		d.errorf(v, setting, "%q is not a host name or IP address", v.Value)
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(a), ".")
}

func (d *decoder) auth(n *yaml.Node, setting string) *Auth {
	a := &Auth{}
	var user, secret *yaml.Node
	for _, p := range d.pairs(n, setting) {
		switch p[0].Value {
		case "username":
			user = p[1]
			if p[1].Kind != yaml.ScalarNode || p[1].Value == "" {
				d.errorf(p[1], setting+".username", "expected a user name")
			}
			a.Username = p[1].Value
		case "secret":
			secret = p[1]
			a.Secret = d.secret(p[1], setting+".secret")
		default:
			d.unknownKey(p[0], setting, []string{"username", "secret"})
		}
	}
	if user == nil || secret == nil {
		missing := "username"
		if user != nil {
			missing = "secret"
		}
		d.errorf(n, setting+"."+missing, "missing: auth needs both username and secret (remove auth for no authentication)")
		return nil
	}
	return a
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) secret(n *yaml.Node, setting string) Secret {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "" {
			d.errorf(n, setting, "empty secret")
		}
		d.warnf(n, setting, "literal secret in the policy file: prefer {env: NAME} or {file: PATH}")
		return LiteralSecret(n.Value)
	}
	var sec Secret
	for _, p := range d.pairs(n, setting) {
		k, v := p[0], p[1]
		if !sec.IsZero() {
			d.errorf(k, setting, "a secret is {env: NAME} or {file: PATH}, not both")
			continue
		}
		switch k.Value {
		case "env":
			if v.Kind != yaml.ScalarNode || !envNameRE.MatchString(v.Value) {
				d.errorf(v, setting+".env", "%q is not an environment variable name", v.Value)
				continue
			}
			sec = EnvSecret(v.Value)
			if val, ok := os.LookupEnv(v.Value); !ok {
				d.warnf(v, setting+".env", "environment variable %s is not set here", v.Value)
			} else if val == "" {
				d.warnf(v, setting+".env", "environment variable %s is set but empty here", v.Value)
			}
		case "file":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				d.errorf(v, setting+".file", "expected a file path")
				continue
			}
			sec = Secret{kind: "file", ref: d.path(v.Value), shown: v.Value, max: d.maxFileSize}
			// Read it now, as delivery will (the value is dropped). A file
			// that is missing or unreadable here may exist where the
			// policy runs: a warning. One that can never be read as a
			// secret (a FIFO, a device, too large) is an error.
			if _, err := sec.Resolve(); errors.Is(err, safefile.ErrNotRegular) || errors.Is(err, safefile.ErrTooLarge) {
				d.errorf(v, setting+".file", "cannot use the secret file: %v", err)
			} else if err != nil {
				d.warnf(v, setting+".file", "cannot read the secret file here: %v", err)
			}
		default:
			d.unknownKey(k, setting, []string{"env", "file"})
		}
	}
	if sec.IsZero() {
		d.errorf(n, setting, "expected {env: NAME}, {file: PATH} or a string")
	}
	return sec
}

func routesNode(s *Set) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, name := range sortedKeys(s.Routes) {
		r := s.Routes[name]
		if name == "mx" || name == "local" {
			continue
		}
		rm := &yaml.Node{Kind: yaml.MappingNode}
		add := func(k string, v *yaml.Node) { rm.Content = append(rm.Content, scalar(k), v) }
		add("type", strNode(string(r.Type)))
		if r.Type == RouteRelay {
			add("address", strNode(r.Address))
			add("port", itoaNode(r.Port))
			add("protocol", strNode(r.Protocol))
			add("implicit-tls", boolKind.format(r.ImplicitTLS))
			add("allow-invalid-certs", boolKind.format(r.AllowInvalidCerts))
			add("allow-plaintext-auth", boolKind.format(r.AllowPlaintextAuth))
			if r.Auth != nil {
				add("auth", &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
					scalar("username"), strNode(r.Auth.Username), scalar("secret"), strNode(r.Auth.Secret.Source())}})
			}
		}
		m.Content = append(m.Content, scalar(name), rm)
	}
	if len(m.Content) == 0 {
		m.Style = yaml.FlowStyle
	}
	return m
}

// ThrottleKeys are the words a throttle key may contain.
var ThrottleKeys = []string{"sender", "sender_domain", "rcpt", "rcpt_domain", "route", "mx", "remote_ip", "local_ip"}

func decodeThrottles(d *decoder, s *Set, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "limits.throttles", "expected a list of throttles (- name: ...)")
		return
	}
	names := map[string]int{}
	for i, item := range n.Content {
		item = d.resolve(item)
		path := fmt.Sprintf("limits.throttles[%d]", i)
		t := &Throttle{At: d.pos(item)}
		var match, name *yaml.Node
		for _, p := range d.pairs(item, path) {
			k, v := p[0], p[1]
			kp := path + "." + k.Value
			switch k.Value {
			case "name":
				name = v
				t.Name = v.Value
			case "match":
				match = v
			case "key":
				for j, w := range d.stringList(v, kp) {
					if !contains(ThrottleKeys, w) {
						d.errorf(v, fmt.Sprintf("%s[%d]", kp, j), "%q is not a throttle key (one of %s)", w, strings.Join(ThrottleKeys, ", "))
						continue
					}
					t.Key = append(t.Key, w)
				}
			case "concurrency":
				if c, err := intKind(1, 1000000).parse(v); err != nil {
					d.errorf(v, kp, "%v", err)
				} else {
					t.Concurrency = c
				}
			case "rate":
				if v.Kind != yaml.ScalarNode {
					d.errorf(v, kp, "expected a rate like 100/1m")
				} else if r, err := ParseRate(v.Value); err != nil {
					d.errorf(v, kp, "%v", err)
				} else {
					t.Rate = r
				}
			case "enable", "description":
				d.errorf(k, kp, "not supported: remove the throttle (or comment it out) instead")
			default:
				d.unknownKey(k, path, []string{"name", "match", "key", "concurrency", "rate"})
			}
		}
		switch {
		case name == nil || t.Name == "":
			d.errorf(item, path+".name", "missing: every throttle needs a unique name")
		case !nameRE.MatchString(t.Name):
			d.errorf(name, path+".name", "%q is not a valid throttle name (letters, digits, _ . -)", t.Name)
		case names[t.Name] > 0:
			d.errorf(name, path+".name", "duplicate throttle name %q (first at line %d)", t.Name, names[t.Name])
		default:
			names[t.Name] = name.Line
		}
		if seen := d.keysOf(item); !seen["concurrency"] && !seen["rate"] {
			d.errorf(item, path, "a throttle needs concurrency, rate, or both")
		}
		t.Phase = expr.Recipient
		for _, k := range t.Key {
			if k == "mx" || k == "remote_ip" || k == "local_ip" {
				t.Phase = expr.Connection
			}
		}
		if match != nil {
			spec := expr.Spec{Setting: path + ".match", Type: expr.Bool, Phase: t.Phase, Extra: routeVars,
				Why: "this throttle is checked per group before DNS because its key has only recipient-phase variables (add mx or remote_ip to key to check it per connection)"}
			t.Match = d.compile(match, spec)
		}
		s.Limits.Throttles = append(s.Limits.Throttles, t)
	}
}

func contains(list []string, w string) bool {
	for _, x := range list {
		if x == w {
			return true
		}
	}
	return false
}

func throttlesNode(s *Set) *yaml.Node {
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, t := range s.Limits.Throttles {
		m := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, scalar("name"), strNode(t.Name))
		if t.Match != nil {
			m.Content = append(m.Content, scalar("match"), strNode(t.Match.Source()))
		}
		m.Content = append(m.Content, scalar("key"), flowList(t.Key))
		if t.Concurrency > 0 {
			m.Content = append(m.Content, scalar("concurrency"), itoaNode(t.Concurrency))
		}
		if t.Rate.Count > 0 {
			m.Content = append(m.Content, scalar("rate"), strNode(t.Rate.String()))
		}
		seq.Content = append(seq.Content, m)
	}
	if len(seq.Content) == 0 {
		seq.Style = yaml.FlowStyle
	}
	return seq
}

func decodeStore(d *decoder, s *Set, n *yaml.Node) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "limits.store", "expected memory or redis://HOST:PORT/DB")
		return
	}
	if n.Value == "memory" {
		s.Limits.Store = "memory"
		return
	}
	u, err := url.Parse(n.Value)
	if err != nil || u.Scheme != "redis" || u.Host == "" {
		d.errorf(n, "limits.store", "%q is not memory or redis://HOST:PORT/DB", n.Value)
		return
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if _, err := strconv.Atoi(db); err != nil {
			d.errorf(n, "limits.store", "%q: the Redis database must be a number (redis://HOST:PORT/0)", n.Value)
			return
		}
	}
	s.Limits.Store = n.Value
}

// dnsField declares a literal-only setting of the dns: block.
func dnsField(path, typ, def, doc string) Field {
	return Field{Path: path, Type: typ, Phase: "literal", Default: def, Doc: doc,
		decode: func(d *decoder, s *Set, n *yaml.Node) { d.dnsSetting(s, path, n) },
		node:   func(s *Set) *yaml.Node { return dnsNode(s, path) }}
}

var resolverKind = enumKind("system", "custom", "cloudflare", "google", "quad9", "static")

func (d *decoder) dnsSetting(s *Set, path string, n *yaml.Node) {
	c := &s.DNS
	errf := func(err error) { d.errorf(n, path, "%v", err) }
	dur := func(dst *time.Duration) {
		if v, err := durationKind.parse(n); err != nil {
			errf(err)
		} else {
			*dst = v
		}
	}
	boolean := func(dst *bool) {
		if v, err := boolKind.parse(n); err != nil {
			errf(err)
		} else {
			*dst = v
		}
	}
	integer := func(dst *int, lo, hi int) {
		if v, err := intKind(lo, hi).parse(n); err != nil {
			errf(err)
		} else {
			*dst = v
		}
	}
	if d.dnsSeen == nil {
		d.dnsSeen = map[string]*yaml.Node{}
	}
	d.dnsSeen[strings.TrimPrefix(path, "dns.")] = n
	switch path {
	case "dns.resolver":
		if v, err := resolverKind.parse(n); err != nil {
			errf(err)
		} else {
			c.Resolver = v
		}
	case "dns.servers":
		for i, srv := range d.stringList(n, path) {
			if err := checkServer(srv); err != nil {
				item := n
				if n.Kind == yaml.SequenceNode {
					item = n.Content[i]
				}
				d.errorf(item, fmt.Sprintf("%s[%d]", path, i), "%v", err)
				continue
			}
			c.Servers = append(c.Servers, srv)
		}
	case "dns.zone-file":
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "expected a file path")
			return
		}
		if n.Value == "" {
			return // not set
		}
		c.ZoneFile, c.ZoneFileAt = d.path(n.Value), d.pos(n)
	case "dns.secure":
		boolean(&c.Secure)
	case "dns.timeout":
		dur(&c.Timeout)
		c.TimeoutSet = true
	case "dns.attempts":
		integer(&c.Attempts, 1, 10)
		c.AttemptsSet = true
	case "dns.concurrency":
		integer(&c.Concurrency, 1, 1000)
	case "dns.budget":
		dur(&c.Budget)
		if c.Budget <= 0 {
			d.errorf(n, path, "the DNS budget must be more than 0s")
		}
	case "dns.tcp-on-error":
		boolean(&c.TCPOnError)
	case "dns.edns":
		boolean(&c.EDNS)
	case "dns.dnssec":
		boolean(&c.DNSSEC)
	case "dns.cache.size":
		integer(&c.Cache.Size, 1, 10000000)
	case "dns.cache.min-ttl":
		dur(&c.Cache.MinTTL)
	case "dns.cache.max-ttl":
		dur(&c.Cache.MaxTTL)
	case "dns.cache.negative-ttl":
		dur(&c.Cache.NegativeTTL)
	}
}

// checkDNS validates the dns: block as a whole.
func (d *decoder) checkDNS(s *Set, root *yaml.Node) {
	c := &s.DNS
	at := d.dnsSeen["resolver"]
	if at == nil {
		at = root
	}
	switch c.Resolver {
	case "custom":
		if len(c.Servers) == 0 {
			d.errorf(at, "dns.servers", "missing: resolver: custom needs at least one server (udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME)")
		}
	case "static":
		if c.ZoneFile == "" {
			d.errorf(at, "dns.zone-file", "missing: resolver: static answers from a zone file: add zone-file: PATH")
		}
		// The zone itself is read and checked where the resolver is
		// built (engine.New, which postern check runs too).
	}
	if c.Resolver != "static" {
		if n := d.dnsSeen["zone-file"]; n != nil && c.ZoneFile != "" {
			d.warnf(n, "dns.zone-file", "only used with resolver: static (the resolver is %s)", c.Resolver)
		}
		if n := d.dnsSeen["secure"]; n != nil && c.Secure {
			d.warnf(n, "dns.secure", "only used with resolver: static (the resolver is %s)", c.Resolver)
		}
	}
	if n := d.dnsSeen["servers"]; n != nil && c.Resolver != "custom" && len(c.Servers) > 0 {
		d.warnf(n, "dns.servers", "only used with resolver: custom (the resolver is %s)", c.Resolver)
	}
	if c.Cache.MinTTL > c.Cache.MaxTTL {
		d.errorf(at, "dns.cache.min-ttl", "min-ttl (%s) is larger than max-ttl (%s)", FormatDuration(c.Cache.MinTTL), FormatDuration(c.Cache.MaxTTL))
	}
}

// checkServer validates udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME.
func checkServer(s string) error {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "udp" && scheme != "tcp" && scheme != "tls") {
		return fmt.Errorf("%q is not a DNS server: write udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT#NAME", s)
	}
	hostport, name, hasName := strings.Cut(rest, "#")
	if scheme == "tls" && (!hasName || !expr.IsHostname(name)) {
		return fmt.Errorf("%q: a DNS-over-TLS server needs the name on its certificate: tls://IP:PORT#NAME", s)
	}
	if scheme != "tls" && hasName {
		return fmt.Errorf("%q: #NAME is only for tls:// servers", s)
	}
	if _, err := netip.ParseAddrPort(hostport); err != nil {
		return fmt.Errorf("%q is not a DNS server: %s is not IP:PORT (IPv6 as [::1]:53)", s, hostport)
	}
	return nil
}

func dnsNode(s *Set, path string) *yaml.Node {
	c := &s.DNS
	switch path {
	case "dns.resolver":
		return strNode(c.Resolver)
	case "dns.servers":
		return flowList(c.Servers)
	case "dns.zone-file":
		return strNode(c.ZoneFile)
	case "dns.secure":
		return boolKind.format(c.Secure)
	case "dns.timeout":
		return durationKind.format(c.Timeout)
	case "dns.attempts":
		return itoaNode(c.Attempts)
	case "dns.concurrency":
		return itoaNode(c.Concurrency)
	case "dns.budget":
		return durationKind.format(c.Budget)
	case "dns.tcp-on-error":
		return boolKind.format(c.TCPOnError)
	case "dns.edns":
		return boolKind.format(c.EDNS)
	case "dns.dnssec":
		return boolKind.format(c.DNSSEC)
	case "dns.cache.size":
		return itoaNode(c.Cache.Size)
	case "dns.cache.min-ttl":
		return durationKind.format(c.Cache.MinTTL)
	case "dns.cache.max-ttl":
		return durationKind.format(c.Cache.MaxTTL)
	case "dns.cache.negative-ttl":
		return durationKind.format(c.Cache.NegativeTTL)
	}
	return scalar("")
}

// keysOf returns the keys of mapping n.
func (d *decoder) keysOf(n *yaml.Node) map[string]bool {
	keys := map[string]bool{}
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			keys[n.Content[i].Value] = true
		}
	}
	return keys
}
