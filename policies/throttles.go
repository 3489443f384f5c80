package policies

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// ThrottleKeys are the words a throttle key may contain, besides
// meta.NAME (an embedder-supplied value).
var ThrottleKeys = []string{"sender", "sender_domain", "rcpt", "rcpt_domain", "route", "site", "mx", "remote_ip", "local_ip"}

// metaKeyRE is a meta.NAME throttle key.
var metaKeyRE = regexp.MustCompile(`^meta\.[A-Za-z_][A-Za-z0-9_.-]*$`)

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
					switch {
					case contains(ThrottleKeys, w), metaKeyRE.MatchString(w):
						t.Key = append(t.Key, w)
					case strings.HasPrefix(w, "meta[") || strings.HasPrefix(w, "meta."):
						d.errorf(v, fmt.Sprintf("%s[%d]", kp, j), "%q: a meta key is written meta.NAME (letters, digits, _ . -)", w)
					default:
						d.errorf(v, fmt.Sprintf("%s[%d]", kp, j), "%q is not a throttle key (one of %s, or meta.NAME)", w, strings.Join(ThrottleKeys, ", "))
					}
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
			switch k {
			case "mx", "remote_ip", "local_ip":
				t.Phase = expr.Connection
			case "site":
				t.AfterMX = true
			}
		}
		if t.Phase == expr.Connection {
			t.AfterMX = false // checked per connection, with every variable
		}
		t.PerMessage = t.Phase == expr.Recipient && len(t.Key) > 0
		for _, k := range t.Key {
			t.PerMessage = t.PerMessage && (k == "sender" || k == "sender_domain")
		}
		if match != nil {
			spec := expr.Spec{Setting: path + ".match", Type: expr.Bool, Phase: t.Phase, Extra: routeVars,
				Why: "this throttle is checked per group before DNS because its key has only recipient-phase variables (add site to key to check it per group after the MX lookup, or mx or remote_ip to check it per connection)"}
			if t.AfterMX {
				spec.Extra = siteVars
				spec.Why = "this throttle is checked per group after the MX lookup because its key has site (add mx or remote_ip to key to check it per connection)"
			}
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

// decodeStore reads limits.store: memory, a Redis URL, or a mapping with
// the URL, the password (a secret: {env:} or {file:}, never in the URL
// nor literal) and cluster.
func decodeStore(d *decoder, s *Set, n *yaml.Node) {
	const setting = "limits.store"
	switch n.Kind {
	case yaml.ScalarNode:
		if storeURL(d, n, setting) {
			s.Limits.Store = n.Value
		}
	case yaml.MappingNode:
		var url *yaml.Node
		for _, p := range d.pairs(n, setting) {
			k, v := p[0], p[1]
			switch k.Value {
			case "url":
				url = v
			case "password":
				if v.Kind == yaml.ScalarNode {
					d.errorf(v, setting+".password", "the Redis password is never written in the policy: use {env: NAME} or {file: PATH}")
					continue
				}
				s.Limits.StorePassword = d.secret(v, setting+".password")
			case "cluster":
				b, err := boolKind.parse(v)
				if err != nil {
					d.errorf(v, setting+".cluster", "%v", err)
					continue
				}
				s.Limits.StoreCluster = b
			case "lease-ttl":
				ttl, err := durationKind.parse(v)
				switch {
				case err != nil:
					d.errorf(v, setting+".lease-ttl", "%v", err)
				case ttl < 3*time.Second || ttl > time.Hour:
					d.errorf(v, setting+".lease-ttl", "%s is out of range: between 3s and 1h (a dead process's slots come back after it)", FormatDuration(ttl))
				default:
					s.Limits.StoreLeaseTTL = ttl
				}
			default:
				d.unknownKey(k, setting, []string{"url", "password", "cluster", "lease-ttl"})
			}
		}
		switch {
		case url == nil:
			d.errorf(n, setting+".url", "missing: the Redis server, redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
		case url.Value == "memory":
			d.errorf(url, setting+".url", "memory takes no password or cluster: write store: memory")
		case storeURL(d, url, setting+".url"):
			s.Limits.Store = url.Value
		}
	default:
		d.errorf(n, setting, "expected memory, redis://HOST:PORT/DB, or {url: ..., password: {env: NAME}}")
	}
}

// storeURL checks a limits.store URL: memory, or redis:// or rediss://
// (TLS) with one host:port, or several separated by commas for a Redis
// Cluster, and an optional database number. A password in the URL is
// refused: it would be printed wherever the policy is.
func storeURL(d *decoder, n *yaml.Node, setting string) bool {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, setting, "expected memory or redis://HOST:PORT/DB")
		return false
	}
	if n.Value == "memory" {
		return true
	}
	u, err := url.Parse(n.Value)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		d.errorf(n, setting, "%q is not memory, redis://HOST:PORT/DB or rediss://HOST:PORT/DB (TLS)", redactURL(n.Value))
		return false
	}
	if _, ok := u.User.Password(); ok {
		clean := *u
		clean.User = nil
		if name := u.User.Username(); name != "" {
			clean.User = url.User(name)
		}
		d.errorf(n, setting, "the Redis password is never written in the URL (it would be shown wherever the policy is): write store: {url: %s, password: {env: NAME}}", clean.String())
		return false
	}
	if u.RawQuery != "" || u.Fragment != "" {
		d.errorf(n, setting, "%q: no query or fragment is read (a Cluster is written store: {url: ..., cluster: true}, or with several hosts)", redactURL(n.Value))
		return false
	}
	for _, h := range strings.Split(u.Host, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			d.errorf(n, setting, "%q: %q is not HOST:PORT", redactURL(n.Value), h)
			return false
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if _, err := strconv.Atoi(db); err != nil {
			d.errorf(n, setting, "%q: the Redis database must be a number (redis://HOST:PORT/0)", redactURL(n.Value))
			return false
		}
	}
	return true
}

// redactURL hides a password written in a URL, for messages.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return s
}

func decodeOnStoreError(d *decoder, s *Set, n *yaml.Node) {
	if n.Kind != yaml.ScalarNode || (n.Value != "defer" && n.Value != "allow") {
		d.errorf(n, "limits.on-store-error", "expected defer or allow")
		return
	}
	s.Limits.OnStoreError = n.Value
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

// storeNode writes limits.store back: the URL, or the mapping when a
// password or cluster is set (the password as its source, never its value).
func storeNode(s *Set) *yaml.Node {
	l := s.Limits
	if l.StorePassword.IsZero() && !l.StoreCluster && l.StoreLeaseTTL == 0 {
		return strNode(l.Store)
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, scalar("url"), strNode(l.Store))
	if !l.StorePassword.IsZero() {
		m.Content = append(m.Content, scalar("password"), strNode(l.StorePassword.Source()))
	}
	if l.StoreCluster {
		m.Content = append(m.Content, scalar("cluster"), scalar("true"))
	}
	if l.StoreLeaseTTL > 0 {
		m.Content = append(m.Content, scalar("lease-ttl"), scalar(FormatDuration(l.StoreLeaseTTL)))
	}
	return m
}

// siteVars are the variables a throttle keyed by site may use in its
// match, besides the recipient phase's: it is checked per group after the
// MX lookup.
var siteVars = []string{"route", "route_type", "site"}

// decodeSites reads limits.sites: site name -> MX host patterns.
func decodeSites(d *decoder, s *Set, n *yaml.Node) {
	const setting = "limits.sites"
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, setting, "expected a map of site name to MX host patterns (google: [\"*.google.com\"])")
		return
	}
	for _, p := range d.pairs(n, setting) {
		k, v := p[0], p[1]
		path := setting + "." + k.Value
		if !nameRE.MatchString(k.Value) {
			d.errorf(k, path, "%q is not a valid site name (letters, digits, _ . -)", k.Value)
			continue
		}
		site := Site{Name: k.Value}
		for j, pat := range d.stringList(v, path) {
			pat = strings.ToLower(strings.TrimSuffix(pat, "."))
			host := strings.TrimPrefix(pat, "*.")
			if host == "" || strings.Contains(host, "*") || strings.Count(host, ".") < 1 {
				d.errorf(v, fmt.Sprintf("%s[%d]", path, j), "%q is not an MX host pattern: a host name, or *.DOMAIN for every name under DOMAIN", pat)
				continue
			}
			site.Patterns = append(site.Patterns, pat)
		}
		s.Limits.Sites = append(s.Limits.Sites, site)
	}
}

// sitesNode writes limits.sites back.
func sitesNode(s *Set) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, site := range s.Limits.Sites {
		m.Content = append(m.Content, scalar(site.Name), flowList(site.Patterns))
	}
	if len(m.Content) == 0 {
		m.Style = yaml.FlowStyle
	}
	return m
}
