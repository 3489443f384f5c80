package expr

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	exprlang "github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm/runtime"
)

// Limits bound what one expression may cost. The policy sets them
// (limits.expressions); a zero field takes its default, and no field may
// exceed its ceiling (a hostile policy cannot lift the bounds that keep
// the parser and the evaluator safe).
type Limits struct {
	// MaxSize is the largest expression source, in bytes.
	MaxSize int
	// MaxDepth is the deepest nesting of parentheses, brackets, braces and
	// prefix operators (!, -, +, not) in one expression.
	MaxDepth int
	// MaxSteps is the evaluation budget of one run of one expression: each
	// iteration of all, any, none, one, filter, map, count, find... costs one
	// step, and every 64 bytes built by +, upper, lower, trim, replace,
	// join, split or string cost one step.
	MaxSteps int
}

// Defaults and ceilings of [Limits].
const (
	DefaultMaxSize  = 16 << 10
	DefaultMaxDepth = 64
	DefaultMaxSteps = 100000

	CeilingMaxSize  = 1 << 20
	CeilingMaxDepth = 1000
	CeilingMaxSteps = 100000000

	// bytesPerStep is what one step of the budget buys of string building.
	bytesPerStep = 64
	// sliceElemBytes is what one element of a built list is charged.
	sliceElemBytes = 16
	// ctxEvery is how many steps pass between two looks at the context.
	ctxEvery = 1024
)

// withDefaults fills zero fields and clamps to the ceilings.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d, ceiling int) {
		if *v <= 0 {
			*v = d
		}
		*v = min(*v, ceiling)
	}
	def(&l.MaxSize, DefaultMaxSize, CeilingMaxSize)
	def(&l.MaxDepth, DefaultMaxDepth, CeilingMaxDepth)
	def(&l.MaxSteps, DefaultMaxSteps, CeilingMaxSteps)
	return l
}

// ErrBudget is wrapped by the run-time error of an expression that used up
// its evaluation budget ([Limits.MaxSteps]).
var ErrBudget = errors.New("evaluation budget exceeded")

// Meter counts what one run of a program costs. [Program] runs set
// [Env.Meter] to their VM's meter; code outside this package leaves it
// alone.
type Meter struct {
	used, limit int
	ctx         context.Context
}

func (m *Meter) reset(limit int, ctx context.Context) {
	m.used, m.limit, m.ctx = 0, limit, ctx
}

// charge spends n steps; it fails once the budget is used up, and when the
// evaluation's context is done (checked every ctxEvery steps).
func (m *Meter) charge(n int) error {
	if m == nil {
		return nil
	}
	before := m.used
	m.used += n
	if m.used > m.limit || m.used < before {
		return fmt.Errorf("%w: more than %d steps (limits.expressions.max-steps)", ErrBudget, m.limit)
	}
	if m.ctx != nil && m.used/ctxEvery != before/ctxEvery {
		if err := m.ctx.Err(); err != nil {
			return fmt.Errorf("evaluation interrupted: %w", err)
		}
	}
	return nil
}

// chargeBytes spends the steps n bytes of built strings cost.
func (m *Meter) chargeBytes(n int) error {
	return m.charge(n/bytesPerStep + 1)
}

// Names of the metering functions the patch inserts. Policies cannot name
// them: identifiers starting with "__" are refused (see checker.identifier).
const (
	meterVar = "__meter"
	tickFn   = "__tick"
	concatFn = "__concat"
	addFn    = "__add"
)

// Builtins lists the expr-lang builtins policies may use. The others are
// refused when a policy loads: they are never needed to route mail, and
// several build data without bound (repeat, reduce with a growing
// accumulator, concat, toJSON, ...) or read the clock (now, date).
var Builtins = []string{
	"all", "any", "none", "one", "filter", "map", "count", "find", "findIndex", "findLast", "findLastIndex",
	"len", "abs", "int", "min", "max", "first", "last", "get",
	"lower", "upper", "trim", "trimPrefix", "trimSuffix", "split", "splitAfter", "replace", "join", "string",
	"indexOf", "lastIndexOf", "hasPrefix", "hasSuffix",
}

// allowedBuiltins indexes Builtins.
var allowedBuiltins = func() map[string]bool {
	m := make(map[string]bool, len(Builtins))
	for _, b := range Builtins {
		m[b] = true
	}
	return m
}()

// metered are the builtins that build strings or lists from their
// arguments. Policies call them by their usual names, but the names are
// bound to wrappers that charge the budget for what they build: the
// builtins are disabled, functions of the same names take their place,
// and the patch passes them the meter. Each wrapper has one (variadic)
// signature: expr-lang type-checks the arguments of an overloaded function
// once per overload, so nested calls of an overloaded builtin
// (replace(replace(...))) cost exponential time to compile.
var metered = map[string]struct {
	sig  any                  // the wrapper's type, *Meter first
	size func(args []any) int // bytes the call will build, when known before building it
}{
	"lower":      {sig: new(func(*Meter, string) string)},
	"upper":      {sig: new(func(*Meter, string) string)},
	"trim":       {sig: new(func(*Meter, string, ...string) string)},
	"trimPrefix": {sig: new(func(*Meter, string, ...string) string)},
	"trimSuffix": {sig: new(func(*Meter, string, ...string) string)},
	"string":     {sig: new(func(*Meter, any) string)},
	"replace":    {sig: new(func(*Meter, string, string, string, ...int) string), size: replacedSize},
	"join":       {sig: new(func(*Meter, any, ...string) string), size: joinedSize},
	"split":      {sig: new(func(*Meter, string, string, ...int) []string), size: splitSize},
	"splitAfter": {sig: new(func(*Meter, string, string, ...int) []string), size: splitSize},
}

// replacedSize is the length replace(s, old, new) will have, computed
// before building it.
func replacedSize(args []any) int {
	s, _ := args[0].(string)
	old, _ := args[1].(string)
	repl, _ := args[2].(string)
	n := strings.Count(s, old)
	if old == "" {
		n = utf8.RuneCountInString(s) + 1
	}
	if len(args) > 3 {
		if limit, ok := args[3].(int); ok && limit >= 0 {
			n = min(n, limit)
		}
	}
	return len(s) + n*(len(repl)-len(old))
}

// joinedSize is the length join(list, glue) will have.
func joinedSize(args []any) int {
	glue := ""
	if len(args) > 1 {
		glue, _ = args[1].(string)
	}
	n, items := 0, 0
	switch l := args[0].(type) {
	case []string:
		for _, s := range l {
			n += len(s)
		}
		items = len(l)
	case []any:
		for _, x := range l {
			if s, ok := x.(string); ok {
				n += len(s)
			}
		}
		items = len(l)
	}
	if items > 1 {
		n += (items - 1) * len(glue)
	}
	return n
}

// splitSize is what split(s, sep) will build, in bytes of list.
func splitSize(args []any) int {
	s, _ := args[0].(string)
	sep, _ := args[1].(string)
	n := strings.Count(s, sep) + 1
	if sep == "" {
		n = utf8.RuneCountInString(s)
	}
	return n * sliceElemBytes
}

// builtSize is what a builtin's result holds, charged after the call for
// the builtins whose result is at most a small multiple of their input.
func builtSize(v any) int {
	switch r := v.(type) {
	case string:
		return len(r)
	case []string:
		return len(r) * sliceElemBytes
	}
	return 0
}

// meterOptions are the compile options that make a program meter itself:
// the functions and the patch.
var meterOptions = func() []exprlang.Option {
	opts := []exprlang.Option{
		exprlang.Function(tickFn, func(params ...any) (any, error) {
			m, _ := params[0].(*Meter)
			return true, m.charge(1)
		}, new(func(*Meter) bool)),
		exprlang.Function(concatFn, func(params ...any) (any, error) {
			m, _ := params[0].(*Meter)
			a, b := params[1].(string), params[2].(string)
			if err := m.chargeBytes(len(a) + len(b)); err != nil {
				return nil, err
			}
			return a + b, nil
		}, new(func(*Meter, string, string) string)),
		exprlang.Function(addFn, func(params ...any) (any, error) {
			m, _ := params[0].(*Meter)
			if a, ok := params[1].(string); ok {
				if b, ok := params[2].(string); ok {
					if err := m.chargeBytes(len(a) + len(b)); err != nil {
						return nil, err
					}
					return a + b, nil
				}
			}
			return runtime.Add(params[1], params[2]), nil
		}, new(func(*Meter, any, any) any)),
	}
	for name, w := range metered {
		b := builtin.Builtins[builtin.Index[name]]
		call := b.Func
		if call == nil {
			fast := b.Fast
			call = func(args ...any) (any, error) { return fast(args[0]), nil }
		}
		size := w.size
		opts = append(opts, exprlang.DisableBuiltin(name), exprlang.Function(name, func(params ...any) (any, error) {
			m, _ := params[0].(*Meter)
			args := params[1:]
			if size != nil {
				if err := m.chargeBytes(size(args)); err != nil {
					return nil, err
				}
				return call(args...)
			}
			out, err := call(args...)
			if err != nil {
				return nil, err
			}
			return out, m.chargeBytes(builtSize(out))
		}, w.sig))
	}
	// Two passes: the meter argument first, so that the second sees the
	// result types of the metered calls when it decides how to meter +.
	return append(opts, exprlang.Patch(meterArgs{}), exprlang.Patch(meterConcat{}))
}()

// meterArgs passes the meter to the metered functions and starts every
// predicate body (the per-element part of all, any, map, filter, ...) with
// a tick.
type meterArgs struct{}

func (meterArgs) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.PredicateNode:
		seq := &ast.SequenceNode{Nodes: []ast.Node{meterCall(tickFn, n.Location()), n.Node}}
		seq.SetLocation(n.Node.Location())
		n.Node = seq
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		if _, ok := metered[id.Value]; ok {
			ast.Patch(node, meterCall(id.Value, n.Location(), n.Arguments...))
		}
	}
}

// meterConcat routes + of strings (or of values of unknown type, which may
// be strings) through a metered concatenation.
type meterConcat struct{}

func (meterConcat) Visit(node *ast.Node) {
	n, ok := (*node).(*ast.BinaryNode)
	if !ok || n.Operator != "+" {
		return
	}
	_, lc := n.Left.(*ast.StringNode)
	_, rc := n.Right.(*ast.StringNode)
	if lc && rc {
		return // folded when compiling; bounded by the source size
	}
	l, r := n.Left.Type(), n.Right.Type()
	switch {
	case isKind(l, reflect.String) && isKind(r, reflect.String):
		c := meterCall(concatFn, n.Location(), n.Left, n.Right)
		// Typed now: an enclosing + is visited before the tree is checked
		// again, and must see a string here.
		c.SetType(l)
		ast.Patch(node, c)
	case isKind(l, reflect.Interface) || isKind(r, reflect.Interface):
		ast.Patch(node, meterCall(addFn, n.Location(), n.Left, n.Right))
	}
}

func isKind(t reflect.Type, k reflect.Kind) bool { return t != nil && t.Kind() == k }

// meterCall builds name(__meter, args...) at loc.
func meterCall(name string, loc file.Location, args ...ast.Node) ast.Node {
	m := &ast.IdentifierNode{Value: meterVar}
	m.SetLocation(loc)
	callee := &ast.IdentifierNode{Value: name}
	callee.SetLocation(loc)
	c := &ast.CallNode{Callee: callee, Arguments: append([]ast.Node{m}, args...)}
	c.SetLocation(loc)
	return c
}
