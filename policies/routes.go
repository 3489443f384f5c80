package policies

import (
	"strings"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

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
	if !d.both(n, setting, "username", user, "secret", secret, "auth needs both username and secret (remove auth for no authentication)") {
		return nil
	}
	return a
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

// routeField is routing.route: a Value whose literals must name a defined
// route, and whose default is a rule list.
func routeField() Field {
	const path = "routing.route"
	f := Field{
		Path: path, Type: "route name (mx, local, or one of routing.routes)", Phase: expr.Recipient.String(), value: true,
		Default: "[{if: is_local_domain(rcpt_domain), then: local}, {else: mx}]",
		Doc:     "Which route each recipient takes: mx, local, or a route of routing.routes. If it fails at run time the recipient is deferred (temporary failure).",
		Example: "routing:\n  route:\n    - if: in_list(\"microsoft\", rcpt_domain)\n      then: relay-eu\n    - else: mx",
	}
	f.init = func(s *Set, _ string) {
		k := routeKind(func(name string) bool { _, ok := s.Routes[name]; return ok })
		s.Route = &Value[string]{setting: path, phase: expr.Recipient, k: k, def: "mx", onError: ""}
	}
	f.compile = func(d *decoder, s *Set) {
		if s.Route.form != formDefault {
			return
		}
		n := &yaml.Node{}
		_ = yaml.Unmarshal([]byte("- if: is_local_domain(rcpt_domain)\n  then: local\n- else: mx\n"), n)
		saved := d.file
		d.file = defaultFile
		decodeValue(d, n.Content[0], s.Route, valueOpts{})
		d.file = saved
		s.Route.at = Pos{File: defaultFile}
	}
	o := valueOpts{why: "the route decides which MX hosts exist"}
	f.decode = func(d *decoder, s *Set, n *yaml.Node) {
		decodeValue(d, n, s.Route, o)
		switch s.Route.form {
		case formLiteral:
			d.usedRoutes[s.Route.lit] = true
		case formRules:
			for _, r := range s.Route.rules {
				if r.then.prog != nil {
					d.routeDynamic = true
				}
				d.usedRoutes[r.then.lit] = true
			}
			if s.Route.els != nil {
				if s.Route.els.prog != nil {
					d.routeDynamic = true
				}
				d.usedRoutes[s.Route.els.lit] = true
			}
		default:
			d.routeDynamic = true
		}
	}
	f.node = func(s *Set) *yaml.Node { return s.Route.Node() }
	return f
}

// both reports whether the two keys a and b of the mapping n at setting
// were both given (their nodes an and bn), and reports the first missing
// one at n otherwise ("missing: " and why).
func (d *decoder) both(n *yaml.Node, setting, a string, an *yaml.Node, b string, bn *yaml.Node, why string) bool {
	if an != nil && bn != nil {
		return true
	}
	missing := a
	if an != nil {
		missing = b
	}
	d.errorf(n, setting+"."+missing, "missing: %s", why)
	return false
}
