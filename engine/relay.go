package engine

import (
	"context"

	"github.com/postern-mta/postern/policies"
)

// Permit evaluates the policy's relay.permit rules for one RCPT of an
// SMTP session (the session phase: client address, listener, TLS,
// authenticated identity, sender, recipient). decided is false when no
// rule matched (and there is no else): the relay then follows
// relay.networks and AUTH. An evaluation error never allows: it comes
// back with allowed false, and the relay answers 451 4.3.0.
func (e *Engine) Permit(ctx context.Context, s policies.Session) (allowed, decided bool, err error) {
	st := e.state.Load()
	p := st.set.Relay().Permit
	if p == nil || p.Len() == 0 {
		return false, false, nil
	}
	ev := st.pool.Get().(*evaluator)
	defer st.pool.Put(ev)
	ev.vm.SetContext(ctx)
	s.Fill(&ev.env)
	return p.Eval(&ev.vm, &ev.env, nil)
}
