package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/relay/control"
	"github.com/postern-mta/postern/relay/sched"
	"github.com/postern-mta/postern/relay/spool"
	"github.com/postern-mta/postern/transport"
)

// admin is the running daemon's side of the control socket
// (`postern queue`): reads go through a read-only view of the spool, and
// changes are made under each message's lock and applied to the
// schedule at once.
type admin struct {
	d  *Daemon
	ro control.Queue
}

// newAdmin opens the read-only view of d's spool.
func newAdmin(d *Daemon) (*admin, io.Closer, error) {
	a := &admin{d: d}
	ro, closer, err := control.OpenView(d.sp.Dir(), a.annotate)
	if err != nil {
		return nil, nil, err
	}
	a.ro = ro
	return a, closer, nil
}

// annotate adds to m what only the schedule knows: a recipient waiting
// for a destination that is down was deferred without a connection, and
// that deferral is not written to its state file (no attempt was made;
// after a restart the destination is simply probed again). It is shown
// as deferred until the end of the down period, with the down reason as
// its last error, unless the file says it is due later.
func (a *admin) annotate(m *control.MessageInfo) {
	for _, it := range a.d.sc.Items(m.ID) {
		pl, ok := it.Payload.(*item)
		if !ok || !it.Down {
			continue
		}
		for _, i := range pl.rcpts {
			if i >= len(m.Recipients) {
				continue
			}
			r := &m.Recipients[i]
			if r.Status == control.StatusPending && r.NextAttempt.Before(it.Until) {
				r.NextAttempt, r.LastError = it.Until, downError(it.Reason)
			}
		}
	}
}

// List implements control.Queue.
func (a *admin) List(ctx context.Context, f control.Filter) ([]control.MessageInfo, error) {
	return a.ro.List(ctx, f)
}

// Show implements control.Queue.
func (a *admin) Show(ctx context.Context, id string) (control.MessageInfo, error) {
	return a.ro.Show(ctx, id)
}

// Body implements control.Queue.
func (a *admin) Body(ctx context.Context, id string) (io.ReadCloser, error) {
	return a.ro.Body(ctx, id)
}

// Stats implements control.Queue: the spool's counts with the
// scheduler's view of the destinations.
func (a *admin) Stats(ctx context.Context) (control.Stats, error) {
	st, err := a.ro.Stats(ctx)
	if err != nil {
		return st, err
	}
	ss := a.d.sc.Stats()
	st.DestinationsDown = ss.Down
	for _, ds := range ss.Destinations {
		st.Destinations = append(st.Destinations, control.DestStats{Dest: ds.Dest, Scheduled: ds.Scheduled, Ready: ds.Ready, Active: ds.Active, Down: ds.Down})
	}
	slices.SortStableFunc(st.Destinations, func(x, y control.DestStats) int {
		return cmp.Compare(y.Scheduled+y.Ready+y.Active, x.Scheduled+x.Ready+x.Active)
	})
	if ss.Active > 0 {
		st.ByState[control.StateActive] = ss.Active
	}
	return st, nil
}

// selected are the IDs of the messages f selects.
func (a *admin) selected(ctx context.Context, f control.Filter) ([]string, error) {
	if !f.Selects() {
		return nil, nil
	}
	sel := f
	if sel.All {
		sel.All = false
	}
	ms, err := a.ro.List(ctx, sel)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	if len(f.IDs) > 0 {
		var missing []string
		for _, id := range f.IDs {
			if !slices.Contains(ids, id) {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return ids, fmt.Errorf("%w: %s", control.ErrNotFound, strings.Join(missing, ", "))
		}
	}
	return ids, nil
}

// edit runs fn on the state of each message in ids, under its lock, and
// writes the state back when fn reports a change.
func (a *admin) edit(ids []string, fn func(id string, env *spool.Envelope, st *spool.State) bool) (int, error) {
	n := 0
	var errs []error
	for _, id := range ids {
		changed, err := a.editOne(id, fn)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if changed {
			n++
		}
	}
	return n, errors.Join(errs...)
}

func (a *admin) editOne(id string, fn func(id string, env *spool.Envelope, st *spool.State) bool) (bool, error) {
	defer a.d.q.lock(id)()
	msg, err := a.d.sp.Load(id)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // delivered and removed since it was selected
	}
	if err != nil {
		return false, err
	}
	env := msg.Envelope
	_ = msg.Close()
	st, err := a.d.sp.ReadState(id)
	if err != nil {
		return false, err
	}
	if !fn(id, env, st) {
		return false, nil
	}
	return true, a.d.sp.WriteState(id, st)
}

// Flush implements control.Queue: the selected messages' pending
// recipients are due now, and their destinations are no longer down.
func (a *admin) Flush(ctx context.Context, f control.Filter) (int, error) {
	if f.All && len(f.IDs) == 0 && f.Domain == "" && !f.Held && !f.Deferred {
		// Everything: the schedule alone changes, without reading or
		// writing a message. Every queued message that is not held is
		// in it; the next-attempt times on disk stay (an attempt writes
		// new ones, and a restart spreads the due messages anyway).
		n := a.d.sc.Messages()
		a.d.sc.Flush(sched.Filter{})
		if a.d.q.down != nil {
			a.d.q.down.clearAll()
		}
		a.d.log.Info("flushed", "messages", n)
		return n, nil
	}
	ids, err := a.selected(ctx, f)
	if err != nil && len(ids) == 0 {
		return 0, err
	}
	now := a.d.clock.Now()
	dests := map[string]bool{}
	n, eerr := a.edit(ids, func(id string, env *spool.Envelope, st *spool.State) bool {
		for i := range env.Recipients {
			rs := st.Get(i)
			if !rs.Status.Final() && f.MatchDomain(env.Recipients[i].Addr) && rs.NextAttempt.After(now) {
				rs.NextAttempt = time.Time{}
				st.Set(i, rs)
			}
		}
		if st.Hold {
			return false
		}
		// The flushed messages' destinations are no longer down: the
		// operator says try, so try (a down destination would defer
		// them again without a connection). Each only once: the first
		// attempt then decides for the messages after it, as a probe
		// does.
		if ds, derr := a.d.q.destinations(ctx, id, env, st); derr == nil {
			for d := range ds {
				if !dests[d] {
					dests[d] = true
					a.d.q.markUp(d)
				}
			}
		}
		if serr := a.d.q.schedule(ctx, id, env, st, now); serr != nil {
			a.d.log.Error("flush: cannot schedule", "id", id, "err", serr)
		}
		return true
	})
	return n, errors.Join(err, eerr)
}

// Hold implements control.Queue: held messages stay in the spool and are
// not delivered until released.
func (a *admin) Hold(ctx context.Context, f control.Filter) (int, error) {
	ids, err := a.selected(ctx, f)
	if err != nil && len(ids) == 0 {
		return 0, err
	}
	n, eerr := a.edit(ids, func(id string, env *spool.Envelope, st *spool.State) bool {
		if st.Hold {
			return false
		}
		st.Hold = true
		a.d.sc.RemoveMessage(id)
		a.d.q.setHeld(id, true, pendingRecipients(env, st))
		a.d.log.Info("held", "id", id)
		return true
	})
	return n, errors.Join(err, eerr)
}

// Release implements control.Queue: released messages are due now.
func (a *admin) Release(ctx context.Context, ids []string) (int, error) {
	sel, err := a.selected(ctx, control.Filter{IDs: ids})
	if err != nil && len(sel) == 0 {
		return 0, err
	}
	now := a.d.clock.Now()
	n, eerr := a.edit(sel, func(id string, env *spool.Envelope, st *spool.State) bool {
		if !st.Hold {
			return false
		}
		st.Hold = false
		if serr := a.d.q.schedule(ctx, id, env, st, now); serr != nil {
			a.d.log.Error("release: cannot schedule", "id", id, "err", serr)
		}
		a.d.log.Info("released", "id", id)
		return true
	})
	return n, errors.Join(err, eerr)
}

// Delete implements control.Queue. With bounce, the senders of the
// deleted messages get a failure DSN for every recipient still pending
// (queued before the message is removed).
func (a *admin) Delete(ctx context.Context, ids []string, bounce bool) (int, error) {
	sel, err := a.selected(ctx, control.Filter{IDs: ids})
	if err != nil && len(sel) == 0 {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range sel {
		if derr := a.deleteOne(ctx, id, bounce); derr != nil {
			errs = append(errs, derr)
			continue
		}
		n++
	}
	return n, errors.Join(append([]error{err}, errs...)...)
}

func (a *admin) deleteOne(ctx context.Context, id string, bounce bool) error {
	q := a.d.q
	defer q.lock(id)()
	msg, err := a.d.sp.Load(id)
	if err != nil {
		return err
	}
	defer msg.Close()
	st, err := a.d.sp.ReadState(id)
	if err != nil {
		return err
	}
	if bounce {
		var rcpts []int
		for i := range msg.Envelope.Recipients {
			if !st.Get(i).Status.Final() {
				rcpts = append(rcpts, i)
			}
		}
		if len(rcpts) > 0 {
			now := a.d.clock.Now()
			em := engineMessage(id, msg.Envelope, st, rcpts, "", msg.Size, now)
			results := make([]engine.Result, len(rcpts))
			for k := range rcpts {
				results[k] = engine.Result{Result: transport.Result{Recipient: em.To[k], Status: transport.StatusPermanent,
					Code: 554, Enhanced: transport.EnhancedCode{5, 0, 0}, Text: "deleted from the queue by the administrator"}}
			}
			if err := q.notify(ctx, id, msg.Envelope, msg, em, results, rcpts, st); err != nil {
				return fmt.Errorf("%s: the DSN could not be queued, the message is kept: %w", id, err)
			}
		}
	}
	a.d.sc.RemoveMessage(id)
	q.remove(id)
	a.d.log.Info("deleted", "id", id, "bounce", bounce)
	return nil
}

// Reload implements control.Queue.
func (a *admin) Reload(context.Context) error { return a.d.Reload() }
