package policies

import (
	"bytes"
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
	for _, f := range fields {
		if f.node == nil {
			continue
		}
		parent, key := splitPath(f.Path)
		m := section(parent)
		k := scalar(key)
		k.HeadComment = fieldComment(f)
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
