package sched

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Clock is where a [Scheduler] reads the time and how it waits for it.
// [SystemClock] is the real one; [FakeClock] is moved by hand in tests.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// NewTimerAt returns a timer that fires once, when the clock reads t
	// or later (at once when it already does). The scheduler waits with
	// it: an absolute deadline cannot be missed by a clock that moves
	// between reading Now and arming the timer.
	NewTimerAt(t time.Time) Timer
}

// Timer is a one-shot timer of a [Clock], like [time.Timer].
type Timer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped
	// it (false when it had already fired or been stopped).
	Stop() bool
}

// SystemClock returns the Clock of the time package.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

func (systemClock) NewTimerAt(t time.Time) Timer { return systemTimer{time.NewTimer(time.Until(t))} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }

func (t systemTimer) Stop() bool { return t.t.Stop() }

// FakeClock is a [Clock] that stands still until told to move: [FakeClock.Advance]
// and [FakeClock.Set] move it and fire, in deadline order, the timers
// that have come due. It is safe for concurrent use; a test and the
// code under test may share one.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer  // armed, in no order
	changed chan struct{} // closed (and replaced) when timers is added to
}

// NewFakeClock returns a FakeClock reading start.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, changed: make(chan struct{})}
}

// Now is the clock's current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer firing when the clock has moved d forward.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arm(c.now.Add(d))
}

// NewTimerAt returns a timer firing when the clock reads t or later.
func (c *FakeClock) NewTimerAt(t time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.arm(t)
}

// arm creates a timer for when; c.mu is held.
func (c *FakeClock) arm(when time.Time) *fakeTimer {
	t := &fakeTimer{clock: c, when: when, c: make(chan time.Time, 1)}
	if !when.After(c.now) {
		t.c <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	close(c.changed)
	c.changed = make(chan struct{})
	return t
}

// Advance moves the clock d forward and fires the timers that are due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.moveTo(c.now.Add(d))
}

// Set moves the clock to t (backwards too) and fires the timers that are
// due.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.moveTo(t)
}

// moveTo sets now and fires due timers in deadline order; c.mu is held.
func (c *FakeClock) moveTo(t time.Time) {
	c.now = t
	var due []*fakeTimer
	c.timers = slices.DeleteFunc(c.timers, func(ft *fakeTimer) bool {
		if ft.when.After(t) {
			return false
		}
		due = append(due, ft)
		return true
	})
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.when.Compare(b.when) })
	for _, ft := range due {
		ft.c <- t // never blocks: capacity 1, fired once
	}
}

// Timers is the number of armed timers (not yet fired or stopped).
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntil waits until at least n timers are armed: a test calls it to
// know that the code under test has gone to sleep on the clock before
// moving it. It returns ctx's error, wrapped, if ctx ends first.
func (c *FakeClock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		armed, changed := len(c.timers), c.changed
		c.mu.Unlock()
		if armed >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("sched: fake clock: waiting for %d armed timers (%d armed): %w", n, armed, ctx.Err())
		}
	}
}

type fakeTimer struct {
	clock *FakeClock
	when  time.Time
	c     chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return true
}
