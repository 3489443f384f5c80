package policies

import "github.com/postern-mta/postern/expr"

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

// entry starts the trace entry of one step of v's evaluation: its kind,
// the 1-based rule (0: none) and where the step is written ("": nowhere).
func (v *Value[T]) entry(kind string, rule int, at string) TraceEntry {
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
