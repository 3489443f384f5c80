package policies

import (
	"bytes"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Marshal renders s as a complete policy file: every setting, in schema
// order, each with a comment giving its type, phase and default. Secrets are
// written as where they come from, never as their value. Loading the output
// gives back the same settings (secrets aside).
func Marshal(s *Set) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	sections := map[string]*yaml.Node{"": root}
	var section func(path string) *yaml.Node
	section = func(path string) *yaml.Node {
		if m, ok := sections[path]; ok {
			return m
		}
		parent, key := splitPath(path)
		m := &yaml.Node{Kind: yaml.MappingNode}
		p := section(parent)
		p.Content = append(p.Content, scalar(key), m)
		sections[path] = m
		return m
	}
	pending := "" // a setting left out as a comment, for the next key
	for _, f := range fields {
		if f.node == nil {
			continue
		}
		parent, key := splitPath(f.Path)
		if f.Path == "hostname" && s.Hostname != nil && s.Hostname.At().Line == 0 {
			// The default is each machine's own name: writing this
			// machine's would pin every copy of the file to it.
			v := f.node(s)
			pending = fieldComment(f) + "\n" + key + ": " + v.Value + "   (left out: each machine uses its own name)"
			continue
		}
		m := section(parent)
		k := scalar(key)
		k.HeadComment = fieldComment(f)
		if pending != "" {
			k.HeadComment = pending + "\n\n" + k.HeadComment
			pending = ""
		}
		m.Content = append(m.Content, k, f.node(s))
	}
	var buf bytes.Buffer
	buf.WriteString("# Postern policy, version 1: every setting with its default.\n")
	buf.WriteString("# Settings marked \"phase\" accept a literal, a list of if/then rules, or {expr: ...}.\n\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func fieldComment(f Field) string {
	var b strings.Builder
	b.WriteString(f.Type)
	if f.Phase != "literal" {
		b.WriteString("; " + f.Phase + " phase")
	}
	if strings.Contains(f.Default, "\n") || f.Default == "" || f.Path == "version" {
		return b.String()
	}
	b.WriteString("; default: " + f.Default)
	return b.String()
}

// Node renders the value as YAML, the way a policy would write it.
func (v *Value[T]) Node() *yaml.Node {
	switch v.form {
	case formDefault:
		return v.k.format(v.def)
	case formLiteral:
		return v.k.format(v.lit)
	case formExpr:
		return exprNode(v.els.prog.Source())
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, r := range v.rules {
		m := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, scalar("if"), scalar(r.cond.Source()), scalar("then"), v.branchNode(&r.then))
		seq.Content = append(seq.Content, m)
	}
	if v.els != nil {
		m := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, scalar("else"), v.branchNode(v.els))
		seq.Content = append(seq.Content, m)
	}
	return seq
}

func (v *Value[T]) branchNode(b *branch[T]) *yaml.Node {
	if b.prog != nil {
		return exprNode(b.prog.Source())
	}
	return v.k.format(b.lit)
}

func exprNode(src string) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar("expr"), scalar(src)}}
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
}

func strNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: s}
	if s == "" || strings.ContainsAny(s, ":#{}[],&*!|>'\"%@`") || s != strings.TrimSpace(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

// itoaNode returns an integer scalar node.
func itoaNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func flowList(items []string) *yaml.Node {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, it := range items {
		seq.Content = append(seq.Content, strNode(it))
	}
	return seq
}
