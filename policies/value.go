package policies

import (
	"fmt"
	"strings"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

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

// At returns where the policy writes the setting; the zero Pos when it
// does not.
func (v *Value[T]) At() Pos { return v.at }

// Outcomes returns the values the setting is written to take — its literal,
// its default when not written, the literal of each rule and of the else —
// and whether some branch is an expression whose value is only known when
// it runs. The fallback of a run-time error is not an outcome. For
// warnings about what a policy asks for.
func (v *Value[T]) Outcomes() (vals []T, dynamic bool) {
	add := func(b *branch[T]) {
		if b.prog != nil {
			dynamic = true
		} else {
			vals = append(vals, b.lit)
		}
	}
	switch v.form {
	case formDefault:
		return []T{v.def}, false
	case formLiteral:
		return []T{v.lit}, false
	case formExpr:
		add(v.els)
		return vals, dynamic
	}
	for i := range v.rules {
		add(&v.rules[i].then)
	}
	if v.els != nil {
		add(v.els)
	} else {
		vals = append(vals, v.def)
	}
	return vals, dynamic
}

// Eval evaluates the setting. On a run-time error it returns the fallback
// value (the default; for TLS settings the strictest value) together with
// the error, so the caller can both act and report. When tr is not nil,
// every rule evaluated is appended to it.
func (v *Value[T]) Eval(m *expr.VM, env *expr.Env, tr *Trace) (T, error) {
	switch v.form {
	case formDefault:
		if tr != nil {
			tr.add(v.gave(v.entry(KindDefault, 0, Pos{}), v.def, nil, nil))
		}
		return v.def, nil
	case formLiteral:
		if tr != nil {
			tr.add(v.gave(v.entry(KindLiteral, 0, v.at), v.lit, nil, nil))
		}
		return v.lit, nil
	case formExpr:
		val, err := v.branch(m, env, v.els)
		if tr != nil {
			tr.add(v.gave(v.entry(KindExpr, 0, v.at), val, v.els.prog, err))
		}
		return val, err
	}
	for i := range v.rules {
		r := &v.rules[i]
		ok, err := r.cond.Bool(m, env)
		var e TraceEntry
		if tr != nil {
			e = v.entry(KindRule, i+1, r.at)
			e.If = r.cond.Source()
		}
		if err != nil {
			if tr != nil {
				tr.add(v.gave(e, v.onError, nil, err))
			}
			return v.onError, err
		}
		if !ok {
			if tr != nil {
				tr.add(e)
			}
			continue
		}
		val, err := v.branch(m, env, &r.then)
		if tr != nil {
			e.Matched = true
			tr.add(v.gave(e, val, r.then.prog, err))
		}
		return val, err
	}
	if v.els == nil {
		if tr != nil {
			tr.add(v.gave(v.entry(KindDefault, len(v.rules)+1, Pos{}), v.def, nil, nil))
		}
		return v.def, nil
	}
	val, err := v.branch(m, env, v.els)
	if tr != nil {
		tr.add(v.gave(v.entry(KindElse, len(v.rules)+1, v.els.at), val, v.els.prog, err))
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
		return v.onError, &Error{File: p.File, Line: p.Line, Column: p.Column, Setting: v.setting,
			Message: "run-time error: the expression returned " + err.Error(), Err: err}
	}
	return val, nil
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

// hasExprKey reports whether mapping n is {expr: ...}.
func hasExprKey(n *yaml.Node) bool {
	return n.Kind == yaml.MappingNode && len(n.Content) >= 2 && n.Content[0].Value == "expr"
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
	seenIf := map[string]int{} // condition (spaces collapsed) -> line of its first rule
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
			if ifN.Kind == yaml.ScalarNode {
				norm := strings.Join(strings.Fields(ifN.Value), " ")
				if line, dup := seenIf[norm]; dup {
					d.warnf(ifN, path+".if", "this rule can never match: the rule at line %d has the same condition and comes first", line)
				} else {
					seenIf[norm] = ifN.Line
				}
			}
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
