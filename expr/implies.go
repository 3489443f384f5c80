package expr

import (
	"github.com/expr-lang/expr/ast"
)

// Atom is an elementary test of one variable found inside a boolean
// expression by [Program.Implies]: the variable compared with string
// literals, or passed to a function along with string literals.
type Atom struct {
	// Var is the variable tested ("authenticated_as").
	Var string
	// Op is "==", "!=", "in" or "not in" for a comparison, or the name
	// of the function called ("is_ip_in_cidr", "in_list").
	Op string
	// Args are the string literals: the value compared with (one for ==
	// and !=, the list's elements for in), or the function's other
	// arguments, in order.
	Args []string
	// Negated is set for a function call whose result must be false for
	// the test to hold (`!is_ip_in_cidr(...)`). Comparisons are never
	// negated: `!(x == "a")` is the atom x != "a".
	Negated bool
}

// Implies reports whether, whenever the program (of type [Bool]) gives
// want, at least one of the atoms that ok accepts holds. It reasons on the
// expression as written: && and || (and, or), ! and not, the constants
// true and false, comparisons of a variable with string literals (==, !=,
// in a list literal) and calls of the library's functions with one
// variable and string literals. Anything else — a ternary, let, a
// comparison with a computed value, a builtin — is an unknown it cannot
// see through, so the answer is false ("not shown"), never a guess: a true
// answer is a proof, a false one is not a disproof.
//
// ok may be called for atoms that the final answer does not rest on (both
// sides of an || are looked at before either is known to suffice).
//
// For example, `authenticated_as == "" && !is_ip_in_cidr(received_from_ip,
// "10.0.0.0/8")` gives false only when authenticated_as != "" or the
// is_ip_in_cidr call is true; so Implies(false, ok) is true when ok
// accepts both of those atoms.
func (p *Program) Implies(want bool, ok func(Atom) bool) bool {
	if p.typ != Bool || p.tree == nil {
		return false
	}
	return implies(p.tree, want, ok)
}

func implies(n ast.Node, want bool, ok func(Atom) bool) bool {
	switch n := n.(type) {
	case *ast.BoolNode:
		// A constant that never gives want: vacuously true.
		return n.Value != want
	case *ast.UnaryNode:
		if n.Operator == "!" || n.Operator == "not" {
			return implies(n.Node, !want, ok)
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and":
			if want { // both sides hold: either may carry the atom
				return implies(n.Left, true, ok) || implies(n.Right, true, ok)
			}
			// One side is false, which one is not known.
			return implies(n.Left, false, ok) && implies(n.Right, false, ok)
		case "||", "or":
			if want {
				return implies(n.Left, true, ok) && implies(n.Right, true, ok)
			}
			return implies(n.Left, false, ok) || implies(n.Right, false, ok)
		case "==", "!=", "in":
			if a, isAtom := comparisonAtom(n); isAtom {
				if !want {
					a.Op = negatedOp[a.Op]
				}
				return ok(a)
			}
		}
	case *ast.CallNode:
		if a, isAtom := callAtom(n); isAtom {
			a.Negated = !want
			return ok(a)
		}
	}
	return false
}

// negatedOp is the comparison that holds when another does not.
var negatedOp = map[string]string{"==": "!=", "!=": "==", "in": "not in", "not in": "in"}

// comparisonAtom reads `VAR op "literal"`, `"literal" op VAR` (== and !=)
// or `VAR in ["a", "b"]`.
func comparisonAtom(n *ast.BinaryNode) (Atom, bool) {
	if n.Operator == "in" {
		id, ok := n.Left.(*ast.IdentifierNode)
		arr, isArr := n.Right.(*ast.ArrayNode)
		if !ok || !isArr || !isVariable(id.Value) {
			return Atom{}, false
		}
		args := make([]string, 0, len(arr.Nodes))
		for _, e := range arr.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return Atom{}, false
			}
			args = append(args, s.Value)
		}
		return Atom{Var: id.Value, Op: "in", Args: args}, true
	}
	id, ok := n.Left.(*ast.IdentifierNode)
	lit, isLit := n.Right.(*ast.StringNode)
	if !ok || !isLit {
		id, ok = n.Right.(*ast.IdentifierNode)
		lit, isLit = n.Left.(*ast.StringNode)
	}
	if !ok || !isLit || !isVariable(id.Value) {
		return Atom{}, false
	}
	return Atom{Var: id.Value, Op: n.Operator, Args: []string{lit.Value}}, true
}

// callAtom reads a call of a library function whose arguments are one
// variable and string literals.
func callAtom(n *ast.CallNode) (Atom, bool) {
	fn, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || !isFunction(fn.Value) {
		return Atom{}, false
	}
	a := Atom{Op: fn.Value}
	for _, arg := range n.Arguments {
		switch arg := arg.(type) {
		case *ast.StringNode:
			a.Args = append(a.Args, arg.Value)
		case *ast.IdentifierNode:
			if a.Var != "" || !isVariable(arg.Value) {
				return Atom{}, false
			}
			a.Var = arg.Value
		default:
			return Atom{}, false
		}
	}
	return a, a.Var != ""
}

// isVariable reports whether name is one of [Variables]. (A let binding
// cannot shadow a variable: expr-lang refuses it.)
func isVariable(name string) bool {
	_, ok := varIndex[name]
	return ok
}

// isFunction reports whether name is one of [Functions].
func isFunction(name string) bool {
	for _, f := range Functions {
		if f.Name == name {
			return true
		}
	}
	return false
}
