package policydiff

import (
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
)

// decider finds the trace steps behind a change: for each setting behind
// the field, most specific first, the steps that gave its value under
// each policy; the first setting whose steps differ (another rule, another
// value) is the one the edit changed. When none differs (the change comes
// from elsewhere: a DNS answer, another setting), the first setting's
// steps are returned as they are.
func decider(og, ng *engine.Group, c Change) (*policies.TraceEntry, *policies.TraceEntry) {
	var firstOld, firstNew *policies.TraceEntry
	for i, s := range settings[c.Field] {
		olds, news := steps(og, c, s, true), steps(ng, c, s, false)
		for k := 0; k < max(len(olds), len(news)); k++ {
			var o, n *policies.TraceEntry
			if k < len(olds) {
				o = &olds[k]
			}
			if k < len(news) {
				n = &news[k]
			}
			if i == 0 && k == 0 {
				firstOld, firstNew = o, n
			}
			if !sameStep(o, n) {
				return o, n
			}
		}
	}
	return firstOld, firstNew
}

// sameStep reports whether two steps gave the same value the same way
// (the files differ, so positions are not compared).
func sameStep(a, b *policies.TraceEntry) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Setting == b.Setting && a.Kind == b.Kind && a.Rule == b.Rule && a.If == b.If && a.Value == b.Value && a.Expr == b.Expr
}

// steps are the trace steps of g that gave setting (or, for a prefix such
// as "limits.throttles", a setting under it) in the contexts the change is
// about: the recipient and the group; the host; the address.
func steps(g *engine.Group, c Change, setting string, old bool) []policies.TraceEntry {
	var out []policies.TraceEntry
	for _, e := range g.Trace {
		// A throttle's match that did not hold decides too: the
		// throttle does not apply.
		decides := e.Decided() || strings.HasSuffix(e.Setting, ".match")
		if decides && (e.Setting == setting || strings.HasPrefix(e.Setting, setting+".")) && about(e.Context, c, old) {
			out = append(out, e)
		}
	}
	return out
}

// about reports whether a trace context (the engine's labels: "rcpt R",
// "group D via ROUTE", "host H", "address A of H") concerns the change: a
// connection's setting may be decided for its address, its host or the
// group; a host's for the host or the group; the others for the
// recipient or the group.
func about(context string, c Change, old bool) bool {
	var host, addr string // the first place stands for all: the change is the same
	if len(c.At) > 0 {
		host, addr = c.At[0].side(old)
	}
	switch {
	case strings.HasPrefix(context, "group "):
		return true
	case addr != "" && context == "address "+addr+" of "+host:
		return true
	case host != "":
		return context == "host "+host
	}
	return context == "rcpt "+c.Recipient
}
