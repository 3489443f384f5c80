package policies

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// kind describes the type of a setting: how to read a literal, which
// expression type computes it, and how to turn an expression's result into a
// value.
type kind[T any] struct {
	name  string    // for messages and docs: `one of disable, optional, require`
	typ   expr.Type // result type of computed forms
	list  bool      // literal may be a YAML sequence of scalars
	parse func(n *yaml.Node) (T, error)
	// fromExpr converts a program's result (string, int, bool or []string)
	// into a value, validating it as a literal would be.
	fromExpr func(any) (T, error)
	format   func(T) *yaml.Node
	text     func(T) string
}

// form is how a Value was written.
type form uint8

const (
	formDefault form = iota // not written: the default applies
	formLiteral
	formRules
	formExpr
)

// branch is a `then`, an `else`, or a whole computed value: a literal or a
// program.
type branch[T any] struct {
	lit  T
	prog *expr.Program
	at   Pos
}

type rule[T any] struct {
	cond   *expr.Program
	then   branch[T]
	at     Pos // position of the `if`
	always bool
}

// Pos is a position in a policy file.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String renders "file:line:col", or "(default)" for the rules a setting
// has when the policy does not set it.
func (p Pos) String() string {
	if p.File == defaultFile {
		return "(default)"
	}
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Value is one setting of a policy, of type T, compiled. It is immutable
// after loading and safe for concurrent use; evaluating it needs a VM and
// an environment owned by the caller.
type Value[T any] struct {
	setting string
	phase   expr.Phase
	k       *kind[T]
	form    form
	at      Pos
	lit     T
	rules   []rule[T]
	els     *branch[T]
	def     T
	onError T // value when evaluation fails: the default, or the strictest TLS mode
	strict  bool
}

// Setting returns the setting's path ("tls.starttls").
func (v *Value[T]) Setting() string { return v.setting }

// Phase returns the phase the setting is evaluated in.
func (v *Value[T]) Phase() expr.Phase { return v.phase }

// Default returns the setting's default value.
func (v *Value[T]) Default() T { return v.def }

// Literal returns the value and true when it does not depend on the message
// (a literal, or not set at all).
func (v *Value[T]) Literal() (T, bool) {
	switch v.form {
	case formLiteral:
		return v.lit, true
	case formDefault:
		return v.def, true
	}
	var zero T
	return zero, false
}

// Eval evaluates the setting. On a run-time error it returns the fallback
// value (the default; for TLS settings the strictest value) together with
// the error, so the caller can both act and report. When tr is not nil,
// every rule evaluated is appended to it.
func (v *Value[T]) Eval(m *expr.VM, env *expr.Env, tr *Trace) (T, error) {
	switch v.form {
	case formDefault:
		if tr != nil {
			tr.add(TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindDefault, Value: v.k.text(v.def)})
		}
		return v.def, nil
	case formLiteral:
		if tr != nil {
			tr.add(TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindLiteral, At: v.at.String(), Value: v.k.text(v.lit)})
		}
		return v.lit, nil
	case formExpr:
		val, err := v.branch(m, env, v.els)
		if tr != nil {
			e := TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindExpr, At: v.at.String(),
				Expr: v.els.prog.Source(), Value: v.k.text(val)}
			if err != nil {
				e.Error = err.Error()
			}
			tr.add(e)
		}
		return val, err
	}
	for i := range v.rules {
		r := &v.rules[i]
		ok, err := r.cond.Bool(m, env)
		if err != nil {
			if tr != nil {
				tr.add(TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindRule, Rule: i + 1,
					At: r.at.String(), If: r.cond.Source(), Error: err.Error(), Value: v.k.text(v.onError)})
			}
			return v.onError, err
		}
		if !ok {
			if tr != nil {
				tr.add(TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindRule, Rule: i + 1,
					At: r.at.String(), If: r.cond.Source()})
			}
			continue
		}
		val, err := v.branch(m, env, &r.then)
		if tr != nil {
			e := TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindRule, Rule: i + 1,
				At: r.at.String(), If: r.cond.Source(), Matched: true, Value: v.k.text(val)}
			if r.then.prog != nil {
				e.Expr = r.then.prog.Source()
			}
			if err != nil {
				e.Error = err.Error()
			}
			tr.add(e)
		}
		return val, err
	}
	if v.els == nil {
		if tr != nil {
			tr.add(TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindDefault, Rule: len(v.rules) + 1,
				Value: v.k.text(v.def)})
		}
		return v.def, nil
	}
	val, err := v.branch(m, env, v.els)
	if tr != nil {
		e := TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: KindElse, Rule: len(v.rules) + 1,
			At: v.els.at.String(), Value: v.k.text(val)}
		if v.els.prog != nil {
			e.Expr = v.els.prog.Source()
		}
		if err != nil {
			e.Error = err.Error()
		}
		tr.add(e)
	}
	return val, err
}

func (v *Value[T]) branch(m *expr.VM, env *expr.Env, b *branch[T]) (T, error) {
	if b.prog == nil {
		return b.lit, nil
	}
	var (
		out any
		err error
	)
	switch v.k.typ {
	case expr.Bool:
		out, err = b.prog.Bool(m, env)
	case expr.Int:
		out, err = b.prog.Int(m, env)
	case expr.StringList:
		out, err = b.prog.Strings(m, env)
	default:
		out, err = b.prog.String(m, env)
	}
	if err != nil {
		return v.onError, err
	}
	val, err := v.k.fromExpr(out)
	if err != nil {
		p := b.prog.Position()
		return v.onError, &expr.Error{File: p.File, Line: p.Line, Column: p.Column, Setting: v.setting,
			Message: "run-time error: the expression returned " + err.Error(), Err: err}
	}
	return val, nil
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

// Trace collects what a dry-run shows: every rule evaluated, in order.
type Trace struct {
	Entries []TraceEntry
}

func (t *Trace) add(e TraceEntry) {
	if t != nil {
		t.Entries = append(t.Entries, e)
	}
}

// The kinds of trace entries.
const (
	KindRule    = "rule"    // an `if` evaluated (Matched says whether it fired)
	KindElse    = "else"    // the `else` of a rule list
	KindDefault = "default" // no rule matched and there is no else, or the setting is absent
	KindLiteral = "literal" // the setting is a literal
	KindExpr    = "expr"    // the setting is a computed expression
)

// TraceEntry is one step of a setting's evaluation.
type TraceEntry struct {
	Setting string `json:"setting"`
	Phase   string `json:"phase"`
	Kind    string `json:"kind"`
	Rule    int    `json:"rule,omitempty"` // 1-based index in the rule list
	At      string `json:"at,omitempty"`   // file:line:col of the rule or literal
	If      string `json:"if,omitempty"`
	Matched bool   `json:"matched"`
	Expr    string `json:"expr,omitempty"` // the computed then/else/expr that produced Value
	Value   string `json:"value,omitempty"`
	Error   string `json:"error,omitempty"`
	// Context names what the setting was evaluated for (a host, an
	// address), filled in by the caller.
	Context string `json:"context,omitempty"`
}

// itoaNode returns an integer scalar node.
func itoaNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func strNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: s}
	if s == "" || strings.ContainsAny(s, ":#{}[],&*!|>'\"%@`") || s != strings.TrimSpace(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}
