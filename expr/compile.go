package expr

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	exprlang "github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Type is the result type a setting's expression must have.
type Type uint8

// The result types.
const (
	Bool Type = iota
	String
	Int
	StringList
)

// String names the type as error messages do.
func (t Type) String() string {
	switch t {
	case Bool:
		return "bool"
	case String:
		return "string"
	case Int:
		return "int"
	case StringList:
		return "list of strings"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Spec says what an expression is for: the setting it belongs to (its path
// in the policy, for messages), the result type, and the phase.
type Spec struct {
	Setting string // e.g. "routing.route[0].if"
	Type    Type
	Phase   Phase
	// Extra names later-phase variables this setting may use anyway (the
	// route name in tls.mta-sts and throttles).
	Extra []string
	// Why explains, for a phase error, what makes later variables
	// unavailable here ("the route decides which MX hosts exist"). When
	// empty a generic reason for the phase is used.
	Why string
}

// maxNodes bounds the size of one expression: policies are written by
// people, and a bound keeps a hostile file from exhausting memory.
const maxNodes = 2000

// Compile checks source as an expression of spec.Type in spec.Phase and
// compiles it. Errors are *Error values positioned in the file: syntax and
// type errors from expr-lang (with its caret snippet), a variable of a later
// phase, an unknown list, a bad literal CIDR or pattern.
func (l *Library) Compile(source string, spec Spec, pos Position) (*Program, error) {
	if strings.TrimSpace(source) == "" {
		return nil, &Error{File: pos.File, Line: pos.Line, Column: pos.Column, Setting: spec.Setting,
			Message: fmt.Sprintf("empty expression: write an expression of type %s", spec.Type)}
	}
	if err := l.checkShape(source, spec, pos); err != nil {
		return nil, err
	}
	tree, err := parser.Parse(source)
	if err != nil {
		return nil, convert(err, spec, pos)
	}
	c, err := l.check(tree, spec, pos)
	if err != nil {
		return nil, err
	}
	opts := []exprlang.Option{exprlang.Env(Env{}), exprlang.MaxNodes(maxNodes)}
	opts = append(opts, meterOptions...)
	switch spec.Type {
	case Bool:
		opts = append(opts, exprlang.AsBool())
	case String:
		opts = append(opts, exprlang.AsKind(reflect.String))
	case Int:
		opts = append(opts, exprlang.AsInt())
	case StringList:
		opts = append(opts, exprlang.AsKind(reflect.Slice))
	}
	prog, err := compileSafely(source, opts)
	if err != nil {
		return nil, convert(err, spec, pos)
	}
	if t := prog.Node().Type(); t != nil && t.Kind() == reflect.Interface && spec.Type != StringList {
		// expr-lang accepts an expression whose type it cannot know
		// (a ternary with branches of different types) and would fail
		// only at run time. Policies are checked when they load. (Lists
		// are exempt: expr-lang types every array literal as []any, so
		// their elements are checked when the program runs.)
		return nil, &Error{File: pos.File, Line: pos.Line, Column: pos.Column, Setting: spec.Setting,
			Message: fmt.Sprintf("expected %s, but the expression's type is only known at run time: make every branch of type %s", spec.Type, spec.Type)}
	}
	return &Program{prog: prog, tree: tree.Node, steps: l.limits.MaxSteps, typ: spec.Type, source: source, setting: spec.Setting, pos: pos, lists: c.lists, vars: c.vars, notes: c.notes}, nil
}

// compileSafely turns a panic inside expr-lang's compiler (a bug there, but
// policies come from users) into an error.
func compileSafely(source string, opts []exprlang.Option) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("expression could not be compiled: %v", r)
		}
	}()
	return exprlang.Compile(source, opts...)
}

func convert(err error, spec Spec, pos Position) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Snippet == "" && fe.Line == 0 {
			// Some checker errors (a wrong result type) carry no position:
			// point at the whole expression.
			return &Error{File: pos.File, Line: pos.Line, Column: pos.Column, Setting: spec.Setting,
				Message: fe.Message, Err: err}
		}
		return fromExprError(fe, spec, pos)
	}
	return &Error{File: pos.File, Line: pos.Line, Column: pos.Column, Setting: spec.Setting,
		Message: err.Error(), Err: err}
}

// checkShape refuses, before parsing, an expression longer than
// Limits.MaxSize or nested deeper than Limits.MaxDepth. expr-lang's parser
// recurses once per nesting level and applies its node limit only to the
// nodes it has built, so a long run of "(" or "!" would otherwise exhaust
// the goroutine stack: a fatal error no recover can catch.
func (l *Library) checkShape(source string, spec Spec, pos Position) error {
	lim := l.limits
	if len(source) > lim.MaxSize {
		return &Error{File: pos.File, Line: pos.Line, Column: pos.Column, Setting: spec.Setting,
			Message: fmt.Sprintf("expression too long: %d bytes, the limit is %d (limits.expressions.max-size)", len(source), lim.MaxSize)}
	}
	at, ok := nestingWithin(source, lim.MaxDepth)
	if ok {
		return nil
	}
	fe := (&file.Error{Location: file.Location{From: at, To: at + 1},
		Message: fmt.Sprintf("expression nested too deeply: more than %d levels of parentheses, brackets, braces or prefix operators (limits.expressions.max-depth)", lim.MaxDepth)}).
		Bind(file.NewSource(source))
	return fromExprError(fe, spec, pos)
}

// nestingWithin scans source as expr-lang's lexer would (string literals
// skipped) and reports whether the nesting of ( [ { and of runs of prefix
// operators (! - + and the word not) stays within limit. When it does
// not, at is the rune index where the limit is first exceeded.
func nestingWithin(source string, limit int) (at int, ok bool) {
	depth, run, runes := 0, 0, 0
	var quote byte
	for i := 0; i < len(source); i++ {
		c := source[i]
		if c < utf8.RuneSelf || utf8.RuneStart(c) {
			runes++
		}
		if quote != 0 {
			switch {
			case c == '\\' && quote != '`':
				if i++; i < len(source) && (source[i] < utf8.RuneSelf || utf8.RuneStart(source[i])) {
					runes++ // the escaped character
				}
			case c == quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'', '`':
			quote, run = c, 0
		case '(', '[', '{':
			depth++
			run = 0
		case ')', ']', '}':
			depth = max(depth-1, 0)
			run = 0
		case '!', '-', '+':
			run++
		case ' ', '\t', '\n', '\r':
		default:
			if c == 'n' && strings.HasPrefix(source[i:], "not") && (i == 0 || !isIdentByte(source[i-1])) &&
				(i+3 == len(source) || !isIdentByte(source[i+3])) {
				run++
				i += 2
				runes += 2
				break
			}
			run = 0
		}
		if depth+run > limit {
			return runes - 1, false
		}
	}
	return 0, true
}

func isIdentByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// check walks the parsed tree for what expr-lang cannot know: phases,
// list names, literal CIDRs, e-mail parts and domain patterns.
// It returns the names of the lists the expression uses.
func (l *Library) check(tree *parser.Tree, spec Spec, pos Position) (*checker, error) {
	c := &checker{lib: l, spec: spec}
	ast.Walk(&tree.Node, c)
	if c.bad == nil {
		return c, nil
	}
	fe := (&file.Error{Location: c.bad.Location(), Message: c.msg}).Bind(tree.Source)
	return nil, fromExprError(fe, spec, pos)
}

type checker struct {
	lib   *Library
	spec  Spec
	bad   ast.Node
	msg   string
	lists []string
	vars  []string // the variables used, each once
	notes []string // warnings: what loads but cannot be meant
}

func (c *checker) fail(n ast.Node, format string, args ...any) {
	if c.bad == nil { // keep the first problem: later ones often follow from it
		c.bad, c.msg = n, fmt.Sprintf(format, args...)
	}
}

func (c *checker) Visit(np *ast.Node) {
	switch n := (*np).(type) {
	case *ast.IdentifierNode:
		c.identifier(n)
	case *ast.CallNode:
		c.call(n)
	case *ast.BinaryNode:
		c.binary(n)
	case *ast.BuiltinNode:
		if !allowedBuiltins[n.Name] {
			c.fail(n, "%s is not available in policies (the builtins policies may use: %s)", n.Name, strings.Join(Builtins, ", "))
		}
	}
}

func (c *checker) identifier(n *ast.IdentifierNode) {
	name := n.Value
	if name == "$env" {
		c.fail(n, "$env is not available in policies: use the variables by name")
		return
	}
	if strings.HasPrefix(name, "__") {
		// Reserved for the evaluation budget's own functions.
		c.fail(n, "unknown name %s: names starting with __ are reserved", name)
		return
	}
	// expr-lang refuses `let` names that shadow variables, so an
	// identifier that names a variable is that variable.
	v, ok := varIndex[name]
	if ok && !slices.Contains(c.vars, name) {
		c.vars = append(c.vars, name)
	}
	if !ok || v.KnownIn(c.spec.Phase) {
		return // unknown names are reported by expr-lang's checker
	}
	for _, x := range c.spec.Extra {
		if x == name {
			return
		}
	}
	why := c.spec.Why
	if why == "" || v.Phase == Session {
		why = phaseReason(c.spec.Phase, v.Phase)
	}
	setting, _, _ := strings.Cut(c.spec.Setting, "[")
	c.fail(n, "%s is not known when %s is evaluated: %s (%s is a %s-phase variable; %s is a %s-phase setting)",
		name, setting, why, name, v.Phase, setting, c.spec.Phase)
}

func phaseReason(setting, variable Phase) string {
	switch {
	case setting == Session:
		vars := VariablesOf(Session)
		return "it is decided per RCPT command while the relay receives the message, before any delivery: only " +
			strings.Join(vars[:len(vars)-1], ", ") + " and " + vars[len(vars)-1] + " are known then"
	case variable == Session:
		return "it is known only while the relay receives a message over SMTP, in relay.permit, not when the message is delivered"
	case setting == Recipient && variable == Host:
		return "it is decided per recipient, before any MX host is chosen"
	case setting == Recipient:
		return "it is decided per recipient, before any host or address is chosen"
	default:
		return "it is decided per host, before the host's addresses are tried"
	}
}

// lowerVars are the variables whose values are always lower-case.
var lowerVars = map[string]bool{"rcpt_domain": true, "sender_domain": true, "mx": true}

// binary notes a comparison of a lower-cased variable with a literal
// holding upper-case letters: it can never match.
func (c *checker) binary(n *ast.BinaryNode) {
	switch n.Operator {
	case "==", "!=", "endsWith", "startsWith", "contains", "in":
	default:
		return
	}
	id, ok := n.Left.(*ast.IdentifierNode)
	other := n.Right
	if !ok && n.Operator == "==" || !ok && n.Operator == "!=" {
		id, ok = n.Right.(*ast.IdentifierNode)
		other = n.Left
	}
	if !ok || !lowerVars[id.Value] {
		return
	}
	var lits []string
	switch o := other.(type) {
	case *ast.StringNode:
		lits = append(lits, o.Value)
	case *ast.ArrayNode:
		for _, e := range o.Nodes {
			if sn, ok := e.(*ast.StringNode); ok {
				lits = append(lits, sn.Value)
			}
		}
	}
	for _, l := range lits {
		if strings.ToLower(l) != l {
			c.notes = append(c.notes, fmt.Sprintf("%s is always lower-case, so comparing it with %q never matches: write %q", id.Value, l, strings.ToLower(l)))
		}
	}
}

func (c *checker) call(n *ast.CallNode) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || len(n.Arguments) != 2 {
		return // arity is expr-lang's job
	}
	lit, isLit := n.Arguments[0].(*ast.StringNode)
	arg2, isLit2 := n.Arguments[1].(*ast.StringNode)
	switch id.Value {
	case "in_list":
		switch {
		case !isLit:
			c.fail(n.Arguments[0], "in_list: the list name must be a string literal, e.g. in_list(\"microsoft\", rcpt_domain)")
		case !c.lib.HasList(lit.Value):
			c.fail(n.Arguments[0], "in_list: no list named %q%s", lit.Value, c.lib.listHint())
		default:
			c.lists = append(c.lists, lit.Value)
		}
	case "is_ip_in_cidr":
		if isLit2 {
			if _, err := parsePrefix(arg2.Value); err != nil {
				c.fail(n.Arguments[1], "is_ip_in_cidr: %q is not a CIDR prefix (like \"192.0.2.0/24\" or \"2001:db8::/32\")", arg2.Value)
			}
		}
	case "email_part":
		if isLit2 && arg2.Value != "local" && arg2.Value != "domain" {
			c.fail(n.Arguments[1], "email_part: the part must be \"local\" or \"domain\", not %q", arg2.Value)
		}
	case "domain_matches":
		if isLit2 && !validPattern(arg2.Value) {
			c.fail(n.Arguments[1], "domain_matches: %q is not a domain or *.domain pattern", arg2.Value)
		}
	}
}

func (l *Library) listHint() string {
	if len(l.lists) == 0 {
		return " (the policy defines no lists: add it under lists:)"
	}
	names := make([]string, 0, len(l.lists))
	for n := range l.lists {
		names = append(names, n)
	}
	slices.Sort(names)
	return " (lists defined: " + strings.Join(names, ", ") + ")"
}
