package sched

import (
	"context"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fired reports whether tm has fired, without waiting.
func fired(tm Timer) bool {
	select {
	case <-tm.C():
		return true
	default:
		return false
	}
}

func TestFakeClockFiresDueTimersOnAdvance(t *testing.T) {
	c := NewFakeClock(t0)
	early, late := c.NewTimer(time.Minute), c.NewTimerAt(t0.Add(time.Hour))
	if got := c.Timers(); got != 2 {
		t.Fatalf("Timers() = %d, want 2", got)
	}
	c.Advance(time.Minute - time.Nanosecond)
	if fired(early) || fired(late) {
		t.Fatal("a timer fired before its deadline")
	}
	c.Advance(time.Nanosecond)
	if !fired(early) {
		t.Fatal("the 1m timer did not fire at 1m")
	}
	if fired(late) {
		t.Fatal("the 1h timer fired at 1m")
	}
	c.Set(t0.Add(2 * time.Hour))
	if !fired(late) {
		t.Fatal("the 1h timer did not fire when the clock was set past it")
	}
	if got := c.Now(); !got.Equal(t0.Add(2 * time.Hour)) {
		t.Errorf("Now() = %v, want %v", got, t0.Add(2*time.Hour))
	}
	if got := c.Timers(); got != 0 {
		t.Errorf("Timers() after firing = %d, want 0", got)
	}
}

func TestFakeClockPastDeadlineFiresAtOnce(t *testing.T) {
	c := NewFakeClock(t0)
	if !fired(c.NewTimer(0)) {
		t.Error("NewTimer(0) did not fire at once")
	}
	if !fired(c.NewTimerAt(t0.Add(-time.Second))) {
		t.Error("NewTimerAt(past) did not fire at once")
	}
	if got := c.Timers(); got != 0 {
		t.Errorf("Timers() = %d, want 0", got)
	}
}

func TestFakeClockStop(t *testing.T) {
	c := NewFakeClock(t0)
	tm := c.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of an armed timer = false")
	}
	if tm.Stop() {
		t.Error("second Stop = true")
	}
	c.Advance(time.Hour)
	if fired(tm) {
		t.Error("a stopped timer fired")
	}
}

func TestFakeClockBlockUntil(t *testing.T) {
	c := NewFakeClock(t0)
	done := make(chan error, 1)
	go func() { done <- c.BlockUntil(context.Background(), 2) }()
	c.NewTimer(time.Second)
	c.NewTimer(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("BlockUntil: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.BlockUntil(ctx, 3); err == nil {
		t.Error("BlockUntil(3) with 2 timers and a cancelled context = nil, want an error")
	}
}

func TestSystemClock(t *testing.T) {
	c := SystemClock()
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Errorf("SystemClock().Now() is %v from time.Now()", d)
	}
	<-c.NewTimer(time.Millisecond).C()
	<-c.NewTimerAt(time.Now().Add(-time.Second)).C()
	if !c.NewTimer(time.Hour).Stop() {
		t.Error("Stop of an armed system timer = false")
	}
}
