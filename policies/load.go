package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/internal/safefile"
	"go.yaml.in/yaml/v3"
)

// ErrorList is every problem found in a policy, sorted by position. Its
// Error method prints one problem a line (snippets indented under them).
type ErrorList []*expr.Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func sortErrors(l []*expr.Error) {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		return l[i].Column < l[j].Column
	})
}

// Options tune loading.
type Options struct {
	// Hostname is the default of the hostname setting. Empty means the
	// machine's host name (os.Hostname).
	Hostname string
	// MaxSize is the largest policy file LoadFile reads; zero means
	// DefaultMaxPolicySize. (A policy is read before it can say anything
	// about its own bounds, so this one is the caller's.)
	MaxSize int64
}

// DefaultMaxPolicySize is the default of Options.MaxSize: far more than
// any policy needs (long lists belong in {file:} lists).
const DefaultMaxPolicySize = 1 << 20

// maxRules bounds the rules of one setting, counted after YAML aliases
// are expanded: a few hundred bytes of aliases can otherwise make a rule
// list of any length, each rule evaluated for every recipient.
const maxRules = 1000

// LoadFile reads and compiles the policy at path, which must be a regular
// file no larger than opts.MaxSize. On failure the error is an
// [ErrorList] (or an I/O error wrapped with the path).
func LoadFile(path string, opts Options) (*Set, error) {
	max := opts.MaxSize
	if max <= 0 {
		max = DefaultMaxPolicySize
	}
	data, err := safefile.Read(path, max)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data, opts)
}

// Parse compiles a policy read from name (used in positions; relative paths
// inside the policy are resolved from name's directory).
func Parse(name string, data []byte, opts Options) (*Set, error) {
	d := &decoder{file: name, dir: filepath.Dir(name), lines: strings.Split(string(data), "\n")}
	if opts.Hostname == "" {
		opts.Hostname = machineHostname()
	}
	s := newDefaultSet(d, opts.Hostname)
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			d.errs = append(d.errs, &expr.Error{File: name, Line: 1, Column: 1, Setting: "version",
				Message: "the policy is empty: start it with `version: 1`"})
			return nil, ErrorList(d.errs)
		}
		return nil, ErrorList{yamlError(name, err)}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	d.decode(s, doc)
	if d.aliasErr != nil {
		// What follows the spent budget is noise: empty values in place
		// of what the aliases stood for.
		return nil, ErrorList{d.aliasErr}
	}
	sortErrors(d.errs)
	sortErrors(d.warns)
	if len(d.errs) > 0 {
		return nil, ErrorList(d.errs)
	}
	s.Warnings = d.warns
	return s, nil
}

// Defaults returns the policy every setting of which is at its default.
func Defaults(opts Options) *Set {
	if opts.Hostname == "" {
		opts.Hostname = machineHostname()
	}
	d := &decoder{file: "<defaults>"}
	s := newDefaultSet(d, opts.Hostname)
	s.lib = expr.NewLibrary(nil, nil)
	d.lib = s.lib
	d.compileDefaults(s)
	return s
}

func machineHostname() string {
	h, err := os.Hostname()
	if err != nil || !expr.IsHostname(h) {
		return "localhost"
	}
	return strings.ToLower(h)
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: ...") into a
// positioned error.
func yamlError(file string, err error) *expr.Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if _, e := fmt.Sscanf(n, "%d", &line); e == nil {
				msg = after
			}
		}
	}
	// yaml.v3 reports parser errors at the 0-based line of the construct
	// they are in, and scanner errors 1-based: shift the parser ones.
	for _, p := range yamlParserProblems {
		if line > 0 && msg == p {
			line++
			msg += " (in the construct that starts on this line)"
			break
		}
	}
	return &expr.Error{File: file, Line: line, Column: 1, Message: "YAML syntax: " + msg, Err: err}
}

var yamlParserProblems = []string{
	"did not find expected <document start>", "did not find expected node content",
	"did not find expected key", "did not find expected '-' indicator",
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
}

// decoder walks the YAML tree, collecting every problem.
type decoder struct {
	file  string
	dir   string
	lines []string
	errs  []*expr.Error
	warns []*expr.Error
	lib   *expr.Library

	routes     map[string]*Route
	listAt     map[string]Pos
	usedRoutes map[string]bool

	dnsSeen      map[string]*yaml.Node // dns: keys written, for checks across them
	routeDynamic bool
	usedLists    map[string]bool

	aliasNodes int                // nodes reached through aliases so far
	aliasErr   *expr.Error        // the alias budget was spent here
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
	d.errs = append(d.errs, &expr.Error{File: d.file, Line: n.Line, Column: n.Column, Setting: setting,
		Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(n *yaml.Node, setting, format string, args ...any) {
	d.warns = append(d.warns, &expr.Error{File: d.file, Line: n.Line, Column: n.Column, Setting: setting,
		Message: "warning: " + fmt.Sprintf(format, args...)})
}

func (d *decoder) addErr(err error) {
	var pe *expr.Error
	if errors.As(err, &pe) {
		d.errs = append(d.errs, pe)
		return
	}
	d.errs = append(d.errs, &expr.Error{File: d.file, Message: err.Error(), Err: err})
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
			d.aliasErr = &expr.Error{File: d.file, Line: n.Line, Column: n.Column,
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
	d.errs = append(d.errs, &expr.Error{File: d.file, Line: k.Line, Column: k.Column, Setting: join(setting, k.Value), Message: msg})
}

// suggest returns the known word closest to w, if it is close enough to
// be a typo.
func suggest(w string, known []string) string {
	best, bestD := "", max(2, len(w)/3+1)
	for _, k := range known {
		if dist := editDistance(w, k); dist < bestD {
			best, bestD = k, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours ("prot" is one
// edit from "port").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+c)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

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

// hasExprKey reports whether mapping n is {expr: ...}.
func hasExprKey(n *yaml.Node) bool {
	return n.Kind == yaml.MappingNode && len(n.Content) >= 2 && n.Content[0].Value == "expr"
}

// compile compiles the expression in scalar n.
func (d *decoder) compile(n *yaml.Node, spec expr.Spec) *expr.Program {
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
	return p
}

// valueOpts are the per-setting compile options of a Value.
type valueOpts struct {
	extra []string
	why   string
}

// decodeValue fills v from n in any of the four forms.
func decodeValue[T any](d *decoder, n *yaml.Node, v *Value[T], o valueOpts) {
	v.at = d.pos(n)
	spec := expr.Spec{Setting: v.setting, Type: v.k.typ, Phase: v.phase, Extra: o.extra, Why: o.why}
	switch n.Kind {
	case yaml.ScalarNode:
		lit, err := v.k.parse(n)
		if err != nil {
			msg := err.Error()
			if looksLikeExpr(n.Value) {
				msg += " (to compute the value, write {expr: ...} or a list of if/then rules)"
			}
			d.errorf(n, v.setting, "%s", msg)
			return
		}
		v.form, v.lit = formLiteral, lit
	case yaml.SequenceNode:
		if len(n.Content) > 0 && follow(n.Content[0]).Kind == yaml.MappingNode && !hasExprKey(follow(n.Content[0])) {
			decodeRules(d, n, v, spec)
			return
		}
		if !v.k.list {
			if len(n.Content) == 0 {
				d.errorf(n, v.setting, "empty list: write a %s, or rules (- if: ... then: ...)", v.k.name)
			} else {
				d.errorf(n, v.setting, "a list is not allowed here: write a %s, or rules (- if: ... then: ...)", v.k.name)
			}
			return
		}
		lit, err := v.k.parse(n)
		if err != nil {
			d.errorf(n, v.setting, "%v", err)
			return
		}
		v.form, v.lit = formLiteral, lit
	case yaml.MappingNode:
		b, ok := decodeBranch(d, n, v, spec)
		if ok && b.prog != nil {
			v.form, v.els = formExpr, b
		} else if ok {
			v.form, v.lit = formLiteral, b.lit
		}
	default:
		d.errorf(n, v.setting, "expected a %s", v.k.name)
	}
}

func looksLikeExpr(s string) bool {
	return strings.ContainsAny(s, "()=<>!&|?\"'")
}

// decodeBranch reads a then/else/whole value: a literal, or {expr: ...}.
func decodeBranch[T any](d *decoder, n *yaml.Node, v *Value[T], spec expr.Spec) (*branch[T], bool) {
	b := &branch[T]{at: d.pos(n)}
	if n.Kind == yaml.MappingNode {
		ps := d.pairs(n, spec.Setting)
		var src *yaml.Node
		for _, p := range ps {
			if p[0].Value == "expr" {
				src = p[1]
			} else {
				d.unknownKey(p[0], spec.Setting, []string{"expr"})
			}
		}
		if src == nil {
			if len(ps) > 0 {
				return nil, false
			}
			d.errorf(n, spec.Setting, "expected a %s or {expr: ...}", v.k.name)
			return nil, false
		}
		b.at = d.pos(src)
		b.prog = d.compile(src, spec)
		return b, b.prog != nil
	}
	if n.Kind == yaml.SequenceNode && !v.k.list {
		d.errorf(n, spec.Setting, "a list is not allowed here: expected a %s", v.k.name)
		return nil, false
	}
	lit, err := v.k.parse(n)
	if err != nil {
		msg := err.Error()
		if n.Kind == yaml.ScalarNode && looksLikeExpr(n.Value) {
			msg += " (then/else take a literal; to compute it write {expr: ...})"
		}
		d.errorf(n, spec.Setting, "%s", msg)
		return nil, false
	}
	b.lit = lit
	return b, true
}

func decodeRules[T any](d *decoder, n *yaml.Node, v *Value[T], spec expr.Spec) {
	v.form = formRules
	if len(n.Content) > maxRules {
		d.errorf(n, v.setting, "%d rules: a setting has at most %d (to match many values, use a list: lists: and in_list())", len(n.Content), maxRules)
		return
	}
	var alwaysAt *yaml.Node
	for i, item := range n.Content {
		item = d.resolve(item)
		path := fmt.Sprintf("%s[%d]", v.setting, i)
		if item.Kind != yaml.MappingNode {
			d.errorf(item, path, "expected a rule (if: ... then: ...) or else: ..., found a %s", nodeKind(item))
			continue
		}
		if alwaysAt != nil {
			d.warnf(item, path, "this rule can never be reached: the rule at line %d always matches", alwaysAt.Line)
			alwaysAt = nil // warn once
		}
		var ifN, thenN, elseN *yaml.Node
		for _, p := range d.pairs(item, path) {
			switch p[0].Value {
			case "if":
				ifN = p[1]
			case "then":
				thenN = p[1]
			case "else":
				elseN = p[1]
			default:
				d.unknownKey(p[0], path, []string{"if", "then", "else"})
			}
		}
		switch {
		case elseN != nil && (ifN != nil || thenN != nil):
			d.errorf(item, path, "a rule has either if/then or else, not both")
		case elseN != nil:
			if i != len(n.Content)-1 {
				d.errorf(item, path+".else", "else must be the last rule: the rules after it could never be reached")
			}
			es := spec
			es.Setting = path + ".else"
			if b, ok := decodeBranch(d, elseN, v, es); ok {
				v.els = b
				b.at = d.pos(item)
			}
		case ifN == nil:
			d.errorf(item, path, "rule without if: write `if: CONDITION` and `then: VALUE`, or `else: VALUE`")
		case thenN == nil:
			d.errorf(item, path, "rule without then: add `then: VALUE` under the if")
		default:
			cs := expr.Spec{Setting: path + ".if", Type: expr.Bool, Phase: spec.Phase, Extra: spec.Extra, Why: spec.Why}
			cond := d.compile(ifN, cs)
			ts := spec
			ts.Setting = path + ".then"
			b, ok := decodeBranch(d, thenN, v, ts)
			if cond != nil && ok {
				r := rule[T]{cond: cond, then: *b, at: d.pos(item)}
				r.always = cond.AlwaysTrue()
				if r.always && alwaysAt == nil {
					alwaysAt = item
				}
				v.rules = append(v.rules, r)
			}
		}
	}
	if len(n.Content) == 0 {
		d.errorf(n, v.setting, "empty rule list")
	}
}

// stringList reads a scalar or a list of scalars.
func (d *decoder) stringList(n *yaml.Node, setting string) []string {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []string{n.Value}
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for i, it := range n.Content {
			it = d.resolve(it)
			if it.Kind != yaml.ScalarNode {
				d.errorf(it, fmt.Sprintf("%s[%d]", setting, i), "expected a string, found a %s", nodeKind(it))
				continue
			}
			out = append(out, it.Value)
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
