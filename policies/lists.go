package policies

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/internal/safefile"
	"go.yaml.in/yaml/v3"
)

func decodeLocalDomains(d *decoder, s *Set, n *yaml.Node) {
	for _, it := range d.stringItems(n, "local-domains") {
		dom := strings.TrimSuffix(strings.ToLower(it.value), ".")
		if !expr.IsHostname(dom) {
			d.errorf(it.at, fmt.Sprintf("local-domains[%d]", it.index), "%q is not a domain", dom)
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
