// Package policydiff compares what two policies decide for the same
// messages: for every recipient of a corpus (package corpus), each fact
// of its decision — route, outcome, host order, TLS modes and what is in
// effect, source address, EHLO name, limits, throttles — under the old
// and the new policy, and where they differ, the rule (file:line) that
// decided each side. `postern diff` prints it.
//
// Both engines must share one resolver (engine.Options.Resolver), so
// that DNS cannot make a difference of its own; each message is evaluated
// with the same engine.WithDomainSeed under both, so equal-preference MX
// hosts are shuffled alike.
package policydiff

import (
	"context"
	"fmt"
	"sync"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/policies"
)

// Change is one fact of one recipient that differs.
type Change struct {
	// Line is the envelope's line in the corpus; ID its id, if any.
	Line      int    `json:"line"`
	ID        string `json:"id,omitempty"`
	Recipient string `json:"recipient"`
	// Field names the fact: route, outcome, hosts, mta-sts, throttles,
	// limits.mx, limits.recipients; for a host tls, tls.starttls,
	// tls.dane, tls.min-version, tls.allow-invalid-certs,
	// ip-strategy.lookup, addresses, limits.messages-per-connection; for
	// a connection source-ip, ehlo, limits.timeouts.
	Field string `json:"field"`
	// At lists the hosts (and, for a connection fact, the addresses)
	// the change is about: one change for all of them when it is the
	// same; empty for the recipient's own facts.
	At  []Place `json:"at,omitempty"`
	Old string  `json:"old"`
	New string  `json:"new"`
	// OldRule and NewRule are the trace steps that decided the value
	// under each policy (a rule, else, default or literal, with its
	// file:line; without a context: Recipient and At say what it is
	// about); nil when no setting step explains it (a DNS answer).
	OldRule *policies.TraceEntry `json:"old_rule"`
	NewRule *policies.TraceEntry `json:"new_rule"`
}

// Place is a host, or one of its addresses. When the two decisions have
// no host in common (the route changed, say), the first host each would
// try is compared: OldHost (and OldAddress) is then the old decision's.
type Place struct {
	Host       string `json:"host"`
	Address    string `json:"address,omitempty"`
	OldHost    string `json:"old_host,omitempty"`
	OldAddress string `json:"old_address,omitempty"`
}

// String is "HOST", "HOST ADDRESS", or for two hosts "OLD -> NEW" and
// "OLD OLDADDRESS -> NEW ADDRESS".
func (p Place) String() string {
	s := join(p.Host, p.Address)
	if p.OldHost != "" {
		s = join(p.OldHost, p.OldAddress) + " -> " + s
	}
	return s
}

func join(host, addr string) string {
	if addr == "" {
		return host
	}
	return host + " " + addr
}

// side is the place as one decision knows it.
func (p Place) side(old bool) (host, addr string) {
	if old && p.OldHost != "" {
		return p.OldHost, p.OldAddress
	}
	return p.Host, p.Address
}

// Differ evaluates envelopes under two engines.
type Differ struct {
	Old, New *engine.Engine
	// Seed seeds each group's shuffle (engine.WithDomainSeed), mixed
	// with the envelope's line.
	Seed uint64

	// rules interns the rules of changes: a corpus with many changes
	// has few distinct rules, and a report holds each once.
	rules sync.Map // policies.TraceEntry -> *policies.TraceEntry
}

// intern returns the shared copy of e, without its context.
func (d *Differ) intern(e *policies.TraceEntry) *policies.TraceEntry {
	if e == nil {
		return nil
	}
	k := *e
	k.Context = ""
	if p, ok := d.rules.Load(k); ok {
		return p.(*policies.TraceEntry)
	}
	p, _ := d.rules.LoadOrStore(k, &k)
	return p.(*policies.TraceEntry)
}

// Envelope compares the decisions of one envelope (read at line) and
// returns its changes, in recipient order, and the number of recipients
// with at least one.
func (d *Differ) Envelope(ctx context.Context, line int, env corpus.Envelope) ([]Change, int, error) {
	msg, err := env.Message()
	if err != nil {
		return nil, 0, err
	}
	seed := engine.WithDomainSeed(d.Seed ^ uint64(line)*0x9e3779b97f4a7c15)
	// Untraced first: most envelopes do not change, and tracing costs.
	oldD, err := d.Old.Evaluate(ctx, msg, seed)
	if err != nil {
		return nil, 0, fmt.Errorf("old policy: %w", err)
	}
	newD, err := d.New.Evaluate(ctx, msg, seed)
	if err != nil {
		return nil, 0, fmt.Errorf("new policy: %w", err)
	}
	if changes, _ := compare(msg.To, oldD, newD); len(changes) == 0 {
		return nil, 0, nil
	}
	// Again with traces, to name the rules.
	if oldD, err = d.Old.Evaluate(ctx, msg, seed, engine.WithTrace()); err != nil {
		return nil, 0, fmt.Errorf("old policy: %w", err)
	}
	if newD, err = d.New.Evaluate(ctx, msg, seed, engine.WithTrace()); err != nil {
		return nil, 0, fmt.Errorf("new policy: %w", err)
	}
	changes, changed := compare(msg.To, oldD, newD)
	for i := range changes {
		c := &changes[i]
		c.Line, c.ID = line, env.ID
		c.OldRule, c.NewRule = d.intern(c.OldRule), d.intern(c.NewRule)
	}
	return changes, changed, nil
}

// compare returns the changed facts of each recipient, in envelope order,
// and the number of recipients with a change.
func compare(to []string, oldD, newD *engine.Decision) ([]Change, int) {
	oldG, newG := byRecipient(oldD), byRecipient(newD)
	var out []Change
	changed := 0
	cache := map[[2]*engine.Group][]Change{}
	for _, rcpt := range to {
		og, ng := next(oldG, rcpt), next(newG, rcpt)
		if og == nil || ng == nil {
			continue // every recipient has a group; a decision without one is the engine's bug, not a change
		}
		// Recipients of the same pair of groups change alike: compare once.
		pair := [2]*engine.Group{og, ng}
		diffs, seen := cache[pair]
		if !seen {
			diffs = diffGroups(og, ng)
			cache[pair] = diffs
		}
		if len(diffs) > 0 {
			changed++
		}
		for _, c := range diffs {
			c.Recipient = rcpt
			if len(og.Trace) > 0 || len(ng.Trace) > 0 {
				c.OldRule, c.NewRule = decider(og, ng, c)
			}
			out = append(out, c)
		}
	}
	return out, changed
}

// byRecipient maps each recipient to its groups, one per time it is
// listed, in order.
func byRecipient(d *engine.Decision) map[string][]*engine.Group {
	m := make(map[string][]*engine.Group, len(d.Message.Recipients))
	for _, g := range d.Groups {
		for _, r := range g.Recipients {
			m[r] = append(m[r], g)
		}
	}
	return m
}

func next(m map[string][]*engine.Group, rcpt string) *engine.Group {
	gs := m[rcpt]
	if len(gs) == 0 {
		return nil
	}
	m[rcpt] = gs[1:]
	return gs[0]
}
