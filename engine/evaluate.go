package engine

import (
	"context"
	"errors"
	"log/slog"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/mailbox"
)

// run is one evaluation of one message (or, forked, of one of its
// groups).
type run struct {
	e   *Engine
	s   *state
	ev  *evaluator
	cfg evalConfig
	ctx context.Context
	// budget bounds the DNS lookups of the evaluation; forks share it.
	budget *dnsBudget
	msg    *Message
	// sender is the parsed reverse-path (zero for <> and when invalid);
	// senderText its canonical form, rcpts the recipients' (the text as
	// given for those that do not parse). Forks share them.
	sender     mailbox.Address
	senderText string
	rcpts      []string
}

func (r *run) vm() *expr.VM   { return &r.ev.vm }
func (r *run) env() *expr.Env { return &r.ev.env }

// resetEnv fills the recipient-phase variables common to every recipient.
// Addresses are in their canonical form (domain lower-cased, no trailing
// dot) when they parse.
func (r *run) resetEnv() {
	env := r.env()
	env.Reset()
	m := r.msg
	env.Sender, env.SenderDomain = r.senderText, r.sender.Domain
	env.Recipients = append(env.Recipients, r.rcpts...)
	env.Size, env.Priority, env.RetryNum, env.NotifyNum = m.Size, m.Priority, m.RetryNum, m.NotifyNum
	env.ExpiresIn, env.LastError, env.LastStatus = m.ExpiresIn, m.LastError, m.LastStatus
	env.QueueName, env.QueueAge, env.Source = m.QueueName, m.QueueAge, m.Source
	env.ReceivedFromIP, env.ReceivedViaPort, env.AuthenticatedAs = m.ReceivedFromIP, m.ReceivedViaPort, m.AuthenticatedAs
	env.Meta = m.Meta
	if env.LastError == "" {
		env.LastError = "none"
	}
}

type groupKey struct{ domain, route string }

// decide evaluates the whole message.
func (r *run) decide() *Decision {
	set := r.s.set
	d := &Decision{Policy: set.File, Message: MessageInfo{Sender: r.msg.From, Recipients: r.msg.To, Size: r.msg.Size}}
	sender, serr := mailbox.ParseReversePath(r.msg.From)
	r.sender, r.senderText = sender, canonical(r.msg.From, sender)
	if serr != nil {
		// Nothing can be sent with a reverse-path that does not parse:
		// every recipient fails, with the reason.
		g := &Group{Recipients: r.msg.To, Hosts: []*Host{}, Throttles: []ThrottleInfo{}, Trace: []policies.TraceEntry{}, Outcome: OutcomeFail,
			Error: &GroupError{Class: ClassInvalidAddress, Message: "sender: " + serr.Error()}}
		g.wire, g.badSender = r.msg.To, true
		d.Groups = []*Group{g}
		return d
	}
	var parsed []parsedRcpt
	parsed, r.rcpts = parseRecipients(r.msg.To)
	r.resetEnv()
	env := r.env()

	// Recipient phase: the route of every recipient, grouped by (domain,
	// route) in the order recipients first appear.
	var index map[groupKey]*Group // made once there are many groups
	keys := make([]groupKey, 0, 8)
	for i, rcpt := range r.msg.To {
		addr, aerr := parsed[i].addr, parsed[i].err
		env.Rcpt, env.RcptDomain = r.rcpts[i], addr.Domain
		var tr *policies.Trace
		if r.cfg.trace {
			tr = &policies.Trace{}
		}
		name := ""
		var rerr error
		k := groupKey{addr.Domain, ""}
		if aerr != nil {
			k.route = "\x00invalid " + rcpt // each its own group, with its own error
		} else if name, rerr = r.evalRoute(tr); rerr != nil {
			k.route = "\x00error " + rcpt
		} else {
			k.route = name
		}
		g := findGroup(d.Groups, keys, index, k)
		if g == nil {
			g = &Group{Domain: addr.Domain, Hosts: []*Host{}, Throttles: []ThrottleInfo{}, Trace: []policies.TraceEntry{}, literal: addr.Literal}
			switch {
			case aerr != nil:
				g.Outcome = OutcomeFail
				g.Error = &GroupError{Temporary: false, Class: ClassInvalidAddress, Message: "recipient: " + aerr.Error()}
			case rerr != nil:
				g.Outcome = OutcomeDefer
				g.Error = &GroupError{Temporary: true, Class: ClassPolicy, Message: "routing.route failed to evaluate: " + rerr.Error()}
			default:
				g.route = set.Routes[name]
				g.Route = r.routeInfo(g.route)
			}
			d.Groups, keys = append(d.Groups, g), append(keys, k)
			switch {
			case index != nil:
				index[k] = g
			case len(keys) > 8:
				index = make(map[groupKey]*Group, 2*len(keys))
				for j, key := range keys {
					index[key] = d.Groups[j]
				}
			}
		}
		g.Recipients = append(g.Recipients, rcpt)
		g.wire = append(g.wire, r.rcpts[i])
		if tr != nil {
			for i := range tr.Entries {
				tr.Entries[i].Context = "rcpt " + rcpt
			}
			g.Trace = append(g.Trace, tr.Entries...)
		}
	}

	// Decide each group (their DNS lookups run in parallel), then split
	// the groups larger than limits.recipients.
	decided := r.groups(d.Groups)
	n := len(d.Groups)
	for _, chunks := range decided {
		n += max(len(chunks)-1, 0)
	}
	if n == len(d.Groups) {
		return d // nothing split
	}
	out := make([]*Group, 0, n)
	for i, g := range d.Groups {
		if decided[i] == nil {
			out = append(out, g)
			continue
		}
		out = append(out, decided[i]...)
	}
	d.Groups = out
	return d
}

// findGroup returns the group of key k: keys[i] is the key of groups[i],
// and index, when made, maps keys to groups (a few groups are searched
// faster than a map is made).
func findGroup(groups []*Group, keys []groupKey, index map[groupKey]*Group, k groupKey) *Group {
	if index != nil {
		return index[k]
	}
	for i, key := range keys {
		if key == k {
			return groups[i]
		}
	}
	return nil
}

// evalRoute evaluates routing.route for the recipient in the environment.
func (r *run) evalRoute(tr *policies.Trace) (string, error) {
	name, err := r.s.set.Route.Eval(r.vm(), r.env(), tr)
	if err != nil {
		r.exprFailed(r.s.set.Route.Setting(), err)
	}
	return name, err
}

// exprFailed logs the run-time failure of a setting's expression (an
// evaluation budget used up, an index out of range...). The setting has
// taken its fallback value; the trace of a dry-run shows the error too.
func (r *run) exprFailed(setting string, err error) {
	at := ""
	var pe *expr.Error
	if errors.As(err, &pe) {
		at = pe.Position().String()
	}
	r.e.opts.Logger.LogAttrs(r.ctx, slog.LevelWarn, "policy expression failed", slog.String("setting", setting),
		slog.String("at", at), slog.Bool("budget", errors.Is(err, expr.ErrBudget)), slog.String("error", err.Error()))
}

// eval evaluates v in r's environment, logging a run-time failure (the
// value is then v's fallback).
func eval[T any](r *run, v *policies.Value[T], tr *policies.Trace) T {
	val, err := v.Eval(r.vm(), r.env(), tr)
	if err != nil {
		r.exprFailed(v.Setting(), err)
	}
	return val
}

// evalErr is eval that also returns the error, for settings whose failure
// changes the decision.
func evalErr[T any](r *run, v *policies.Value[T], tr *policies.Trace) (T, error) {
	val, err := v.Eval(r.vm(), r.env(), tr)
	if err != nil {
		r.exprFailed(v.Setting(), err)
	}
	return val, err
}

func (r *run) routeInfo(rt *policies.Route) RouteInfo {
	ri := RouteInfo{Name: rt.Name, Type: rt.Type}
	if rt.Type == policies.RouteRelay {
		ri.Address, ri.Port, ri.Protocol, ri.ImplicitTLS = rt.Address, rt.Port, rt.Protocol, rt.ImplicitTLS
		if rt.Auth != nil {
			ri.Auth = &AuthInfo{Username: rt.Auth.Username, Secret: rt.Auth.Secret.Source()}
		}
	}
	return ri
}
