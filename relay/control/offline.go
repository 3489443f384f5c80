package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/relay/spool"
)

// OpenOffline opens the spool in dir as a [Queue], without a daemon.
//
// Read-only (writable false) it takes no lock and changes nothing, so it
// works beside a running daemon (racily: a message may come or go while
// it reads): List, Show, Body and Stats read the files; the other verbs
// return errors wrapping [ErrOffline]. Destinations are unknown offline.
//
// Writable, it takes the spool lock (an error wrapping
// [*spool.LockedError] when the daemon or another process holds it) and
// edits the state files: Hold and Release set the hold mark, Flush makes
// deferred recipients due at once (the daemon tries them when it
// starts), Delete removes messages. Delete with bounce is refused (only
// the daemon can send the DSN) and Reload needs the daemon. The spool
// must exist: the daemon creates it.
//
// The Closer releases the lock (after syncing the spool's file system).
func OpenOffline(dir string, writable bool) (Queue, io.Closer, error) {
	if !writable {
		return OpenView(dir, nil)
	}
	if _, err := spool.OpenReadOnly(dir); err != nil { // checks that dir is a spool: Open would create one
		return nil, nil, err
	}
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		var le *spool.LockedError
		if errors.As(err, &le) {
			return nil, nil, fmt.Errorf("%w: stop the daemon to change the spool directly, or leave out --offline to ask the daemon", err)
		}
		return nil, nil, err
	}
	return &offline{sp: sp, writable: true}, sp, nil
}

// OpenView is the read-only [OpenOffline] for a running daemon, which
// knows more than the files say: annotate, when not nil, may amend each
// message's description before List, Show, Stats and the filters see it.
// The daemon uses it for recipients that wait for a destination it knows
// to be down, which it does not record on disk.
func OpenView(dir string, annotate func(*MessageInfo)) (Queue, io.Closer, error) {
	ro, err := spool.OpenReadOnly(dir)
	if err != nil {
		return nil, nil, err
	}
	return &offline{sp: ro, annotate: annotate}, ro, nil
}

// offline is a Queue on the spool files.
type offline struct {
	sp       *spool.Spool
	writable bool
	annotate func(*MessageInfo) // see OpenView; nil: the files alone
	mu       sync.Mutex         // one change at a time (the spool does not lock messages)
}

// info describes e, as annotated.
func (o *offline) info(e *entry) MessageInfo {
	mi := e.info()
	if o.annotate != nil {
		o.annotate(&mi)
	}
	return mi
}

// entry is one queued message as read offline.
type entry struct {
	id    string
	env   *spool.Envelope
	state *spool.State
	size  int64
}

func (e *entry) info() MessageInfo {
	m := MessageInfo{
		ID:         e.id,
		From:       e.env.From,
		Arrival:    e.env.Arrival,
		Size:       e.size,
		Held:       e.state.Hold,
		Source:     e.env.Source,
		Recipients: make([]RecipientInfo, len(e.env.Recipients)),
	}
	for i, r := range e.env.Recipients {
		rs := e.state.Get(i)
		m.Recipients[i] = RecipientInfo{
			Addr:        r.Addr,
			Status:      statusName(rs.Status),
			Attempts:    rs.Attempts,
			NextAttempt: rs.NextAttempt,
			LastAttempt: rs.LastAttempt,
			LastError:   rs.LastError,
		}
	}
	return m
}

// statusName is the RecipientInfo.Status of a spool status.
func statusName(st spool.Status) string {
	if st == spool.StatusPending {
		return StatusPending
	}
	return string(st)
}

// stateOf is the Stats.ByState key of recipient r of a message.
func stateOf(r RecipientInfo, held bool) string {
	switch {
	case r.Status != StatusPending:
		return r.Status
	case held:
		return StateHeld
	case r.Deferred():
		return StateDeferred
	}
	return StatePending
}

// load reads message id; ok is false when it is not queued.
func (o *offline) load(id string) (e entry, ok bool, err error) {
	m, err := o.sp.Load(id)
	if errors.Is(err, os.ErrNotExist) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	m.Close()
	st, err := o.sp.ReadState(id)
	if errors.Is(err, spool.ErrCorrupt) {
		st = &spool.State{} // as Scan does: a damaged state restarts the message
	} else if err != nil {
		return e, false, err
	}
	return entry{id: id, env: m.Envelope, state: st, size: m.Size}, true, nil
}

// selected returns the messages f selects, in ID order, and the IDs of
// f.IDs that are not queued. With IDs it reads those messages only,
// else it scans the spool.
func (o *offline) selected(f Filter) ([]entry, []string, error) {
	var out []entry
	keep := func(e entry) {
		mi := o.info(&e)
		if f.Match(&mi) {
			out = append(out, e)
		}
	}
	var missing []string
	if len(f.IDs) > 0 {
		ids := slices.Clone(f.IDs)
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			if !spool.ValidID(id) {
				return nil, nil, fmt.Errorf("queue ID %q: %w", id, spool.ErrBadID)
			}
			e, ok, err := o.load(id)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				missing = append(missing, id)
				continue
			}
			keep(e)
		}
		return out, missing, nil
	}
	_, err := o.sp.Scan(func(se spool.Entry) error {
		keep(entry{id: se.ID, env: se.Envelope, state: se.State, size: se.Size})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	return out, nil, nil
}

// notFound is the error for the IDs that are not queued, nil for none.
func notFound(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotFound, strings.Join(ids, ", "))
}

// List implements [Queue].
func (o *offline) List(_ context.Context, f Filter) ([]MessageInfo, error) {
	es, _, err := o.selected(f)
	if err != nil {
		return nil, err
	}
	if f.Limit > 0 && len(es) > f.Limit {
		es = es[:f.Limit]
	}
	ms := make([]MessageInfo, len(es))
	for i := range es {
		ms[i] = o.info(&es[i])
	}
	return ms, nil
}

// Show implements [Queue].
func (o *offline) Show(_ context.Context, id string) (MessageInfo, error) {
	es, missing, err := o.selected(Filter{IDs: []string{id}})
	if err != nil {
		return MessageInfo{}, err
	}
	if len(missing) > 0 {
		return MessageInfo{}, notFound(missing)
	}
	return o.info(&es[0]), nil
}

// Body implements [Queue].
func (o *offline) Body(_ context.Context, id string) (io.ReadCloser, error) {
	m, err := o.sp.Load(id)
	if errors.Is(err, os.ErrNotExist) {
		return nil, notFound([]string{id})
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{m.Body, m}, nil
}

// Stats implements [Queue].
func (o *offline) Stats(context.Context) (Stats, error) {
	st := Stats{ByState: map[string]int{}}
	_, err := o.sp.Scan(func(se spool.Entry) error {
		e := entry{id: se.ID, env: se.Envelope, state: se.State, size: se.Size}
		mi := o.info(&e)
		st.Messages++
		st.Recipients += len(mi.Recipients)
		for _, r := range mi.Recipients {
			st.ByState[stateOf(r, mi.Held)]++
		}
		if st.OldestArrival.IsZero() || mi.Arrival.Before(st.OldestArrival) {
			st.OldestArrival = mi.Arrival
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}

// change checks that the spool may be changed, for verb.
func (o *offline) change(verb string) error {
	if !o.writable {
		return fmt.Errorf("%s: %w: use --offline to change the spool directly (it takes the spool lock)", verb, ErrOffline)
	}
	return nil
}

// edit applies fn to the state of each message f selects and writes the
// states fn changed; it returns how many.
func (o *offline) edit(verb string, f Filter, fn func(e *entry) bool) (int, error) {
	if err := o.change(verb); err != nil {
		return 0, err
	}
	if !f.Selects() {
		return 0, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	es, missing, err := o.selected(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", verb, err)
	}
	n := 0
	for i := range es {
		if !fn(&es[i]) {
			continue
		}
		if err := o.sp.WriteState(es[i].id, es[i].state); err != nil {
			return n, fmt.Errorf("%s: %w", verb, err)
		}
		n++
	}
	if err := notFound(missing); err != nil {
		return n, fmt.Errorf("%s: %w", verb, err)
	}
	return n, nil
}

// Flush implements [Queue]: the pending recipients (in f.Domain, when
// set) that wait for a next attempt get a zero one (due now).
func (o *offline) Flush(_ context.Context, f Filter) (int, error) {
	return o.edit("flush", f, func(e *entry) bool {
		changed := false
		for i, r := range e.env.Recipients {
			rs := e.state.Get(i)
			if rs.Status.Final() || rs.NextAttempt.IsZero() || !f.MatchDomain(r.Addr) {
				continue
			}
			rs.NextAttempt = time.Time{}
			e.state.Set(i, rs)
			changed = true
		}
		return changed
	})
}

// Hold implements [Queue].
func (o *offline) Hold(_ context.Context, f Filter) (int, error) {
	return o.edit("hold", f, func(e *entry) bool {
		if e.state.Hold {
			return false
		}
		e.state.Hold = true
		return true
	})
}

// Release implements [Queue].
func (o *offline) Release(_ context.Context, ids []string) (int, error) {
	return o.edit("release", Filter{IDs: ids}, func(e *entry) bool {
		if !e.state.Hold {
			return false
		}
		e.state.Hold = false
		return true
	})
}

// Delete implements [Queue]: Remove, state then message.
func (o *offline) Delete(_ context.Context, ids []string, bounce bool) (int, error) {
	if bounce {
		return 0, fmt.Errorf("delete: --bounce needs the running daemon (it sends the DSN): %w", ErrOffline)
	}
	if err := o.change("delete"); err != nil {
		return 0, err
	}
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	for _, id := range ids {
		if !spool.ValidID(id) {
			return 0, fmt.Errorf("delete: queue ID %q: %w", id, spool.ErrBadID)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	var missing []string
	for _, id := range ids {
		err := o.sp.Remove(id)
		switch {
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, id)
		case err != nil:
			return n, fmt.Errorf("delete: %w", err)
		default:
			n++
		}
	}
	if err := notFound(missing); err != nil {
		return n, fmt.Errorf("delete: %w", err)
	}
	return n, nil
}

// Reload implements [Queue]: there is no daemon to reload.
func (o *offline) Reload(context.Context) error {
	return fmt.Errorf("reload: %w", ErrOffline)
}
