package policies

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

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
