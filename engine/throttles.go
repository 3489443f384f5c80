package engine

import (
	"slices"
	"strings"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
)

// throttles lists the throttles of phase p that apply to the group, with
// their current use. Connection-phase throttles are listed once, for the
// first address.
func (r *run) throttles(g *Group, p expr.Phase, tr *policies.Trace) {
	env := r.env()
	for _, t := range r.s.set.Limits.Throttles {
		if t.Phase != p {
			continue
		}
		// A key with rcpt is counted per recipient; others per group (the
		// first recipient stands for the group).
		rcpts := []string{""}
		if p == expr.Recipient && slices.Contains(t.Key, "rcpt") {
			rcpts = g.Recipients
		}
		saved := env.Rcpt
		for _, rcpt := range rcpts {
			if rcpt != "" {
				env.Rcpt = rcpt
			}
			if !r.throttleMatches(t, p, tr) {
				continue
			}
			info := ThrottleInfo{Name: t.Name, Key: throttleKey(t.Key, env), Concurrency: t.Concurrency, Phase: p.String(), Recipient: rcpt}
			if t.Rate.Count > 0 {
				info.Rate = t.Rate.String()
			}
			if r.cfg.trace { // what a dry-run shows; delivery acquires instead
				inUse, wait := r.e.throttles.Peek(t.Name+"\x00"+info.Key, t.Concurrency, t.Rate, r.e.opts.Clock())
				info.InUse, info.WouldWait = inUse, Duration(wait)
			}
			g.Throttles = append(g.Throttles, info)
		}
		env.Rcpt = saved
	}
}

// throttleMatches evaluates a throttle's match (true when it has none),
// recording it in the trace.
func (r *run) throttleMatches(t *policies.Throttle, p expr.Phase, tr *policies.Trace) bool {
	if t.Match == nil {
		return true
	}
	ok, err := t.Match.Bool(r.vm(), r.env())
	if err != nil {
		r.exprFailed("limits.throttles."+t.Name+".match", err)
	}
	if tr != nil {
		e := policies.TraceEntry{Setting: "limits.throttles." + t.Name + ".match", Phase: p.String(), Kind: policies.KindRule,
			Rule: 1, At: matchAt(t), If: t.Match.Source(), Matched: ok && err == nil}
		if err != nil {
			e.Error = err.Error()
		}
		tr.Entries = append(tr.Entries, e)
	}
	return err == nil && ok
}

// throttleKey joins the values of the key's variables with "|". In the
// values, a backslash becomes two and a bar is preceded by a backslash, so
// two different tuples never give the same key: ("a|b", "c") gives a\|b|c
// and ("a", "b|c") gives a|b\|c. Ordinary values read as they are.
func throttleKey(keys []string, env *expr.Env) string {
	if len(keys) == 0 {
		return "*"
	}
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('|')
		}
		var v string
		switch k {
		case "sender":
			v = env.Sender
		case "sender_domain":
			v = env.SenderDomain
		case "rcpt":
			v = env.Rcpt
		case "rcpt_domain":
			v = env.RcptDomain
		case "route":
			v = env.Route
		case "mx":
			v = env.MX
		case "remote_ip":
			v = env.RemoteIP
		case "local_ip":
			v = env.LocalIP
		}
		if strings.ContainsAny(v, "|\\") {
			v = keyEscaper.Replace(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

var keyEscaper = strings.NewReplacer("\\", "\\\\", "|", "\\|")
