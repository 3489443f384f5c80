package policies

import (
	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/internal/jsonout"
)

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

// TraceEntry is one step of a setting's evaluation. Its JSON shape is
// the dry-run's (see MarshalJSON).
type TraceEntry struct {
	Setting string
	Phase   string
	Kind    string // one of the Kind constants
	Rule    int    // 1-based index in the rule list; 0 when there is none
	At      Pos    // where the rule or literal is written; zero for a default
	If      string // the condition of a rule
	Matched bool   // a rule's condition held
	Expr    string // the computed then/else/expr that produced Value
	Value   string
	Error   string
	// Context names what the setting was evaluated for (a host, an
	// address), filled in by the caller.
	Context string
}

// MarshalJSON writes the entry the way the dry-run shows it: "if" and
// "matched" only on rules, "else": true on an else, "default": true when
// the default applied, "value" only when it is what the step gave, "at"
// as "file:line:col"; keys in alphabetical order. "<", ">" and "&" are
// written as they are (conditions are full of them) unless the encoder
// asks for escapes.
func (e TraceEntry) MarshalJSON() ([]byte, error) {
	j := traceEntryJSON{At: e.At.String(), Context: e.Context, Error: e.Error, Phase: e.Phase, Rule: e.Rule, Setting: e.Setting}
	switch e.Kind {
	case KindRule:
		j.If, j.Matched = &e.If, &e.Matched
	case KindElse:
		j.Else = true
	case KindDefault:
		j.Default = true
	}
	if e.Expr != "" || e.Kind == KindExpr {
		j.Expr = &e.Expr
	}
	if e.Value != "" && (e.Kind != KindRule || e.Matched || e.Error != "") {
		j.Value = e.Value
	}
	return jsonout.Marshal(j)
}

// traceEntryJSON is the JSON object of a TraceEntry; the fields are in
// the output's order.
type traceEntryJSON struct {
	At      string  `json:"at,omitempty"`
	Context string  `json:"context,omitempty"`
	Default bool    `json:"default,omitempty"`
	Else    bool    `json:"else,omitempty"`
	Error   string  `json:"error,omitempty"`
	Expr    *string `json:"expr,omitempty"`
	If      *string `json:"if,omitempty"`
	Matched *bool   `json:"matched,omitempty"`
	Phase   string  `json:"phase"`
	Rule    int     `json:"rule,omitempty"`
	Setting string  `json:"setting"`
	Value   string  `json:"value,omitempty"`
}

// entry starts the trace entry of one step of v's evaluation: its kind,
// the 1-based rule (0: none) and where the step is written (zero: nowhere).
func (v *Value[T]) entry(kind string, rule int, at Pos) TraceEntry {
	return TraceEntry{Setting: v.setting, Phase: v.phase.String(), Kind: kind, Rule: rule, At: at}
}

// gave completes e with what the step gave: val, computed by prog (nil:
// a literal), or the fallback val with the run-time error err.
func (v *Value[T]) gave(e TraceEntry, val T, prog *expr.Program, err error) TraceEntry {
	e.Value = v.k.text(val)
	if prog != nil {
		e.Expr = prog.Source()
	}
	if err != nil {
		e.Error = err.Error()
	}
	return e
}

// Decided reports whether this step gave the setting its value: a rule
// whose condition held (or failed, giving the fallback), an else, a
// default, a literal or an expression — not a rule that did not match.
func (e TraceEntry) Decided() bool {
	return e.Kind != KindRule || e.Matched || e.Error != ""
}
