package expr

import (
	"fmt"
	"strings"

	"github.com/expr-lang/expr/file"
)

// Position is where an expression starts in its file. Line and Column are
// 1-based and point at the expression's first character. For an expression
// that spans lines (a YAML block scalar), Indent is the 1-based column at
// which its second and later lines start; 0 means "same as Column".
type Position struct {
	File   string
	Line   int
	Column int
	Indent int
}

// Error is a positioned error in a policy: a load-time problem, or an
// expression that failed at run time. Line and Column are 1-based file
// positions. For expression errors ExprLine/ExprColumn (1-based) locate the
// token inside the expression, and Snippet is expr-lang's caret snippet.
type Error struct {
	File    string
	Line    int
	Column  int
	Setting string
	Message string

	ExprLine   int
	ExprColumn int
	Snippet    string // "\n | source line\n | ....^", or ""

	Err error // underlying cause, if any
}

// Error renders "file:line:col: setting: message", followed by the
// expression position and snippet when there is one.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	} else if e.File != "" {
		b.WriteByte(' ')
	}
	if e.Setting != "" {
		b.WriteString(e.Setting)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Snippet != "" {
		fmt.Fprintf(&b, " (%d:%d)%s", e.ExprLine, e.ExprColumn, e.Snippet)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// fromExprError converts an expr-lang error bound to its source into an
// *Error at the right place in the file.
func fromExprError(fe *file.Error, spec Spec, pos Position) *Error {
	e := &Error{
		File:       pos.File,
		Setting:    spec.Setting,
		Message:    fe.Message,
		ExprLine:   fe.Line,
		ExprColumn: fe.Column + 1,
		Snippet:    fe.Snippet,
		Err:        fe,
	}
	e.Line, e.Column = pos.shift(fe.Line, fe.Column)
	return e
}

// shift maps a 1-based line and 0-based column inside the expression to the
// file.
func (p Position) shift(line, col int) (int, int) {
	if line <= 1 {
		return p.Line, p.Column + col
	}
	indent := p.Indent
	if indent == 0 {
		indent = p.Column
	}
	return p.Line + line - 1, indent + col
}
