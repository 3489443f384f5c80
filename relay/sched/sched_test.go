package sched

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newSched is a Scheduler on a fake clock at t0 with the given limits.
func newSched(workers, perDest int) (*Scheduler, *FakeClock) {
	clk := NewFakeClock(t0)
	s := New(Options{Workers: workers, DestinationLimit: func(string) int { return perDest }, Clock: clk})
	return s, clk
}

// mustNext is TryNext, which must hand out a dispatch.
func mustNext(t *testing.T, s *Scheduler) Dispatch {
	t.Helper()
	dp, ok := s.TryNext()
	if !ok {
		t.Fatalf("TryNext: nothing dispatched; stats %+v", s.Stats())
	}
	return dp
}

// mustNone is TryNext, which must hand out nothing.
func mustNone(t *testing.T, s *Scheduler) {
	t.Helper()
	if dp, ok := s.TryNext(); ok {
		t.Fatalf("TryNext dispatched %s/%s (due %v, down %v), want nothing", dp.ID, dp.Dest, dp.Due, dp.Down)
	}
}

// testCtx ends with the test, or after a deadline that only a hung test
// reaches.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type result struct {
	dp  Dispatch
	err error
}

// nextAsync runs Next in a goroutine.
func nextAsync(ctx context.Context, s *Scheduler) <-chan result {
	ch := make(chan result, 1)
	go func() {
		dp, err := s.Next(ctx)
		ch <- result{dp, err}
	}()
	return ch
}

func TestNextNothingBeforeDue(t *testing.T) {
	s, clk := newSched(10, 10)
	s.Add("m1", "a.example", t0.Add(10*time.Minute), "payload")
	mustNone(t, s)
	clk.Advance(10*time.Minute - time.Nanosecond)
	mustNone(t, s)
	clk.Advance(time.Nanosecond)
	dp := mustNext(t, s)
	if dp.ID != "m1" || dp.Dest != "a.example" || dp.Payload != "payload" || !dp.Due.Equal(t0.Add(10*time.Minute)) || dp.Down || dp.Probe {
		t.Errorf("dispatch = %+v, want m1/a.example due t0+10m, normal", dp)
	}
	mustNone(t, s)
}

func TestNextBlocksUntilClockReachesDue(t *testing.T) {
	ctx := testCtx(t)
	s, clk := newSched(10, 10)
	due := t0.Add(5 * time.Minute)
	s.Add("m1", "a.example", due, nil)
	got := nextAsync(ctx, s)
	// Next is asleep on the clock once it has armed its timer.
	if err := clk.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5*time.Minute - time.Nanosecond)
	select {
	case r := <-got:
		t.Fatalf("Next returned %+v, %v before the item was due", r.dp, r.err)
	default:
	}
	clk.Advance(time.Nanosecond)
	r := <-got
	if r.err != nil || r.dp.ID != "m1" {
		t.Fatalf("Next = %+v, %v; want m1", r.dp, r.err)
	}
	if !clk.Now().Equal(due) {
		t.Errorf("dispatched at %v, want %v", clk.Now(), due)
	}
}

func TestNextWakesForEarlierItem(t *testing.T) {
	ctx := testCtx(t)
	s, clk := newSched(10, 10)
	s.Add("late", "a.example", t0.Add(time.Hour), nil)
	got := nextAsync(ctx, s)
	if err := clk.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.Add("now", "b.example", t0, nil)
	if r := <-got; r.err != nil || r.dp.ID != "now" {
		t.Fatalf("Next = %+v, %v; want the item added due now", r.dp, r.err)
	}
}

func TestNextWakesWhenSlotFrees(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newSched(1, 10)
	s.Add("m1", "a.example", t0, nil)
	s.Add("m2", "b.example", t0, nil)
	first := mustNext(t, s)
	got := nextAsync(ctx, s)
	select {
	case r := <-got:
		t.Fatalf("Next returned %+v, %v with the only worker busy", r.dp, r.err)
	default:
	}
	s.Done(first)
	if r := <-got; r.err != nil || r.dp.ID != "m2" {
		t.Fatalf("Next = %+v, %v; want m2 once the worker was free", r.dp, r.err)
	}
}

func TestDestinationLimitIsReaskedEachTime(t *testing.T) {
	var limit atomic.Int64
	limit.Store(2)
	clk := NewFakeClock(t0)
	s := New(Options{Workers: 100, Clock: clk, DestinationLimit: func(dest string) int {
		if dest != "a.example" {
			t.Errorf("DestinationLimit(%q), want a.example", dest)
		}
		return int(limit.Load())
	}})
	for i := range 10 {
		s.Add(fmt.Sprint("m", i), "a.example", t0, nil)
	}
	var active []Dispatch
	take := func(n int) {
		t.Helper()
		for range n {
			active = append(active, mustNext(t, s))
		}
		mustNone(t, s)
	}
	done := func() {
		s.Done(active[0])
		active = active[1:]
	}
	take(2) // limit 2
	limit.Store(3)
	done()
	take(2) // 1 active, limit 3 now
	limit.Store(1)
	done()
	mustNone(t, s) // 2 active, limit 1
	done()
	mustNone(t, s) // 1 active
	done()
	take(1)
	limit.Store(0) // <= 0 means 1
	done()
	take(1)
	if got := s.Stats().Active; got != 1 {
		t.Errorf("Stats().Active = %d, want 1", got)
	}
}

func TestNilDestinationLimitMeansOne(t *testing.T) {
	s := New(Options{Workers: 10, Clock: NewFakeClock(t0)})
	s.Add("m1", "a.example", t0, nil)
	s.Add("m2", "a.example", t0, nil)
	mustNext(t, s)
	mustNone(t, s)
}

func TestWorkersCapAllDestinations(t *testing.T) {
	s, _ := newSched(3, 10)
	for i := range 15 {
		s.Add(fmt.Sprint("m", i), fmt.Sprint("d", i%5), t0, nil)
	}
	a, b, c := mustNext(t, s), mustNext(t, s), mustNext(t, s)
	mustNone(t, s)
	s.Done(b)
	mustNext(t, s)
	mustNone(t, s)
	s.Done(a)
	s.Done(c)
	mustNext(t, s)
	mustNext(t, s)
	mustNone(t, s)
}

func TestRoundRobinAlternatesBusyDestinations(t *testing.T) {
	s, _ := newSched(1, 100)
	// All of a's items are added, and due, before any of b's.
	for i := range 100 {
		s.Add(fmt.Sprint("a", i), "a.example", t0.Add(-time.Hour), nil)
	}
	for i := range 100 {
		s.Add(fmt.Sprint("b", i), "b.example", t0, nil)
	}
	var order []string
	for range 200 {
		dp := mustNext(t, s)
		order = append(order, dp.Dest)
		s.Done(dp)
	}
	mustNone(t, s)
	for i := 1; i < len(order); i++ {
		if order[i] == order[i-1] {
			t.Fatalf("dispatch %d and %d both went to %s; want the two destinations to alternate: %v", i-1, i, order[i], order[:i+1])
		}
	}
}

func TestRoundRobinSmallDestinationsNotStarved(t *testing.T) {
	s, _ := newSched(1, 100)
	for i := range 1000 {
		s.Add(fmt.Sprint("big", i), "big.example", t0, nil)
	}
	s.Add("s1", "small1.example", t0, nil)
	s.Add("s2", "small2.example", t0, nil)
	seen := map[string]int{}
	for i := range 3 {
		dp := mustNext(t, s)
		seen[dp.Dest] = i
		s.Done(dp)
	}
	if len(seen) != 3 {
		t.Errorf("first three dispatches went to %v; want one to each of three destinations", seen)
	}
}

func TestEarliestDueFirstWithinDestination(t *testing.T) {
	s, clk := newSched(1, 1)
	offsets := []int{7, 3, 9, 1, 5, 3, 0, 8}
	for i, off := range offsets {
		s.Add(fmt.Sprint("m", i), "a.example", t0.Add(time.Duration(off)*time.Minute), off)
	}
	clk.Advance(10 * time.Minute)
	var got []int
	var ids []string
	for range offsets {
		dp := mustNext(t, s)
		got = append(got, dp.Payload.(int))
		ids = append(ids, dp.ID)
		s.Done(dp)
	}
	want := slices.Sorted(slices.Values(offsets))
	if !slices.Equal(got, want) {
		t.Errorf("dispatched in due order %v, want %v", got, want)
	}
	// Equal due times go in the order they were added: m1 before m5.
	if i, j := slices.Index(ids, "m1"), slices.Index(ids, "m5"); i > j {
		t.Errorf("m5 dispatched before m1 with the same due time: %v", ids)
	}
}

func TestAddReplacesDueTime(t *testing.T) {
	s, _ := newSched(10, 10)
	s.Add("m1", "a.example", t0.Add(time.Hour), "old")
	s.Add("m1", "a.example", t0, "new")
	dp := mustNext(t, s)
	if dp.Payload != "new" || !dp.Due.Equal(t0) {
		t.Errorf("dispatch = %+v, want the re-added due time and payload", dp)
	}
	mustNone(t, s) // one item, not two
	s.Done(dp)

	s.Add("m2", "a.example", t0, nil)
	s.Add("m2", "a.example", t0.Add(time.Hour), nil) // later
	mustNone(t, s)
}

func TestAddDuringDispatchRequeuesAtDone(t *testing.T) {
	s, _ := newSched(10, 10)
	s.Add("m1", "a.example", t0, 1)
	dp := mustNext(t, s)
	s.Add("m1", "a.example", t0, 2) // the daemon schedules the retry before Done
	mustNone(t, s)                  // not handed out twice at once
	s.Done(dp)
	again := mustNext(t, s)
	if again.ID != "m1" || again.Payload != 2 {
		t.Fatalf("after Done: %+v, want m1 with payload 2", again)
	}
	s.Done(again) // not re-added this time: dropped
	mustNone(t, s)
	if st := s.Stats(); st.Scheduled+st.Ready+st.Active != 0 || len(st.Destinations) != 0 {
		t.Errorf("Stats after the last Done = %+v, want empty", st)
	}
}

func TestDoneTwiceIsHarmless(t *testing.T) {
	s, _ := newSched(1, 1)
	s.Add("m1", "a.example", t0, nil)
	s.Add("m2", "a.example", t0, nil)
	dp := mustNext(t, s)
	s.Done(dp)
	second := mustNext(t, s)
	s.Done(dp) // stale: must not free second's slots
	mustNone(t, s)
	if got := s.Stats().Active; got != 1 {
		t.Errorf("Stats().Active = %d, want 1", got)
	}
	s.Done(second)
	s.Done(Dispatch{}) // zero Dispatch: nothing
}

func TestMessageSpansDestinations(t *testing.T) {
	s, _ := newSched(10, 1)
	s.Add("m1", "a.example", t0, nil)
	s.Add("m1", "b.example", t0, nil)
	s.Add("m1", "c.example", t0, nil)
	got := map[string]bool{}
	for range 3 {
		dp := mustNext(t, s)
		if dp.ID != "m1" {
			t.Fatalf("dispatch of %s, want m1", dp.ID)
		}
		got[dp.Dest] = true
	}
	if len(got) != 3 {
		t.Errorf("m1 in flight for %v, want all three destinations at once", got)
	}
}

func TestRemove(t *testing.T) {
	s, _ := newSched(10, 10)
	s.Add("m1", "a.example", t0, nil)
	s.Add("m2", "a.example", t0, nil)
	if !s.Remove("m1", "a.example") {
		t.Error("Remove(m1) = false, want true")
	}
	if s.Remove("m1", "a.example") || s.Remove("m2", "b.example") || s.Remove("nope", "a.example") {
		t.Error("Remove of an item not queued = true")
	}
	dp := mustNext(t, s)
	if dp.ID != "m2" {
		t.Errorf("dispatched %s, want m2 (m1 was removed)", dp.ID)
	}
	mustNone(t, s)
	// Removing an item being dispatched cancels its re-add.
	s.Add("m2", "a.example", t0, nil)
	if !s.Remove("m2", "a.example") {
		t.Error("Remove(m2) re-added during its dispatch = false")
	}
	s.Done(dp)
	mustNone(t, s)
}

func TestRemoveMessage(t *testing.T) {
	s, _ := newSched(10, 10)
	for _, d := range []string{"a.example", "b.example", "c.example"} {
		s.Add("m1", d, t0, nil)
	}
	s.Add("m2", "a.example", t0, nil)
	if n := s.RemoveMessage("m1"); n != 3 {
		t.Errorf("RemoveMessage(m1) = %d, want 3", n)
	}
	dp := mustNext(t, s)
	if dp.ID != "m2" {
		t.Errorf("dispatched %s, want m2", dp.ID)
	}
	mustNone(t, s)
	if n := s.RemoveMessage("m1"); n != 0 {
		t.Errorf("second RemoveMessage(m1) = %d, want 0", n)
	}
}

func TestFlush(t *testing.T) {
	s, _ := newSched(100, 100)
	later := t0.Add(time.Hour)
	s.Add("m1", "a.example", later, nil)
	s.Add("m2", "a.example", later, nil)
	s.Add("m3", "b.example", later, nil)
	s.Add("m4", "c.example", later, nil)
	s.Add("m4", "d.example", later, nil)
	dests := func() []string {
		var got []string
		for dp, ok := s.TryNext(); ok; dp, ok = s.TryNext() {
			got = append(got, dp.ID+"@"+dp.Dest)
			s.Done(dp)
		}
		slices.Sort(got)
		return got
	}
	if n := s.Flush(Filter{Dest: "a.example"}); n != 2 {
		t.Errorf("Flush(a.example) = %d, want 2", n)
	}
	if got, want := dests(), []string{"m1@a.example", "m2@a.example"}; !slices.Equal(got, want) {
		t.Errorf("after Flush(a.example): %v, want %v", got, want)
	}
	if n := s.Flush(Filter{ID: "m4", Dest: "d.example"}); n != 1 {
		t.Errorf("Flush(m4@d.example) = %d, want 1", n)
	}
	if got, want := dests(), []string{"m4@d.example"}; !slices.Equal(got, want) {
		t.Errorf("after Flush(m4@d.example): %v, want %v", got, want)
	}
	s.Add("m4", "d.example", later, nil)
	if n := s.Flush(Filter{ID: "m4"}); n != 2 {
		t.Errorf("Flush(m4) = %d, want 2", n)
	}
	if got, want := dests(), []string{"m4@c.example", "m4@d.example"}; !slices.Equal(got, want) {
		t.Errorf("after Flush(m4): %v, want %v", got, want)
	}
	s.Add("m5", "e.example", later, nil)
	if n := s.Flush(Filter{}); n != 2 {
		t.Errorf("Flush(all) = %d, want 2", n)
	}
	if got, want := dests(), []string{"m3@b.example", "m5@e.example"}; !slices.Equal(got, want) {
		t.Errorf("after Flush(all): %v, want %v", got, want)
	}
}

func TestFlushKeepsOrderOfDueItems(t *testing.T) {
	s, _ := newSched(1, 1)
	s.Add("late", "a.example", t0.Add(time.Hour), nil)
	s.Add("overdue", "a.example", t0.Add(-time.Hour), nil)
	s.Flush(Filter{})
	if dp := mustNext(t, s); dp.ID != "overdue" {
		t.Errorf("first after Flush: %s, want the item that was already due", dp.ID)
	}
}

func TestFlushClearsDown(t *testing.T) {
	s, _ := newSched(10, 10)
	s.Add("m1", "a.example", t0, nil)
	s.MarkDown("a.example", t0.Add(time.Hour), "connect: connection refused")
	dp := mustNext(t, s)
	if !dp.Down {
		t.Fatalf("dispatch to a down destination = %+v, want Down", dp)
	}
	s.Add("m1", "a.example", dp.Until, nil)
	s.Done(dp)
	s.Flush(Filter{Dest: "a.example"})
	dp = mustNext(t, s)
	if dp.Down || dp.Probe {
		t.Errorf("dispatch after Flush = %+v, want a normal one", dp)
	}
	if st := s.Stats(); st.Down != 0 {
		t.Errorf("Stats().Down after Flush = %d, want 0", st.Down)
	}
}

func TestCloseUnblocksNext(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newSched(10, 10)
	got := nextAsync(ctx, s)
	s.Close()
	if r := <-got; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", r.err)
	}
	s.Add("m1", "a.example", t0, nil)
	if _, err := s.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Next on a closed scheduler with a due item: %v, want ErrClosed", err)
	}
	mustNone(t, s)
}

func TestNextReturnsContextError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, _ := newSched(10, 10)
	s.Add("m1", "a.example", t0.Add(time.Hour), nil)
	if _, err := s.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestWaitForActiveDispatches(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newSched(10, 10)
	s.Add("m1", "a.example", t0, nil)
	dp := mustNext(t, s)
	s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Wait(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v with a dispatch active", err)
	default:
	}
	s.Done(dp)
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Wait(cctx); err != nil {
		t.Errorf("Wait with nothing active: %v, want nil", err)
	}
}

func TestSetWorkers(t *testing.T) {
	s, _ := newSched(1, 10)
	for i := range 5 {
		s.Add(fmt.Sprint("m", i), "a.example", t0, nil)
	}
	mustNext(t, s)
	mustNone(t, s)
	s.SetWorkers(3)
	mustNext(t, s)
	mustNext(t, s)
	mustNone(t, s)
}

func TestSetWorkersReasksBlockedDestination(t *testing.T) {
	var limit atomic.Int64
	limit.Store(1)
	s := New(Options{Workers: 10, Clock: NewFakeClock(t0), DestinationLimit: func(string) int { return int(limit.Load()) }})
	for i := range 5 {
		s.Add(fmt.Sprint("m", i), "a.example", t0, nil)
	}
	mustNext(t, s)
	mustNone(t, s) // a.example waits for its one slot
	limit.Store(3)
	s.SetWorkers(10) // what a reload does
	mustNext(t, s)
	mustNext(t, s)
	mustNone(t, s)
}

func TestStats(t *testing.T) {
	s, clk := newSched(10, 1)
	s.Add("m1", "a.example", t0.Add(-2*time.Minute), nil)
	s.Add("m2", "a.example", t0.Add(-time.Minute), nil)
	s.Add("m3", "a.example", t0.Add(time.Hour), nil)
	s.Add("m4", "b.example", t0.Add(2*time.Hour), nil)
	s.MarkDown("c.example", t0.Add(time.Hour), "dns: no answer")
	mustNext(t, s) // m1: active; m2 waits for a.example's one slot
	clk.Advance(time.Second)
	st := s.Stats()
	if st.Scheduled != 2 || st.Ready != 1 || st.Active != 1 || st.Down != 1 {
		t.Errorf("Stats = %+v, want 2 scheduled, 1 ready, 1 active, 1 down", st)
	}
	if !st.OldestDue.Equal(t0.Add(-time.Minute)) {
		t.Errorf("OldestDue = %v, want %v", st.OldestDue, t0.Add(-time.Minute))
	}
	want := []DestinationStats{
		{Dest: "a.example", Scheduled: 1, Ready: 1, Active: 1, OldestDue: t0.Add(-time.Minute)},
		{Dest: "b.example", Scheduled: 1, OldestDue: t0.Add(2 * time.Hour)},
		{Dest: "c.example", Down: true, Until: t0.Add(time.Hour), Reason: "dns: no answer"},
	}
	if !slices.Equal(st.Destinations, want) {
		t.Errorf("Destinations = %+v\nwant %+v", st.Destinations, want)
	}
	// Once its down period is over, an empty destination is forgotten.
	clk.Advance(time.Hour)
	if st := s.Stats(); st.Down != 0 || len(st.Destinations) != 2 {
		t.Errorf("Stats after c.example's down period = %+v, want 2 destinations, none down", st)
	}
}

func TestStatsCountsDueItemsInHeap(t *testing.T) {
	s, _ := newSched(1, 1)
	jitter := seeded(4)
	due := 0
	for i := range 1000 {
		off := time.Duration(jitter()*200-100) * time.Minute
		if off <= 0 {
			due++
		}
		s.Add(fmt.Sprint("m", i), "a.example", t0.Add(off), nil)
	}
	st := s.Stats()
	if st.Ready != due || st.Scheduled != 1000-due {
		t.Errorf("Stats = %d ready, %d scheduled; want %d, %d", st.Ready, st.Scheduled, due, 1000-due)
	}
}

// TestDownDestinationProbesOncePerInterval: a dead destination with
// 10 000 queued items costs one connection per down period over an hour,
// not one per item.
func TestDownDestinationProbesOncePerInterval(t *testing.T) {
	const (
		items    = 10000
		interval = 5 * time.Minute
		dest     = "dead.example"
	)
	s, clk := newSched(100, 20)
	for i := range items {
		s.Add(fmt.Sprint("m", i), dest, t0, nil)
	}
	s.Add("other", "live.example", t0, nil)
	// The first attempt found the destination dead.
	s.MarkDown(dest, t0.Add(interval), "dial tcp: connect: connection refused")
	var probes, deferrals, live int
	end := t0.Add(time.Hour)
	for !clk.Now().After(end) {
		for dp, ok := s.TryNext(); ok; dp, ok = s.TryNext() {
			now := clk.Now()
			switch {
			case dp.Dest == "live.example":
				live++
			case dp.Down:
				deferrals++
				if dp.Reason != "dial tcp: connect: connection refused" || !dp.Until.After(now) {
					t.Fatalf("down dispatch %+v at %v: want the reason and a future Until", dp, now)
				}
				s.Add(dp.ID, dp.Dest, dp.Until, nil)
			default:
				if !dp.Probe {
					t.Fatalf("normal dispatch %+v to a down destination is not marked Probe", dp)
				}
				probes++
				// The probe fails too: down for another interval.
				s.MarkDown(dest, now.Add(interval), "dial tcp: connect: connection refused")
				s.Add(dp.ID, dp.Dest, now.Add(interval), nil)
			}
			s.Done(dp)
		}
		clk.Advance(time.Minute)
	}
	if want := int(time.Hour / interval); probes != want {
		t.Errorf("%d connections (probes) in an hour, want one per %v interval = %d", probes, interval, want)
	}
	// Every item is still accounted for: the first pass defers all of
	// them, each probe's failure all the others.
	if want := items + (items-1)*probes; deferrals != want {
		t.Errorf("%d deferrals, want %d", deferrals, want)
	}
	if live != 1 {
		t.Errorf("live.example got %d dispatches, want 1", live)
	}
	if st := s.Stats(); st.Scheduled+st.Ready != items {
		t.Errorf("items queued at the end = %d, want %d", st.Scheduled+st.Ready, items)
	}
}

func TestDownDestinationProbeSuccessReleasesOthers(t *testing.T) {
	s, clk := newSched(100, 20)
	for i := range 100 {
		s.Add(fmt.Sprint("m", i), "a.example", t0.Add(5*time.Minute), nil)
	}
	s.MarkDown("a.example", t0.Add(5*time.Minute), "connection timed out")
	mustNone(t, s) // nothing due yet
	clk.Advance(5 * time.Minute)
	probe := mustNext(t, s)
	if !probe.Probe || probe.Down {
		t.Fatalf("first dispatch after the down period = %+v, want a Probe", probe)
	}
	mustNone(t, s) // the other 99 wait for the probe, though 19 slots are free
	s.MarkUp("a.example")
	s.Done(probe)
	for i := range 20 {
		dp := mustNext(t, s)
		if dp.Down || dp.Probe {
			t.Fatalf("dispatch %d after MarkUp = %+v, want a normal one", i, dp)
		}
	}
	mustNone(t, s) // back to the destination's limit of 20
}

func TestDownDestinationProbeWithoutOutcomeProbesAgain(t *testing.T) {
	s, clk := newSched(100, 20)
	for i := range 10 {
		s.Add(fmt.Sprint("m", i), "a.example", t0, nil)
	}
	s.MarkDown("a.example", t0.Add(time.Minute), "421 greeting")
	clk.Advance(time.Minute)
	probe := mustNext(t, s)
	s.Done(probe) // neither MarkUp nor MarkDown
	again := mustNext(t, s)
	if !again.Probe {
		t.Errorf("next dispatch = %+v, want another Probe (still down)", again)
	}
	mustNone(t, s)
}

func TestDownDispatchesUseWorkersNotDestinationSlots(t *testing.T) {
	s, _ := newSched(3, 1)
	for i := range 10 {
		s.Add(fmt.Sprint("m", i), "a.example", t0, nil)
	}
	s.MarkDown("a.example", t0.Add(time.Hour), "dns: SERVFAIL")
	for range 3 {
		if dp := mustNext(t, s); !dp.Down {
			t.Fatalf("dispatch = %+v, want Down", dp)
		}
	}
	mustNone(t, s) // three workers busy, though a.example's own limit is 1
}

func TestMarkDownDuringProbeResumesDeferrals(t *testing.T) {
	s, clk := newSched(100, 20)
	for i := range 5 {
		s.Add(fmt.Sprint("m", i), "a.example", t0, nil)
	}
	s.MarkDown("a.example", t0, "connection refused") // already over: probe now
	probe := mustNext(t, s)
	if !probe.Probe {
		t.Fatalf("dispatch = %+v, want Probe", probe)
	}
	mustNone(t, s)
	s.MarkDown("a.example", clk.Now().Add(time.Minute), "connection refused")
	for range 4 {
		if dp := mustNext(t, s); !dp.Down {
			t.Fatalf("dispatch after the probe failed = %+v, want Down", dp)
		}
	}
	s.Done(probe)
	mustNone(t, s)
}

func TestMarkUpOnUnknownOrUpDestination(t *testing.T) {
	s, _ := newSched(10, 10)
	s.MarkUp("nowhere.example") // no panic, nothing created
	s.Add("m1", "a.example", t0, nil)
	s.MarkUp("a.example")
	if dp := mustNext(t, s); dp.Down || dp.Probe {
		t.Errorf("dispatch = %+v, want normal", dp)
	}
	if n := len(s.Stats().Destinations); n != 1 {
		t.Errorf("%d destinations, want 1", n)
	}
}

// TestConcurrentNextDone runs dispatchers, producers, flushes and down
// marks at once under -race, and checks that no destination ever has more
// normal dispatches active than its limit and that no more than Workers
// are active in all.
func TestConcurrentNextDone(t *testing.T) {
	const (
		workers     = 8
		dests       = 20
		perDest     = 50
		dispatchers = 16
		total       = dests * perDest
	)
	limitOf := func(dest string) int {
		var n int
		fmt.Sscanf(dest, "d%d", &n)
		return 1 + n%3
	}
	clk := NewFakeClock(t0)
	s := New(Options{Workers: workers, DestinationLimit: limitOf, Clock: clk})
	ctx := testCtx(t)

	var (
		global    atomic.Int64
		perActive [dests]atomic.Int64
		finished  atomic.Int64
		failures  atomic.Int64
		wg        sync.WaitGroup
		stop      = make(chan struct{})
	)
	check := func(format string, args ...any) {
		if failures.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	for w := range dispatchers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				dp, err := s.Next(ctx)
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						check("Next: %v", err)
					}
					return
				}
				var di int
				fmt.Sscanf(dp.Dest, "d%d", &di)
				if g := global.Add(1); g > workers {
					check("%d dispatches active, Workers is %d", g, workers)
				}
				if !dp.Down {
					if n := perActive[di].Add(1); n > int64(limitOf(dp.Dest)) {
						check("%d dispatches active for %s, its limit is %d", n, dp.Dest, limitOf(dp.Dest))
					}
				}
				switch r := rnd.IntN(10); {
				case r == 0: // temporary failure: retry soon
					s.Add(dp.ID, dp.Dest, clk.Now().Add(time.Duration(rnd.IntN(3))*time.Second), nil)
				case r == 1 && !dp.Down: // no SMTP reply
					s.MarkDown(dp.Dest, clk.Now().Add(2*time.Second), "connection refused")
					s.Add(dp.ID, dp.Dest, clk.Now().Add(2*time.Second), nil)
				case dp.Down:
					s.Add(dp.ID, dp.Dest, dp.Until, nil)
				default:
					s.MarkUp(dp.Dest)
					finished.Add(1)
				}
				if !dp.Down {
					perActive[di].Add(-1)
				}
				global.Add(-1)
				s.Done(dp)
			}
		})
	}
	// Producer: the items arrive while dispatchers run.
	wg.Go(func() {
		for i := range total {
			s.Add(fmt.Sprint("m", i), fmt.Sprint("d", i%dests), clk.Now(), nil)
			if i%97 == 0 {
				s.Flush(Filter{Dest: fmt.Sprint("d", i%dests)})
			}
		}
	})
	// Time passes until every item is delivered.
	go func() {
		defer close(stop)
		for finished.Load() < total && ctx.Err() == nil {
			clk.Advance(100 * time.Millisecond)
			_ = s.Stats()
		}
	}()
	<-stop
	s.Close()
	wg.Wait()
	if got := finished.Load(); got != total {
		t.Fatalf("%d of %d items delivered (context: %v)", got, total, ctx.Err())
	}
	if st := s.Stats(); st.Scheduled+st.Ready+st.Active != 0 {
		t.Errorf("Stats at the end = %+v, want empty", st)
	}
}

// TestMessages: a message counts once whatever its destinations, while it
// waits and while it is dispatched, and not after its last Done.
func TestMessages(t *testing.T) {
	s, _ := newSched(100, 100)
	s.Add("m1", "a.example", t0, nil)
	s.Add("m1", "b.example", t0, nil)
	s.Add("m2", "a.example", t0.Add(time.Hour), nil)
	if n := s.Messages(); n != 2 {
		t.Fatalf("Messages() = %d, want 2", n)
	}
	d1, ok1 := s.TryNext()
	d2, ok2 := s.TryNext()
	if !ok1 || !ok2 || d1.ID != "m1" || d2.ID != "m1" {
		t.Fatalf("dispatched %v %v", d1, d2)
	}
	if n := s.Messages(); n != 2 {
		t.Errorf("while m1 is dispatched: Messages() = %d, want 2", n)
	}
	s.Done(d1)
	s.Done(d2)
	if n := s.Messages(); n != 1 {
		t.Errorf("after m1's last Done: Messages() = %d, want 1", n)
	}
}

func TestItemsReportEntriesAndDownState(t *testing.T) {
	s, _ := newSched(10, 10)
	if got := s.Items("m1"); len(got) != 0 {
		t.Fatalf("Items of an unknown message = %+v, want none", got)
	}
	s.Add("m1", "a.example", t0.Add(time.Minute), "pa")
	s.Add("m1", "b.example", t0, "pb")
	until := t0.Add(5 * time.Minute)
	s.MarkDown("a.example", until, "connection refused")
	dp := mustNext(t, s) // b.example's item, due now
	got := s.Items("m1")
	slices.SortFunc(got, func(x, y Item) int { return strings.Compare(x.Dest, y.Dest) })
	want := []Item{
		{Dest: "a.example", Due: t0.Add(time.Minute), Payload: "pa", Down: true, Until: until, Reason: "connection refused"},
		{Dest: "b.example", Due: t0, Payload: "pb", Active: true},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Items(m1) = %+v, want %+v", got, want)
	}
	s.Done(dp)
	s.MarkUp("a.example")
	if got := s.Items("m1"); len(got) != 1 || got[0].Down || got[0].Reason != "" {
		t.Errorf("Items(m1) after b's dispatch and a's MarkUp = %+v, want a.example only, up", got)
	}
}

func TestEachMessageVisitsEveryMessageOnce(t *testing.T) {
	s, _ := newSched(10, 10)
	s.Add("m1", "a.example", t0, 1)
	s.Add("m1", "b.example", t0.Add(time.Hour), 2)
	s.Add("m2", "a.example", t0, 3)
	dp := mustNext(t, s)
	got := map[string][]Item{}
	s.EachMessage(func(id string, items []Item) { got[id] = slices.Clone(items) })
	if len(got) != 2 || len(got["m1"]) != 2 || len(got["m2"]) != 1 {
		t.Fatalf("EachMessage saw %+v, want m1 with 2 entries and m2 with 1", got)
	}
	active := 0
	for _, items := range got {
		for _, it := range items {
			if it.Active {
				active++
				if it.Dest != dp.Dest {
					t.Errorf("active entry %+v, want the dispatched %s/%s", it, dp.ID, dp.Dest)
				}
			}
		}
	}
	if active != 1 {
		t.Errorf("%d active entries, want 1: %+v", active, got)
	}
	s.Done(dp)
}
