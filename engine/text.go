package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/postern-mta/postern/policies"
)

// WriteJSON writes d as the dry-run JSON contract (indented, one object).
func (d *Decision) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "<from env X>" stays readable
	return enc.Encode(d)
}

// marshalEntry shapes a trace entry the way the dry-run contract shows it:
// "matched" only on rules, "else": true on else entries, "default": true
// when the default applied.
func marshalEntry(e policies.TraceEntry) map[string]any {
	m := map[string]any{"setting": e.Setting, "phase": e.Phase}
	if e.Rule > 0 {
		m["rule"] = e.Rule
	}
	if e.At != "" {
		m["at"] = e.At
	}
	switch e.Kind {
	case policies.KindRule:
		m["if"] = e.If
		m["matched"] = e.Matched
	case policies.KindElse:
		m["else"] = true
	case policies.KindDefault:
		m["default"] = true
	case policies.KindExpr:
		m["expr"] = e.Expr
	}
	if e.Expr != "" && e.Kind != policies.KindExpr {
		m["expr"] = e.Expr
	}
	if e.Value != "" && (e.Kind != policies.KindRule || e.Matched || e.Error != "") {
		m["value"] = e.Value
	}
	if e.Error != "" {
		m["error"] = e.Error
	}
	if e.Context != "" {
		m["context"] = e.Context
	}
	return m
}

// MarshalJSON renders the group with the trace in the contract's shape.
func (g *Group) MarshalJSON() ([]byte, error) {
	type plain Group
	trace := make([]map[string]any, len(g.Trace))
	for i, e := range g.Trace {
		trace[i] = marshalEntry(e)
	}
	return json.Marshal(struct {
		*plain
		Trace []map[string]any `json:"trace"`
	}{(*plain)(g), trace})
}

// WriteText writes d for a person, top-down: per group the decision first,
// then hosts, throttles, DNS answers, and the trace under it.
func (d *Decision) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("policy  %s\n", d.Policy)
	sender := d.Message.Sender
	if sender == "" {
		sender = "<>"
	}
	p.f("message %s -> %s (%d bytes)\n", sender, strings.Join(d.Message.Recipients, ", "), d.Message.Size)
	for i, g := range d.Groups {
		p.f("\n")
		p.group(i+1, g)
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) group(n int, g *Group) {
	route := g.Route.Name
	if route == "" {
		route = "(none)"
	}
	p.f("group %d: %s via %s: %s\n", n, orDash(g.Domain), route, strings.ToUpper(g.Outcome))
	if g.Error != nil {
		kind := "permanent"
		if g.Error.Temporary {
			kind = "temporary"
		}
		first, rest, _ := strings.Cut(g.Error.Message, "\n")
		p.f("  error:      %s (%s, class %s)\n", first, kind, g.Error.Class)
		if rest != "" {
			p.f("              %s\n", strings.ReplaceAll(rest, "\n", "\n              "))
		}
	}
	p.f("  recipients: %s\n", strings.Join(g.Recipients, ", "))
	if g.Route.Type == "relay" {
		p.f("  relay:      %s port %d, %s", g.Route.Address, g.Route.Port, g.Route.Protocol)
		if g.Route.ImplicitTLS {
			p.f(", implicit TLS")
		}
		if g.Route.Auth != nil {
			p.f(", auth %s secret %s", g.Route.Auth.Username, g.Route.Auth.Secret)
		}
		p.f("\n")
	}
	if g.MTASTS.Setting != "" && g.Route.Type == "mx" {
		rec := "no record"
		if g.MTASTS.Record != "" {
			rec = "record " + g.MTASTS.Record
		}
		p.f("  mta-sts:    %s (%s)\n", g.MTASTS.Setting, rec)
	}
	if g.Limits.MX > 0 {
		p.f("  limits:     mx %d, recipients %d\n", g.Limits.MX, g.Limits.Recipients)
	}
	if len(g.Hosts) > 0 {
		p.f("  hosts:\n")
		for i, h := range g.Hosts {
			p.host(i+1, h)
		}
	}
	if len(g.Throttles) > 0 {
		p.f("  throttles:\n")
		for _, t := range g.Throttles {
			var limits []string
			if t.Concurrency > 0 {
				limits = append(limits, fmt.Sprintf("concurrency %d", t.Concurrency))
			}
			if t.Rate != "" {
				limits = append(limits, "rate "+t.Rate)
			}
			p.f("    %s key %q (%s): %s, in use %d, would wait %s\n", t.Name, t.Key, t.Phase, strings.Join(limits, ", "), t.InUse, t.WouldWait)
		}
	}
	if len(g.Lookups) > 0 {
		p.f("  dns:\n")
		for _, l := range g.Lookups {
			p.lookup(l)
		}
	}
	if len(g.Trace) > 0 {
		p.f("  trace:\n")
		for i := 0; i < len(g.Trace); {
			ctx := g.Trace[i].Context
			j := i
			for j < len(g.Trace) && g.Trace[j].Context == ctx {
				j++
			}
			p.f("    %s\n", ctx)
			var defaults []string
			for _, e := range g.Trace[i:j] {
				if e.Kind == policies.KindDefault && e.Rule == 0 {
					defaults = append(defaults, e.Setting+"="+orDefault(e.Value))
					continue
				}
				p.entry(e)
			}
			if len(defaults) > 0 {
				p.f("      %-28s %s\n", "(not set, defaults)", strings.Join(defaults, ", "))
			}
			i = j
		}
	}
}

func orDefault(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (p *printer) host(n int, h *Host) {
	sec := ""
	if h.Secure {
		sec = ", DNSSEC"
	}
	p.f("    %d. %s (preference %d%s) lookup %s", n, h.Name, h.Preference, sec, h.IPLookup)
	if h.Skipped != nil {
		kind := "permanent"
		if h.SkipTemporary {
			kind = "temporary"
		}
		p.f("\n       SKIPPED (%s): %s\n", kind, *h.Skipped)
		return
	}
	p.f("\n")
	t := h.TLS
	invalid := "refused"
	if t.AllowInvalidCerts {
		invalid = "ALLOWED"
	}
	p.f("       tls: starttls %s, dane %s (%d records), min %s, invalid certs %s, handshake %s\n",
		t.STARTTLS, t.DANE, t.DANERecords, t.MinVersion, invalid, t.HandshakeTimeout)
	p.f("       messages per connection %d\n", h.MessagesPerConnection)
	for _, c := range h.Connections {
		src := "kernel's choice"
		if c.SourceIP != nil {
			src = *c.SourceIP
		}
		to := c.Timeouts
		p.f("       -> %s from %s, ehlo %s\n", c.RemoteIP, src, c.EHLOHostname)
		p.f("          timeouts: connect %s, greeting %s, ehlo %s, mail-from %s, rcpt-to %s, data %s\n",
			to.Connect, to.Greeting, to.EHLO, to.MailFrom, to.RcptTo, to.Data)
	}
}

func (p *printer) lookup(l Lookup) {
	p.f("    %-4s %s: ", l.Type, l.Name)
	if l.Error != "" {
		p.f("%s", l.Error)
	} else if len(l.Answer) == 0 {
		p.f("(empty)")
	} else {
		p.f("%s", strings.Join(l.Answer, ", "))
	}
	var notes []string
	if l.Secure {
		notes = append(notes, "secure")
	}
	if l.Cached {
		notes = append(notes, "cached")
	}
	if l.Stale {
		notes = append(notes, "STALE")
	}
	if l.TTL != "" {
		notes = append(notes, "ttl "+l.TTL)
	}
	if len(notes) > 0 {
		p.f(" [%s]", strings.Join(notes, ", "))
	}
	p.f("\n")
}

// entry prints one trace line: setting, rule, position (file:line),
// condition and result.
func (p *printer) entry(e policies.TraceEntry) {
	at := lineOnly(e.At)
	var what string
	switch e.Kind {
	case policies.KindRule:
		res := "no"
		switch {
		case e.Error != "":
			res = "ERROR -> " + orDefault(e.Value)
		case e.Matched && e.Value == "" && strings.HasSuffix(e.Setting, ".match"):
			res = "YES"
		case e.Matched:
			res = "YES -> " + orDefault(e.Value)
		}
		what = fmt.Sprintf("rule %d  if %s  => %s", e.Rule, e.If, res)
	case policies.KindElse:
		what = "else  => " + orDefault(e.Value)
	case policies.KindDefault:
		what = "default => " + orDefault(e.Value)
		if e.Rule > 0 {
			what = "no rule matched, default => " + orDefault(e.Value)
		}
	case policies.KindLiteral:
		what = "= " + orDefault(e.Value)
	case policies.KindExpr:
		what = fmt.Sprintf("expr %s  => %s", e.Expr, orDefault(e.Value))
	}
	if e.Expr != "" && e.Kind != policies.KindExpr {
		what += "  (from " + e.Expr + ")"
	}
	p.f("      %-28s %s  %s\n", e.Setting, what, at)
	if e.Error != "" {
		p.f("        error: %s\n", strings.ReplaceAll(e.Error, "\n", "\n        "))
	}
}

// lineOnly turns "file:line:col" into "file:line".
func lineOnly(at string) string {
	if i := strings.LastIndexByte(at, ':'); i > 0 && strings.Count(at, ":") >= 2 {
		return at[:i]
	}
	return at
}
