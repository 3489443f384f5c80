package sched

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is returned by [Scheduler.Next] once [Scheduler.Close] has
// been called.
var ErrClosed = errors.New("sched: scheduler closed")

// Options configure a [Scheduler].
type Options struct {
	// Workers is the number of dispatches that may be active at once,
	// all destinations together (the relay's queue.workers); <= 0 means 1.
	Workers int
	// DestinationLimit is the number of normal dispatches that may be
	// active at once for a destination (queue.destination-concurrency).
	// It is asked again each time a destination is about to be
	// dispatched, so it may change (on a reload); a result <= 0, or a nil
	// func, means 1. It is called with the scheduler's lock held: it must
	// be quick and must not call the Scheduler.
	DestinationLimit func(dest string) int
	// Clock is the time source; nil means [SystemClock].
	Clock Clock
}

// Dispatch is one item handed out by [Scheduler.Next]: deliver (or, when
// Down, defer) message ID's recipients for destination Dest, then call
// [Scheduler.Done] with it.
type Dispatch struct {
	// ID and Dest identify the item; Payload is what was last given to
	// [Scheduler.Add] for it.
	ID, Dest string
	Payload  any
	// Due is the time the item was due.
	Due time.Time
	// Down says the destination is down: defer the item without
	// connecting (count the attempt for expiry only) and re-add it, due
	// no earlier than Until, the end of the down period. Reason is the
	// error given to [Scheduler.MarkDown].
	Down   bool
	Reason string
	Until  time.Time
	// Probe says this is the one normal dispatch to a down destination
	// whose down period has passed. Its outcome decides for the others:
	// call [Scheduler.MarkUp] or [Scheduler.MarkDown] before Done.
	Probe bool

	it   *item
	gen  uint64
	kind kind
}

// kind is what a Dispatch holds: which counters its Done releases.
type kind uint8

const (
	kindNormal kind = iota
	kindDown
	kindProbe
)

// Filter selects items for [Scheduler.Flush]: an empty field matches
// everything, so the zero Filter is the whole queue.
type Filter struct {
	ID   string // one message's items
	Dest string // one destination's items
}

// Scheduler is the relay's in-memory delivery schedule. It is safe for
// concurrent use. See the package documentation for how it works.
type Scheduler struct {
	clock Clock
	limit func(string) int

	mu      sync.Mutex
	workers int
	active  int // dispatches not yet Done, normal and down
	dests   map[string]*destination
	byID    map[string]*item // first item of each message; the rest chained by item.next
	timers  destHeap
	ring    ring
	seq     uint64
	wake    chan struct{} // closed (and dropped) at every change, when someone waits
	closed  bool
}

// New returns an empty Scheduler.
func New(o Options) *Scheduler {
	s := &Scheduler{
		clock:   o.Clock,
		limit:   o.DestinationLimit,
		workers: max(o.Workers, 1),
		dests:   map[string]*destination{},
		byID:    map[string]*item{},
	}
	if s.clock == nil {
		s.clock = SystemClock()
	}
	return s
}

// Add schedules message id's recipients for destination dest, due at
// due, with payload handed back in the [Dispatch]. When (id, dest) is
// already queued, its due time and payload are replaced. When it is being
// dispatched (between [Scheduler.Next] and [Scheduler.Done]), it is queued
// again when that dispatch is Done — never dispatched twice at once.
func (s *Scheduler) Add(id, dest string, due time.Time, payload any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.find(id, dest)
	switch {
	case it == nil:
		d := s.dests[dest]
		if d == nil {
			d = &destination{name: dest, tidx: -1}
			s.dests[dest] = d
		}
		it = &item{id: id, dest: d, next: s.byID[id], due: due, payload: payload}
		s.byID[id] = it
		heap.Push(&d.items, entry{key(due), s.nextSeq(), it})
		s.place(d)
	case it.active:
		it.due, it.payload, it.readd = due, payload, true
		return // nothing to wake for before Done
	default:
		it.due, it.payload = due, payload
		it.dest.items[it.idx].due = key(due)
		heap.Fix(&it.dest.items, it.idx)
		s.place(it.dest)
	}
	s.changed()
}

// Remove takes (id, dest) off the schedule and reports whether it was
// queued. An item being dispatched is not queued: Remove only cancels an
// [Scheduler.Add] made during the dispatch, and reports whether there was
// one.
func (s *Scheduler) Remove(id, dest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.find(id, dest)
	return it != nil && s.remove(it, s.clock.Now())
}

// RemoveMessage takes all of message id's items off the schedule, as
// [Scheduler.Remove] does for each, and returns how many were queued.
func (s *Scheduler) RemoveMessage(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := s.clock.Now(), 0
	for it := s.byID[id]; it != nil; {
		next := it.next
		if s.remove(it, now) {
			n++
		}
		it = next
	}
	return n
}

// Item describes one of a message's entries on the schedule, for
// [Scheduler.Items].
type Item struct {
	Dest    string
	Due     time.Time // when it is due (while Active: when it was)
	Payload any
	Active  bool // being dispatched
	// Down, Until and Reason are its destination's down state, as
	// [Scheduler.MarkDown] set it.
	Down   bool
	Until  time.Time
	Reason string
}

// Items returns message id's entries on the schedule, one per
// destination, in no particular order; none when it has none.
func (s *Scheduler) Items(id string) []Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items(nil, s.byID[id])
}

// items appends the description of the chain of items from first to
// out; s.mu is held.
func (s *Scheduler) items(out []Item, first *item) []Item {
	for it := first; it != nil; it = it.next {
		d := it.dest
		out = append(out, Item{Dest: d.name, Due: it.due, Payload: it.payload, Active: it.active,
			Down: d.down, Until: d.until, Reason: d.reason})
	}
	return out
}

// EachMessage calls fn for every message on the schedule, with its
// entries as [Scheduler.Items] describes them (the slice is reused: it is
// valid during the call only). It holds the scheduler's lock throughout:
// fn must be quick and must not call the Scheduler. It is meant for
// metrics, once per scrape.
func (s *Scheduler) EachMessage(fn func(id string, items []Item)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []Item
	for id, first := range s.byID {
		items = s.items(items[:0], first)
		fn(id, items)
	}
}

// remove is Remove for one item; s.mu is held.
func (s *Scheduler) remove(it *item, now time.Time) bool {
	if it.active {
		was := it.readd
		it.readd = false
		return was
	}
	d := it.dest
	heap.Remove(&d.items, it.idx)
	s.unlink(it)
	s.place(d)
	s.gc(d, now)
	return true
}

// Flush makes the items f selects due now (those already due keep their
// place) and clears the down state of their destinations — of the
// destination f names, or of every destination for the zero Filter — so
// that they are sent at once. It returns how many items it moved forward.
// An item being dispatched, re-added during the dispatch, is made due now
// as well.
func (s *Scheduler) Flush(f Filter) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := s.clock.Now(), 0
	touched := map[*destination]bool{}
	flush := func(it *item) {
		if f.Dest != "" && it.dest.name != f.Dest {
			return
		}
		touched[it.dest] = true
		if (!it.active || it.readd) && it.due.After(now) {
			it.due = now
			if !it.active {
				it.dest.items[it.idx].due = key(now)
			}
			n++
		}
	}
	switch {
	case f.ID != "":
		for it := s.byID[f.ID]; it != nil; it = it.next {
			flush(it)
		}
	case f.Dest != "":
		if d := s.dests[f.Dest]; d != nil {
			touched[d] = true
		}
		fallthrough
	default:
		for _, it := range s.byID {
			for ; it != nil; it = it.next {
				flush(it)
			}
		}
		if f.Dest == "" {
			for _, d := range s.dests {
				touched[d] = true
			}
		}
	}
	for d := range touched {
		heap.Init(&d.items)
		d.down, d.until, d.reason = false, time.Time{}, ""
		s.unblock(d)
		s.place(d)
		s.gc(d, now)
	}
	s.changed()
	return n
}

// Messages is the number of messages with items in the scheduler,
// waiting or being dispatched (one message counts once, whatever its
// destinations).
func (s *Scheduler) Messages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// MarkDown marks destination dest down until until, for reason (the last
// error, for the log and the deferral's message): its due items are
// handed out as Down dispatches instead of normal ones until then; after
// that exactly one is handed out as a Probe while the rest wait for
// [Scheduler.MarkUp] or another MarkDown. Calling it again (when the probe
// fails) starts a new down period.
func (s *Scheduler) MarkDown(dest string, until time.Time, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dests[dest]
	if d == nil {
		d = &destination{name: dest, tidx: -1}
		s.dests[dest] = d
	}
	d.down, d.until, d.reason = true, until, reason
	s.unblock(d)
	s.changed()
}

// MarkUp clears destination dest's down state (a delivery to it got an
// SMTP reply): its waiting items are dispatched normally again. It is
// cheap when dest is not down, so the daemon may call it after every
// answered attempt.
func (s *Scheduler) MarkUp(dest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dests[dest]
	if d == nil || !d.down {
		return
	}
	d.down, d.until, d.reason = false, time.Time{}, ""
	s.unblock(d)
	s.gc(d, s.clock.Now())
	s.changed()
}

// Next waits until an item can be dispatched and returns it: an item that
// is due, of a destination with a free slot (fewer active normal
// dispatches than its limit; a down destination needs none, see
// [Dispatch]), while fewer than Workers dispatches are active.
// Destinations take turns: each dispatch sends its destination to the
// back of the line. Within a destination the earliest due item goes
// first. Next returns [ErrClosed] after [Scheduler.Close], and ctx's error,
// wrapped, when ctx ends first. Every Dispatch returned must be given back
// to [Scheduler.Done].
func (s *Scheduler) Next(ctx context.Context) (Dispatch, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Dispatch{}, ErrClosed
		}
		dp, ok, wakeAt := s.next(s.clock.Now())
		if ok {
			s.mu.Unlock()
			return dp, nil
		}
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		wake := s.wake
		s.mu.Unlock()

		var timer Timer
		var fire <-chan time.Time
		if !wakeAt.IsZero() {
			timer = s.clock.NewTimerAt(wakeAt)
			fire = timer.C()
		}
		select {
		case <-wake:
		case <-fire:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return Dispatch{}, fmt.Errorf("sched: waiting for a due item: %w", err)
		}
	}
}

// TryNext is [Scheduler.Next] without the wait: it reports false when no
// item can be dispatched now (or the Scheduler is closed).
func (s *Scheduler) TryNext() (Dispatch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Dispatch{}, false
	}
	dp, ok, _ := s.next(s.clock.Now())
	return dp, ok
}

// next picks the next dispatch at now, or says when to look again (zero:
// at the next change); s.mu is held.
func (s *Scheduler) next(now time.Time) (dp Dispatch, ok bool, wakeAt time.Time) {
	if s.active >= s.workers {
		return Dispatch{}, false, time.Time{}
	}
	// Scheduled -> ready: destinations whose earliest item is due join
	// the back of the line.
	nowKey := key(now)
	for len(s.timers) > 0 && s.timers[0].head().due <= nowKey {
		d := heap.Pop(&s.timers).(*destination)
		d.inRing = true
		s.ring.push(d)
	}
	for s.ring.len() > 0 {
		d := s.ring.pop()
		d.inRing = false
		if len(d.items) == 0 || d.head().due > nowKey {
			// Its due items were removed since it joined.
			s.place(d)
			s.gc(d, now)
			continue
		}
		switch {
		case d.down && now.Before(d.until):
			dp = s.dispatch(d, kindDown)
			d.deferring++
			dp.Down, dp.Reason, dp.Until = true, d.reason, d.until
			s.requeue(d, now)
		case d.active >= s.limitOf(d), d.down && d.probing:
			d.blocked = true
			continue
		case d.down:
			dp = s.dispatch(d, kindProbe)
			d.active++
			d.probing, dp.Probe = true, true
			d.blocked = true // the others wait for the probe's outcome
		default:
			dp = s.dispatch(d, kindNormal)
			d.active++
			s.requeue(d, now)
		}
		return dp, true, time.Time{}
	}
	if len(s.timers) > 0 {
		wakeAt = s.timers[0].head().it.due
	}
	return Dispatch{}, false, wakeAt
}

// dispatch takes d's earliest item out of its heap as active; s.mu is
// held.
func (s *Scheduler) dispatch(d *destination, k kind) Dispatch {
	it := heap.Pop(&d.items).(entry).it
	it.active = true
	it.gen++
	s.active++
	return Dispatch{ID: it.id, Dest: d.name, Payload: it.payload, Due: it.due, it: it, gen: it.gen, kind: k}
}

// requeue puts d, just dispatched, at the back of the line when it has
// another due item, else with the waiting destinations; s.mu is held.
func (s *Scheduler) requeue(d *destination, now time.Time) {
	if len(d.items) > 0 && d.head().due <= key(now) {
		d.inRing = true
		s.ring.push(d)
		return
	}
	s.place(d)
}

// Done ends dispatch dp: its slots are free again, and its item is
// dropped unless it was re-added (or Flushed) during the dispatch, in
// which case it is queued again with that due time. Calling Done again
// for the same Dispatch does nothing.
func (s *Scheduler) Done(dp Dispatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := dp.it
	if it == nil || !it.active || it.gen != dp.gen {
		return
	}
	d := it.dest
	it.active = false
	s.active--
	switch dp.kind {
	case kindDown:
		d.deferring--
	case kindProbe:
		d.active--
		d.probing = false
	default:
		d.active--
	}
	if it.readd {
		it.readd = false
		heap.Push(&d.items, entry{key(it.due), s.nextSeq(), it})
	} else {
		s.unlink(it)
	}
	s.unblock(d)
	s.place(d)
	s.gc(d, s.clock.Now())
	s.changed()
}

// SetWorkers changes the global dispatch limit (after a reload; <= 0
// means 1) and asks DestinationLimit again for every destination waiting
// on its own limit.
func (s *Scheduler) SetWorkers(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers = max(n, 1)
	for _, d := range s.dests {
		s.unblock(d)
	}
	s.changed()
}

// Close makes Next return [ErrClosed], now and from then on. Active
// dispatches may still be Done; [Scheduler.Wait] waits for them.
func (s *Scheduler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.changed()
}

// Wait waits until no dispatch is active (for a shutdown, after
// [Scheduler.Close]). It returns ctx's error, wrapped, if ctx ends first.
func (s *Scheduler) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		active := s.active
		if active == 0 {
			s.mu.Unlock()
			return nil
		}
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("sched: waiting for %d active dispatches: %w", active, ctx.Err())
		}
	}
}

// find is the item (id, dest), or nil; s.mu is held.
func (s *Scheduler) find(id, dest string) *item {
	for it := s.byID[id]; it != nil; it = it.next {
		if it.dest.name == dest {
			return it
		}
	}
	return nil
}

// unlink drops it from its message's chain; s.mu is held.
func (s *Scheduler) unlink(it *item) {
	p := s.byID[it.id]
	if p == it {
		if it.next == nil {
			delete(s.byID, it.id)
		} else {
			s.byID[it.id] = it.next
		}
		return
	}
	for ; p != nil; p = p.next {
		if p.next == it {
			p.next = it.next
			return
		}
	}
}

// place files d by its earliest item: in the timer heap when it has one,
// nowhere when it has none. A destination in the ring or blocked stays
// there (it is looked at again when it leaves); s.mu is held.
func (s *Scheduler) place(d *destination) {
	switch {
	case d.inRing || d.blocked:
	case len(d.items) == 0:
		if d.tidx >= 0 {
			heap.Remove(&s.timers, d.tidx)
		}
	case d.tidx >= 0:
		heap.Fix(&s.timers, d.tidx)
	default:
		heap.Push(&s.timers, d)
	}
}

// unblock gives a blocked destination another look; s.mu is held.
func (s *Scheduler) unblock(d *destination) {
	if d.blocked {
		d.blocked = false
		s.place(d)
	}
}

// gc forgets d when nothing refers to it any more: no item, no dispatch,
// and no down period still running; s.mu is held.
func (s *Scheduler) gc(d *destination, now time.Time) {
	if len(d.items) == 0 && d.active == 0 && d.deferring == 0 && !d.probing &&
		!d.inRing && !d.blocked && d.tidx < 0 && (!d.down || !now.Before(d.until)) {
		delete(s.dests, d.name)
	}
}

// limitOf is d's current concurrency limit; s.mu is held.
func (s *Scheduler) limitOf(d *destination) int {
	if s.limit == nil {
		return 1
	}
	return max(s.limit(d.name), 1)
}

// nextSeq numbers insertions; s.mu is held.
func (s *Scheduler) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// changed wakes the goroutines waiting in Next or Wait; s.mu is held.
func (s *Scheduler) changed() {
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}
