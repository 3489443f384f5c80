package policies

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	suggestpkg "github.com/postern-mta/postern/internal/suggest"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// decoder walks the YAML tree, collecting every problem.
type decoder struct {
	file  string
	dir   string
	lines []string
	errs  []*Error
	warns []*Warning
	lib   *expr.Library

	routes     map[string]*Route
	listAt     map[string]Pos
	usedRoutes map[string]bool

	literalAt    map[string]*yaml.Node // literal settings written, by path, for checks across them
	routeDynamic bool
	usedLists    map[string]bool
	usesSite     bool // some expression reads the site variable

	aliasNodes int                // nodes reached through aliases so far
	aliasErr   *Error             // the alias budget was spent here
	sizes      map[*yaml.Node]int // treeSize memo

	// maxFileSize is limits.max-file-size, for the files read while
	// decoding.
	maxFileSize int64
	// compiled remembers the expressions compiled from each YAML node, so
	// that a node reached through many aliases is compiled once.
	compiled map[compileKey]*expr.Program
}

// compileKey identifies one compilation of a YAML node: the same node
// (reached through an alias) compiled for the same type, phase and extra
// variables gives the same program.
type compileKey struct {
	node  *yaml.Node
	typ   expr.Type
	phase expr.Phase
	extra string
	why   string
}

func (d *decoder) pos(n *yaml.Node) Pos { return Pos{File: d.file, Line: n.Line, Column: n.Column} }

func (d *decoder) errorf(n *yaml.Node, setting, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Column: n.Column, Setting: setting,
		Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(n *yaml.Node, setting, format string, args ...any) {
	d.warns = append(d.warns, &Warning{File: d.file, Line: n.Line, Column: n.Column, Setting: setting,
		Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) addErr(err error) {
	var pe *Error
	if errors.As(err, &pe) {
		d.errs = append(d.errs, pe)
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Message: err.Error(), Err: err})
}

// follow follows YAML aliases.
func follow(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// maxAliasNodes bounds what YAML aliases may add to a policy: the nodes
// reached through aliases, counted each time an alias is followed. A few
// kilobytes of aliases of aliases can otherwise stand for billions of
// nodes.
const maxAliasNodes = 100000

// resolve follows YAML aliases, charging the nodes the alias stands for to
// the alias budget. Once the budget is spent it reports it (once) and
// returns an empty value instead, so the decoding that follows stays small.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	if n == nil || n.Kind != yaml.AliasNode {
		return n
	}
	t := follow(n)
	d.aliasNodes += d.treeSize(t)
	if d.aliasNodes > maxAliasNodes {
		if d.aliasErr == nil {
			d.aliasErr = &Error{File: d.file, Line: n.Line, Column: n.Column,
				Message: fmt.Sprintf("YAML aliases expand the policy past %d nodes: write the settings out, or put long lists in {file:} lists", maxAliasNodes)}
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
	}
	return t
}

// treeSize counts the nodes under n, aliases included (counting stops
// past the budget).
func (d *decoder) treeSize(n *yaml.Node) int {
	if size, ok := d.sizes[n]; ok {
		return size
	}
	if d.sizes == nil {
		d.sizes = map[*yaml.Node]int{}
	}
	d.sizes[n] = maxAliasNodes + 1 // a cycle (impossible in YAML) or a long count: over budget
	size := 1
	for _, c := range n.Content {
		if size > maxAliasNodes {
			break
		}
		size += d.treeSize(follow(c))
	}
	d.sizes[n] = size
	return size
}

// pairs returns the key/value pairs of a mapping, reporting duplicate keys
// and merge keys (which would hide settings).
func (d *decoder) pairs(n *yaml.Node, setting string) [][2]*yaml.Node {
	n = d.resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, setting, "expected a mapping (key: value lines), found a %s", nodeKind(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], d.resolve(n.Content[i+1])
		if k.Tag == "!!merge" {
			d.errorf(k, setting, "YAML merge keys (<<) are not supported in policies: write the settings out")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.errorf(k, join(setting, k.Value), "duplicate key (first at line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// unknownKey reports key as not allowed under setting, suggesting the
// nearest known key.
func (d *decoder) unknownKey(k *yaml.Node, setting string, known []string) {
	where := setting
	if where == "" {
		where = "the top level"
	}
	msg := fmt.Sprintf("unknown key %q in %s", k.Value, where)
	if s := suggest(k.Value, known); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	} else {
		msg += " (known keys: " + strings.Join(known, ", ") + ")"
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: k.Line, Column: k.Column, Setting: join(setting, k.Value), Message: msg})
}

// suggest returns the known word closest to w, if it is close enough to
// be a typo.
func suggest(w string, known []string) string { return suggestpkg.Closest(w, known) }

// exprPosition is where the text of scalar n starts in the file, for
// expression error positions. Block scalars (| and >) start on the next
// line, at the block's indentation.
func (d *decoder) exprPosition(n *yaml.Node) expr.Position {
	p := expr.Position{File: d.file, Line: n.Line, Column: n.Column}
	switch {
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		p.Column++
		p.Indent = d.indentAfter(n.Line)
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		line := n.Line + 1
		for line <= len(d.lines) && strings.TrimSpace(d.lines[line-1]) == "" {
			line++
		}
		p.Line = line
		p.Column = d.indentOf(line)
		p.Indent = p.Column
	default:
		p.Indent = d.indentAfter(n.Line)
	}
	return p
}

// indentOf returns the 1-based column of the first non-blank character of
// the 1-based line.
func (d *decoder) indentOf(line int) int {
	if line < 1 || line > len(d.lines) {
		return 1
	}
	s := d.lines[line-1]
	return len(s) - len(strings.TrimLeft(s, " \t")) + 1
}

// indentAfter is the indentation of the line after line: where the
// continuation of a multi-line plain or quoted scalar starts.
func (d *decoder) indentAfter(line int) int { return d.indentOf(line + 1) }

// compile compiles the expression in scalar n.
func (d *decoder) compile(n *yaml.Node, spec expr.Spec) *expr.Program {
	if n.Kind == yaml.ScalarNode && strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		// `if: !is_local_domain(x)`: YAML takes the ! for a tag.
		d.errorf(n, spec.Setting, "YAML reads %s as a tag, not as part of the expression: quote the expression ('%s%s'), or write not instead of !", n.Tag, n.Tag, n.Value)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, spec.Setting, "expected an expression (a string), found a %s", nodeKind(n))
		return nil
	}
	key := compileKey{node: n, typ: spec.Type, phase: spec.Phase, extra: strings.Join(spec.Extra, ","), why: spec.Why}
	if p, ok := d.compiled[key]; ok {
		if p == nil {
			return nil // its error is reported once, at the node
		}
		return p.ForSetting(spec.Setting)
	}
	if d.compiled == nil {
		d.compiled = map[compileKey]*expr.Program{}
	}
	p, err := d.lib.Compile(n.Value, spec, d.exprPosition(n))
	d.compiled[key] = p
	if err != nil {
		d.addErr(err)
		return nil
	}
	for _, name := range p.ListsUsed() {
		d.usedLists[name] = true
	}
	d.usesSite = d.usesSite || p.Uses("site")
	for _, note := range p.Notes() {
		d.warnf(n, spec.Setting, "%s", note)
	}
	return p
}

// stringList reads a scalar or a list of scalars.
func (d *decoder) stringList(n *yaml.Node, setting string) []string {
	items := d.stringItems(n, setting)
	if items == nil {
		return nil
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.value
	}
	return out
}

// stringItem is a string of a list, with its node and its index in the
// list (items that are not strings count too).
type stringItem struct {
	value string
	at    *yaml.Node
	index int
}

// stringItems reads a list of strings like stringList, keeping where each
// string is, for the errors about it.
func (d *decoder) stringItems(n *yaml.Node, setting string) []stringItem {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []stringItem{{n.Value, n, 0}}
	case yaml.SequenceNode:
		out := make([]stringItem, 0, len(n.Content))
		for i, it := range n.Content {
			it = d.resolve(it)
			if it.Kind != yaml.ScalarNode {
				d.errorf(it, fmt.Sprintf("%s[%d]", setting, i), "expected a string, found a %s", nodeKind(it))
				continue
			}
			out = append(out, stringItem{it.Value, it, i})
		}
		return out
	}
	d.errorf(n, setting, "expected a list of strings, found a %s", nodeKind(n))
	return nil
}

// path resolves a relative path against the policy's directory.
func (d *decoder) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.dir, p)
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
