package expr

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/file"

	// textsafe is a leaf package with no imports from this module, so expr
	// stays at the bottom of the import graph (scripts/check-imports.sh).
	"github.com/postern-mta/postern/internal/suggest"
	"github.com/postern-mta/postern/internal/textsafe"
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

// DefaultFile is the file name of positions in the built-in defaults of a
// policy (the rules a setting has when the policy does not set it).
const DefaultFile = "<default>"

// String renders "file:line:col", the file alone without a line, or
// "(default)" for a position in the built-in defaults. The zero Position
// renders "".
func (p Position) String() string {
	switch {
	case p.File == DefaultFile:
		return "(default)"
	case p.Line == 0:
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// LineString is String without the column: "file:line".
func (p Position) LineString() string {
	if p.File == DefaultFile || p.Line == 0 {
		return p.String()
	}
	return p.File + ":" + strconv.Itoa(p.Line)
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

// Position is where the error is in its file.
func (e *Error) Position() Position { return Position{File: e.File, Line: e.Line, Column: e.Column} }

// Error renders "file:line:col: setting: message", followed by the
// expression position and snippet when there is one.
//
// The file name, setting and message can quote a policy (a YAML error, a
// key, a value), so their control characters, invalid UTF-8 and Unicode
// bidirectional controls are escaped (see package textsafe): the text has
// no line break of its own. The only line breaks are the snippet's, each
// followed by " | " and a line whose content is escaped too; the caret
// still points at the same character of the escaped source line.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(textsafe.Escape(e.File))
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	} else if e.File != "" {
		b.WriteByte(' ')
	}
	if e.Setting != "" {
		b.WriteString(textsafe.Escape(e.Setting))
		b.WriteString(": ")
	}
	b.WriteString(textsafe.Escape(e.Message))
	if e.Snippet != "" {
		fmt.Fprintf(&b, " (%d:%d)", e.ExprLine, e.ExprColumn)
		writeSnippet(&b, e.Snippet)
	}
	return b.String()
}

// snippetBreak starts each line of a snippet.
const snippetBreak = "\n | "

// writeSnippet writes a caret snippet with its lines escaped. A snippet of
// the shape expr-lang writes ("\n | " source line "\n | " dots "^", one dot
// per rune before the caret) gets as many dots as the escaped text before
// that rune is wide, so the caret stays under it. Any other snippet keeps
// only its "\n | " line breaks, and everything between them is escaped.
func writeSnippet(b *strings.Builder, snippet string) {
	if rest, ok := strings.CutPrefix(snippet, snippetBreak); ok {
		src, caret, ok := strings.Cut(rest, snippetBreak)
		if ok && !strings.Contains(src, "\n") && strings.TrimLeft(caret, ".") == "^" {
			b.WriteString(snippetBreak)
			b.WriteString(textsafe.Escape(src))
			b.WriteString(snippetBreak)
			b.WriteString(strings.Repeat(".", escapedWidth(src, len(caret)-1)))
			b.WriteByte('^')
			return
		}
	}
	for i, part := range strings.Split(snippet, snippetBreak) {
		if i > 0 {
			b.WriteString(snippetBreak)
		}
		b.WriteString(textsafe.Escape(part))
	}
}

// escapedWidth returns how many runes the first n runes of line take once
// escaped. Runes are counted as expr-lang counts them for its caret (a
// range over the string: an invalid byte is one); a caret past the end of
// the line stays as far past the end.
func escapedWidth(line string, n int) int {
	seen := 0
	for i := range line {
		if seen == n {
			return utf8.RuneCountInString(textsafe.Escape(line[:i]))
		}
		seen++
	}
	return utf8.RuneCountInString(textsafe.Escape(line)) + n - seen
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// fromExprError converts an expr-lang error bound to its source into an
// *Error at the right place in the file.
func fromExprError(fe *file.Error, spec Spec, pos Position) *Error {
	e := &Error{
		File:       pos.File,
		Setting:    spec.Setting,
		Message:    fe.Message + hint(fe.Message),
		ExprLine:   fe.Line,
		ExprColumn: fe.Column + 1,
		Snippet:    windowSnippet(fe.Snippet, fe.Column),
		Err:        fe,
	}
	e.Line, e.Column = pos.shift(fe.Line, fe.Column)
	return e
}

// stalwartNames are functions of Stalwart's expression language (and
// other habits) with what to write here instead.
var stalwartNames = map[string]string{
	"ends_with":    `write x endsWith "suffix" (an operator here)`,
	"starts_with":  `write x startsWith "prefix" (an operator here)`,
	"contains":     `write x contains "part" (an operator here), or in_list("NAME", x) for a list`,
	"to_lowercase": "write lower(x)",
	"to_uppercase": "write upper(x)",
	"is_empty":     `write x == ""`,
	"matches":      `write x matches "regexp" (an operator here; there are no $1 captures: compute each value with its own rule)`,
	"if_then":      "write cond ? a : b",
	"is_ip_addr":   "write is_ipv4(x) || is_ipv6(x)",
}

// hint completes an expr-lang message with what to write instead, for
// the names and operators people bring from Stalwart or other languages.
func hint(msg string) string {
	if name, ok := strings.CutPrefix(msg, "unknown name "); ok {
		name, _, _ = strings.Cut(name, " ")
		if h, ok := stalwartNames[name]; ok {
			return ": " + h
		}
		if near := nearestName(name); near != "" {
			return fmt.Sprintf(": did you mean %s?", near)
		}
		return ""
	}
	if op, ok := strings.CutPrefix(msg, `unexpected token Operator("`); ok {
		op, _, _ = strings.Cut(op, `")`)
		switch {
		case op == "=":
			return ": comparison is written == (= is not an operator here)"
		case stalwartNames[op] != "":
			return ": " + stalwartNames[op]
		}
	}
	return ""
}

// nearestName is the variable, function or builtin closest to name, when
// it is close enough to be a typo.
func nearestName(name string) string {
	vars := make([]string, len(Variables))
	for i, v := range Variables {
		vars[i] = v.Name
	}
	funcs := make([]string, len(Functions))
	for i, f := range Functions {
		funcs[i] = f.Name
	}
	return suggest.Closest(name, vars, funcs, Builtins)
}

// snippetWidth is the most of a source line a snippet shows.
const snippetWidth = 100

// windowSnippet cuts the source line of expr-lang's caret snippet
// ("\n | LINE\n | ....^") to snippetWidth characters around the caret at
// column col (0-based), marking the cuts with "...": an error in a long
// expression must not print all of it (a refused 1 MB expression would
// print a 1 MB line).
func windowSnippet(snippet string, col int) string {
	const prefix = "\n | "
	rest, ok := strings.CutPrefix(snippet, prefix)
	if !ok {
		return snippet
	}
	line, caret, ok := strings.Cut(rest, prefix)
	if !ok {
		return snippet
	}
	runes := []rune(line)
	if len(runes) <= snippetWidth || col < 0 || col > len(runes) || strings.Count(caret, ".") != col {
		return snippet
	}
	start := max(0, col-snippetWidth/2)
	end := min(len(runes), start+snippetWidth)
	var b strings.Builder
	b.WriteString(prefix)
	shift := 0
	if start > 0 {
		b.WriteString("...")
		shift = 3
	}
	b.WriteString(string(runes[start:end]))
	if end < len(runes) {
		b.WriteString("...")
	}
	b.WriteString(prefix)
	b.WriteString(strings.Repeat(".", col-start+shift))
	b.WriteByte('^')
	return b.String()
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
