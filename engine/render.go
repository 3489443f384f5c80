package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/policies"
)

// WriteJSON writes d as the dry-run JSON contract (indented, one object).
func (d *Decision) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // conditions and "<from env X>" stay readable
	return enc.Encode(d)
}

// WriteJSONLine writes d as WriteJSON does, but on one line: JSON Lines,
// one decision per line (`postern dry-run --format jsonl`).
func (d *Decision) WriteJSONLine(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}

// WriteText writes d for a person, top-down: per group the decision first,
// then hosts, throttles, DNS answers, and the trace under it.
//
// Every string that comes from outside (addresses, names and answers from
// DNS, policy names, values and expressions, error messages) is escaped
// with [textsafe.Escape]: a control character, invalid UTF-8 or a Unicode
// bidirectional control in it is shown as an escape such as \n or \x1b,
// so each line of the output is one line WriteText meant to write. The
// only line breaks inside a value are those of an expression error's caret
// snippet, printed as lines of their own under the error. WriteJSON needs
// none of this: encoding/json escapes what it must.
func (d *Decision) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("policy  %s\n", escText(d.Policy))
	sender := escText(d.Message.Sender)
	if sender == "" {
		sender = "<>"
	}
	p.f("message %s -> %s (%d bytes)\n", sender, escTextJoin(d.Message.Recipients, ", "), d.Message.Size)
	for i, g := range d.Groups {
		p.f("\n")
		p.group(i+1, g)
	}
	return p.err
}

// escText escapes a string for one line of text output.
func escText[S ~string](s S) string { return textsafe.Escape(string(s)) }

// escTextJoin escapes each of list and joins them with sep.
func escTextJoin(list []string, sep string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = escText(s)
	}
	return strings.Join(out, sep)
}

// textSnippetBreak is where the text of an expression error (*expr.Error)
// breaks a line: before each line of its caret snippet.
const textSnippetBreak = "\n | "

// textErrorLines splits an error message into the lines to print, each
// escaped. It breaks the message only where an expression error's snippet
// starts a line (the line then starts with " | "); any other line feed,
// from a DNS error, a server or anywhere else, is escaped as \n and starts
// no line of its own.
func textErrorLines(msg string) []string {
	lines := strings.Split(msg, textSnippetBreak)
	for i, l := range lines {
		lines[i] = escText(l)
		if i > 0 {
			lines[i] = " | " + lines[i]
		}
	}
	return lines
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
	route := escText(g.Route.Name)
	if route == "" {
		route = "(none)"
	}
	p.f("group %d: %s via %s: %s\n", n, orDash(escText(g.Domain)), route, escText(strings.ToUpper(string(g.Outcome))))
	if g.Error != nil {
		kind := "permanent"
		if g.Error.Temporary {
			kind = "temporary"
		}
		lines := textErrorLines(g.Error.Message)
		p.f("  error:      %s (%s, class %s)\n", lines[0], kind, escText(g.Error.Class))
		for _, l := range lines[1:] {
			p.f("              %s\n", l)
		}
	}
	p.f("  recipients: %s\n", escTextJoin(g.Recipients, ", "))
	if g.Route.Type == "relay" {
		p.f("  relay:      %s port %d, %s", escText(g.Route.Address), g.Route.Port, escText(g.Route.Protocol))
		if g.Route.ImplicitTLS {
			p.f(", implicit TLS")
		}
		if g.Route.Auth != nil {
			p.f(", auth %s secret %s", escText(g.Route.Auth.Username), escText(g.Route.Auth.Secret))
		}
		p.f("\n")
	}
	if g.MTASTS.Setting != "" && g.Route.Type == "mx" {
		rec := "no record"
		if g.MTASTS.Record != "" {
			rec = "record " + escText(g.MTASTS.Record)
		}
		p.f("  mta-sts:    %s (%s)\n", escText(g.MTASTS.Setting), rec)
		if pol := g.MTASTS.Policy; pol != nil {
			mx := "(none)"
			if len(pol.MX) > 0 {
				mx = escTextJoin(pol.MX, ", ")
			}
			p.f("              policy %s: mode %s, mx %s, max_age %s; from the %s, fetched %s ago\n", escText(pol.ID), escText(pol.Mode),
				mx, pol.MaxAge, pol.Source, pol.Age)
		}
		if g.MTASTS.Error != "" {
			p.f("              %s\n", escText(g.MTASTS.Error))
		}
	}
	if g.Limits.MX > 0 {
		p.f("  limits:     mx %d, recipients %d\n", g.Limits.MX, g.Limits.Recipients)
	}
	if sc := g.Schedule; sc != nil {
		p.f("  schedule:   retry in %s after a temporary failure, %s, %s\n", policies.FormatDuration(time.Duration(sc.RetryIn)),
			notifyText(sc), expiryText(sc))
	}
	if g.Site != "" {
		p.f("  site:       %s\n", escText(g.Site))
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
			if t.Rate.Count > 0 {
				limits = append(limits, "rate "+t.Rate.String())
			}
			// %q escapes the key (strconv.Quote escapes every rune
			// that is not printable, bidirectional controls included).
			phase := escText(t.Phase)
			if t.PerMessage {
				phase += ", once per message"
			}
			if t.StoreError != "" {
				p.f("    %s key %q (%s): %s, store unreachable: %s\n", escText(t.Name), t.Key, phase, strings.Join(limits, ", "), escText(t.StoreError))
				continue
			}
			p.f("    %s key %q (%s): %s, in use %d, would wait %s\n", escText(t.Name), t.Key, phase, strings.Join(limits, ", "), t.InUse, t.WouldWait)
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
			p.f("    %s\n", escText(ctx))
			var defaults []string
			for _, e := range g.Trace[i:j] {
				if e.Kind == policies.KindDefault && e.Rule == 0 {
					defaults = append(defaults, escText(e.Setting)+"="+orDefault(escText(e.Value)))
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

// notifyText says when the next delay notification is due.
func notifyText(sc *Schedule) string {
	switch {
	case sc.NotifyAt == 0:
		return "no delay notice left"
	case sc.NotifyDue:
		return "delay notice due (at " + policies.FormatDuration(time.Duration(sc.NotifyAt)) + " queued)"
	}
	return "delay notice at " + policies.FormatDuration(time.Duration(sc.NotifyAt)) + " queued"
}

// expiryText says when the message expires.
func expiryText(sc *Schedule) string {
	if sc.ExpiresIn <= 0 {
		return "EXPIRED (queue.expire " + policies.FormatDuration(time.Duration(sc.Expire)) + ")"
	}
	return "expires in " + policies.FormatDuration(time.Duration(sc.ExpiresIn))
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
	p.f("    %d. %s (preference %d%s) lookup %s", n, escText(h.Name), h.Preference, sec, escText(h.IPLookup))
	if h.Skipped != nil {
		kind := "permanent"
		if h.SkipTemporary {
			kind = "temporary"
		}
		p.f("\n       SKIPPED (%s): %s\n", kind, escText(*h.Skipped))
		return
	}
	p.f("\n")
	t := h.TLS
	invalid := "refused"
	if t.AllowInvalidCerts {
		invalid = "ALLOWED"
	}
	p.f("       tls: starttls %s, dane %s, min %s, invalid certs %s, handshake %s\n",
		escText(t.STARTTLS), escText(t.DANE), escText(t.MinVersion), invalid, t.HandshakeTimeout)
	switch {
	case t.Required:
		p.f("       tls in effect: required, verify %s", escText(t.Verify))
	case t.STARTTLS == policies.TLSDisable:
		p.f("       tls in effect: off")
	default:
		p.f("       tls in effect: opportunistic")
	}
	if t.MTASTS != "" {
		p.f(", mta-sts %s", escText(t.MTASTS))
	}
	p.f("\n")
	d := t.DANEState
	state := "inactive"
	if d.Active {
		state = "ACTIVE"
	}
	p.f("       dane %s: %s\n", state, escText(d.Reason))
	if d.Active && len(d.Names) > 0 {
		p.f("         names: %s\n", escTextJoin(d.Names, ", "))
	}
	for _, rec := range d.Records {
		if rec.Usable {
			p.f("         tlsa %s (usable)\n", escText(rec.Record))
		} else {
			p.f("         tlsa %s (unusable: %s)\n", escText(rec.Record), escText(rec.Unusable))
		}
	}
	p.f("       messages per connection %d\n", h.MessagesPerConnection)
	if len(h.Dropped) > 0 {
		p.f("       dropped (never connected to): %s\n", escText(strings.Join(h.Dropped, ", ")))
	}
	for _, c := range h.Connections {
		src := "kernel's choice"
		if c.SourceIP != nil {
			src = c.SourceIP.String()
		}
		to := c.Timeouts
		p.f("       -> %s from %s, ehlo %s\n", c.RemoteIP, src, escText(c.EHLOHostname))
		p.f("          timeouts: connect %s, greeting %s, ehlo %s, mail-from %s, rcpt-to %s, data %s\n",
			to.Connect, to.Greeting, to.EHLO, to.MailFrom, to.RcptTo, to.Data)
	}
}

func (p *printer) lookup(l DNSQuery) {
	p.f("    %-4s %s: ", escText(l.Type), escText(l.Name))
	if l.Error != "" {
		p.f("%s", escText(l.Error))
	} else if len(l.Answer) == 0 {
		p.f("(empty)")
	} else {
		p.f("%s", escTextJoin(l.Answer, ", "))
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
		notes = append(notes, "ttl "+escText(l.TTL))
	}
	if len(notes) > 0 {
		p.f(" [%s]", strings.Join(notes, ", "))
	}
	p.f("\n")
}

// entry prints one trace line: setting, rule, position (file:line),
// condition and result.
func (p *printer) entry(e policies.TraceEntry) {
	p.f("      %s\n", strings.ReplaceAll(TraceLine(e), "\n", "\n      "))
}

// TraceLine is a trace entry as the dry-run prints it: the setting, what
// the step did (rule N if COND => YES -> VALUE, else => VALUE, = VALUE,
// default => VALUE, ...) and where it is written. An entry with an error
// has its message on the lines after, indented by two spaces. What
// comes from the policy or the message is escaped.
func TraceLine(e policies.TraceEntry) string {
	at := escText(e.At.LineString())
	value := orDefault(escText(e.Value))
	var what string
	switch e.Kind {
	case policies.KindRule:
		res := "no"
		switch {
		case e.Error != "":
			res = "ERROR -> " + value
		case e.Matched && e.Value == "" && strings.HasSuffix(e.Setting, ".match"):
			res = "YES"
		case e.Matched:
			res = "YES -> " + value
		}
		what = fmt.Sprintf("rule %d  if %s  => %s", e.Rule, escText(e.If), res)
	case policies.KindElse:
		what = "else  => " + value
	case policies.KindDefault:
		what = "default => " + value
		if e.Rule > 0 {
			what = "no rule matched, default => " + value
		}
	case policies.KindLiteral:
		what = "= " + value
	case policies.KindExpr:
		what = fmt.Sprintf("expr %s  => %s", escText(e.Expr), value)
	}
	if e.Expr != "" && e.Kind != policies.KindExpr {
		what += "  (from " + escText(e.Expr) + ")"
	}
	line := fmt.Sprintf("%-28s %s", escText(e.Setting), what)
	if at != "" {
		line += "  " + at
	}
	if e.Error != "" {
		lines := textErrorLines(e.Error)
		line += "\n  error: " + lines[0]
		for _, l := range lines[1:] {
			line += "\n  " + l
		}
	}
	return line
}
