package policies

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// Permit is relay.permit: first-match rules evaluated for each RCPT
// command the relay receives, in the session phase. A rule's then (or the
// else) decides whether the client may relay to that recipient; when no
// rule matches and there is no else, the rules do not decide and relaying
// follows relay.networks and AUTH (see [Relay.MayRelay]).
type Permit struct {
	v      *Value[bool]
	itemAt []Pos // where each rule of the list is written, by index
}

// Len returns the number of rules, the else included.
func (p *Permit) Len() int {
	n := len(p.v.rules)
	if p.v.els != nil {
		n++
	}
	return n
}

// Eval evaluates the rules for env, whose session-phase variables are set
// (see [Session.Fill]) and whose Funcs come from the policy's
// [Set.Library]. decided is false when no rule matched and there is no
// else: allowed is then false, and the caller falls back to
// relay.networks and AUTH. An evaluation error gives allowed false,
// decided true and the error: it never allows, and it must not fall back
// either (the relay answers 451 4.3.0). When tr is not nil every rule
// evaluated is appended to it.
func (p *Permit) Eval(m *expr.VM, env *expr.Env, tr *Trace) (allowed, decided bool, err error) {
	v := p.v
	// step records one evaluated step in the trace, when there is one.
	step := func(kind string, i int, r *rule[bool], b *branch[bool], matched bool, val bool, err error) {
		if tr == nil {
			return
		}
		var e TraceEntry
		if r != nil {
			e = v.entry(kind, i+1, r.at)
			e.If, e.Matched = r.cond.Source(), matched
		} else {
			e = v.entry(kind, i+1, b.at)
		}
		if !matched && err == nil && kind == KindRule {
			tr.add(e)
			return
		}
		var prog *expr.Program
		if b != nil {
			prog = b.prog
		}
		tr.add(v.gave(e, val && err == nil, prog, err))
	}
	for i := range v.rules {
		r := &v.rules[i]
		ok, err := r.cond.Bool(m, env)
		if err != nil {
			step(KindRule, i, r, nil, false, false, err)
			return false, true, err
		}
		if !ok {
			step(KindRule, i, r, nil, false, false, nil)
			continue
		}
		val, err := v.branch(m, env, &r.then)
		step(KindRule, i, r, &r.then, true, val, err)
		if err != nil {
			return false, true, err
		}
		return val, true, nil
	}
	if v.els == nil {
		return false, false, nil
	}
	val, err := v.branch(m, env, v.els)
	step(KindElse, len(v.rules), nil, v.els, true, val, err)
	if err != nil {
		return false, true, err
	}
	return val, true, nil
}

// Session is what the relay knows of an SMTP session when the client
// gives a RCPT command: the values of the session-phase variables.
type Session struct {
	// Listener is the name of the listener the client is connected to.
	Listener string
	// ClientIP is the client's address (given by the PROXY header behind
	// a load balancer).
	ClientIP netip.Addr
	// TLS says the session is encrypted (STARTTLS, or submissions).
	TLS bool
	// AuthenticatedAs is the SASL identity; "" when not authenticated.
	AuthenticatedAs string
	// Sender is the MAIL FROM address, "" for the null sender <>.
	Sender string
	// Rcpt is the RCPT TO address being decided.
	Rcpt string
}

// Fill resets env's variables (keeping its Funcs) and sets the session
// phase's from s, as expressions expect them: the client's address
// unmapped in canonical text, the domains lower-case without a trailing
// dot.
func (s Session) Fill(env *expr.Env) {
	env.Reset()
	env.Listener, env.TLS, env.AuthenticatedAs = s.Listener, s.TLS, s.AuthenticatedAs
	if s.ClientIP.IsValid() {
		env.ReceivedFromIP = s.ClientIP.Unmap().WithZone("").String()
	}
	env.Sender, env.SenderDomain = s.Sender, addressDomain(s.Sender)
	env.Rcpt, env.RcptDomain = s.Rcpt, addressDomain(s.Rcpt)
}

// addressDomain is the domain of an address, lower-case, without a
// trailing dot; "" without an @.
func addressDomain(a string) string {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(a[at+1:], "."))
}

// MayRelay decides whether the client of session s may relay to s.Rcpt.
// The relay.permit rules are evaluated first: when one matches (or there
// is an else) its value decides. Otherwise a client in relay.networks or
// an authenticated one may relay, and any other may not. env is the
// caller's scratch environment, its Funcs from the policy's
// [Set.Library] (one per goroutine, like m); its variables are
// overwritten. An evaluation error returns false and the error (the relay
// answers 451 4.3.0, never relays).
func (r *Relay) MayRelay(m *expr.VM, env *expr.Env, s Session, tr *Trace) (bool, error) {
	s.Fill(env)
	allowed, decided, err := r.Permit.Eval(m, env, tr)
	switch {
	case err != nil:
		return false, err
	case decided:
		return allowed, nil
	}
	return s.AuthenticatedAs != "" || r.InNetworks(s.ClientIP), nil
}

// permitField declares relay.permit: session-phase rules, and rules only.
func permitField() Field {
	const path = "relay.permit"
	return Field{
		Path: path, Type: "rules, each then true or false", Phase: expr.Session.String(), value: true, Default: "[]",
		Doc: "Rules evaluated for each RCPT command, in the session phase (variables sender, sender_domain, rcpt, rcpt_domain, received_from_ip, authenticated_as, listener, tls): the first if that holds decides, true relays and false refuses (554 5.7.1 Relay access denied). " +
			"When no rule matches and there is no else, relay.networks and AUTH decide: a client in the networks, or authenticated, may relay. So rules usually deny (then: false); a rule that allows must require AUTH or a client network on a listener that is not loopback-only (the open-relay guard). " +
			"Only the rule form: a list of if/then and an optional else; then and else are true, false or {expr: ...}. An expression that fails at run time never allows: the RCPT is answered 451 4.3.0.",
		Example: "relay:\n  permit:\n    - if: authenticated_as == \"\" && !is_ip_in_cidr(received_from_ip, \"10.1.0.0/16\")\n      then: false",
		init: func(s *Set, _ string) {
			s.relay.Permit = &Permit{v: &Value[bool]{setting: path, phase: expr.Session, k: boolKind, def: false, onError: false}}
		},
		decode: decodePermit,
		node: func(s *Set) *yaml.Node {
			if s.relay.Permit.Len() == 0 {
				return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			}
			return s.relay.Permit.v.Node()
		},
	}
}

// decodePermit reads relay.permit: nothing, [], or rules.
func decodePermit(d *decoder, s *Set, n *yaml.Node) {
	p := s.relay.Permit
	s.relay.recordAt(d, "relay.permit", n)
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null", n.Kind == yaml.SequenceNode && len(n.Content) == 0:
		return
	case n.Kind != yaml.SequenceNode:
		d.errorf(n, p.v.setting, "expected rules (- if: CONDITION, then: true or false), found a %s: relay.permit takes only the rule form", nodeKind(n))
		return
	}
	p.v.at = d.pos(n)
	for i, item := range n.Content {
		at := d.pos(follow(item))
		p.itemAt = append(p.itemAt, at)
		s.relay.at[fmt.Sprintf("%s[%d]", p.v.setting, i)] = at
	}
	decodeRules(d, n, p.v, expr.Spec{Setting: p.v.setting, Type: expr.Bool, Phase: expr.Session})
}

// rulePath names the rule written at at ("relay.permit[2]").
func (p *Permit) rulePath(at Pos) string {
	for i, a := range p.itemAt {
		if a == at {
			return fmt.Sprintf("%s[%d]", p.v.setting, i)
		}
	}
	return p.v.setting
}
