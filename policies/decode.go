package policies

import (
	"regexp"
	"slices"

	"github.com/postern-mta/postern/expr"
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
	finishRelay(d, s)
	d.checkRelay(s)
	d.lint(s)
	s.Limits.NeedSite = d.usesSite || len(s.Limits.Sites) > 0
	for _, t := range s.Limits.Throttles {
		s.Limits.NeedSite = s.Limits.NeedSite || t.AfterMX
	}
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
	d.lintCredentials(s)
	d.lintLoopbackRelays(s)
	for _, name := range sortedKeys(s.Lists) {
		if !d.usedLists[name] {
			d.warns = append(d.warns, &Warning{File: d.file, Line: d.listAt[name].Line, Column: d.listAt[name].Column,
				Setting: "lists." + name, Message: "list " + name + " is never used (no in_list(\"" + name + "\", ...))"})
		}
	}
	if !d.routeDynamic {
		for _, name := range sortedKeys(s.Routes) {
			r := s.Routes[name]
			if r.At.Line > 0 && !d.usedRoutes[name] {
				d.warns = append(d.warns, &Warning{File: d.file, Line: r.At.Line, Column: r.At.Column,
					Setting: "routing.routes." + name, Message: "route " + name + " is never chosen by routing.route"})
			}
		}
	}
}

// lintCredentials warns about a relay that authenticates while its
// certificate may go unchecked (its allow-invalid-certs, or
// tls.allow-invalid-certs possibly true): whoever sits on the path could
// present any certificate and collect the credentials.
func (d *decoder) lintCredentials(s *Set) {
	vals, dynamic := s.TLS.AllowInvalidCerts.Outcomes()
	global := dynamic || slices.Contains(vals, true)
	for _, name := range sortedKeys(s.Routes) {
		r := s.Routes[name]
		if r.Type != RouteRelay || r.Auth == nil || r.At.Line == 0 || r.AddressIP.IsValid() && r.AddressIP.IsLoopback() {
			continue
		}
		why := ""
		switch {
		case r.AllowInvalidCerts:
			why = "its allow-invalid-certs is true"
		case global:
			why = "tls.allow-invalid-certs may be true for it"
		default:
			continue
		}
		d.warns = append(d.warns, &Warning{File: d.file, Line: r.At.Line, Column: r.At.Column, Setting: "routing.routes." + name,
			Message: "route " + name + " sends credentials but " + why + ": anyone on the path could present a certificate and collect them (verify the relay's certificate, with --ca-file or Options.RootCAs for a private CA)"})
	}
}
