package main

import (
	"fmt"
	"io"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/textsafe"
)

// writeBrief prints the decision one line per recipient, in the order
// given (a recipient listed twice has two lines): recipient, route,
// outcome, then the first host that would be tried with its first address,
// the TLS in effect there and the source address — or the reason when the
// group fails or defers. The view of exim -bt.
func writeBrief(w io.Writer, msg engine.Message, d *engine.Decision) error {
	byRcpt := map[string][]*engine.Group{}
	for _, g := range d.Groups {
		for _, r := range g.Recipients {
			byRcpt[r] = append(byRcpt[r], g)
		}
	}
	for _, rcpt := range msg.To {
		gs := byRcpt[rcpt]
		if len(gs) == 0 {
			return fmt.Errorf("no group for %s", rcpt)
		}
		g := gs[0]
		byRcpt[rcpt] = gs[1:]
		line := fmt.Sprintf("%s route=%s %s", textsafe.Escape(rcpt), textsafe.Escape(g.Route.Name), g.Outcome)
		switch {
		case g.Error != nil:
			line += fmt.Sprintf(" class=%s %q", textsafe.Escape(string(g.Error.Class)), g.Error.Message)
		case g.Outcome == engine.OutcomeDeliver:
			line += briefHost(g)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// briefHost describes the first host of g that would be tried.
func briefHost(g *engine.Group) string {
	for _, h := range g.Hosts {
		if h.Skipped != nil || len(h.Connections) == 0 {
			continue
		}
		c := h.Connections[0]
		tls := h.TLS.Verify
		if h.TLS.Required {
			tls = "required/" + tls
		}
		src := "-"
		if c.SourceIP != nil {
			src = c.SourceIP.String()
		}
		return fmt.Sprintf(" host=%s addr=%s tls=%s source=%s", textsafe.Escape(h.Name), c.RemoteIP, textsafe.Escape(tls), src)
	}
	if len(g.Hosts) == 0 {
		return "" // --no-dns: no host decided yet
	}
	return " host=(none can be tried)"
}
