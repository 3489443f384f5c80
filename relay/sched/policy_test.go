package sched

import (
	"math/rand/v2"
	"testing"
	"time"
)

var relaySchedule = []time.Duration{
	time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour,
}

func constant(v float64) func() float64 { return func() float64 { return v } }

// seeded is a reproducible jitter source.
func seeded(seed uint64) func() float64 {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Float64
}

func TestBackoffFollowsScheduleAndRepeatsLast(t *testing.T) {
	want := []time.Duration{
		time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour, 4 * time.Hour, 4 * time.Hour, 4 * time.Hour, 4 * time.Hour,
	}
	for n := 0; n <= 10; n++ {
		base := want[n]
		if got := Backoff(relaySchedule, n, constant(0.5)); got != base {
			t.Errorf("Backoff(retry %d, jitter 0.5) = %v, want %v", n, got, base)
		}
		if got := Backoff(relaySchedule, n, constant(0)); got != base*9/10 {
			t.Errorf("Backoff(retry %d, jitter 0) = %v, want exactly 0.9×%v = %v", n, got, base, base*9/10)
		}
		if got := Backoff(relaySchedule, n, constant(1)); got != base*11/10 {
			t.Errorf("Backoff(retry %d, jitter 1) = %v, want exactly 1.1×%v = %v", n, got, base, base*11/10)
		}
	}
}

func TestBackoffJitterStaysWithinTenPercent(t *testing.T) {
	jitter := seeded(1)
	for n := range len(relaySchedule) {
		base := relaySchedule[n]
		lo, hi := base*9/10, base*11/10
		gotLo, gotHi := hi, lo
		for range 10000 {
			d := Backoff(relaySchedule, n, jitter)
			if d < lo || d > hi {
				t.Fatalf("Backoff(retry %d) = %v, outside [%v, %v]", n, d, lo, hi)
			}
			gotLo, gotHi = min(gotLo, d), max(gotHi, d)
		}
		// The jitter is applied, over the whole range.
		if gotLo > base*91/100 || gotHi < base*109/100 {
			t.Errorf("retry %d: 10000 draws spanned only [%v, %v] of [%v, %v]", n, gotLo, gotHi, lo, hi)
		}
	}
}

func TestBackoffEdges(t *testing.T) {
	if got, want := Backoff(nil, 2, constant(0.5)), 15*time.Minute; got != want {
		t.Errorf("Backoff(empty schedule, retry 2) = %v, want DefaultRetry's %v", got, want)
	}
	if got, want := Backoff(relaySchedule, -3, constant(0.5)), time.Minute; got != want {
		t.Errorf("Backoff(retry -3) = %v, want the first entry %v", got, want)
	}
	if got := Backoff([]time.Duration{0}, 0, constant(1)); got != 0 {
		t.Errorf("Backoff([0]) = %v, want 0", got)
	}
	// Out-of-range jitter is clamped to the range's ends.
	if got, want := Backoff(relaySchedule, 0, constant(7)), 66*time.Second; got != want {
		t.Errorf("Backoff(jitter 7) = %v, want %v", got, want)
	}
	if got, want := Backoff(relaySchedule, 0, constant(-1)), 54*time.Second; got != want {
		t.Errorf("Backoff(jitter -1) = %v, want %v", got, want)
	}
	// nil jitter uses the package's random source, within the range.
	if got := Backoff(relaySchedule, 0, nil); got < 54*time.Second || got > 66*time.Second {
		t.Errorf("Backoff(nil jitter) = %v, outside [54s, 66s]", got)
	}
}

func TestThrottleDelayAddsUnderOneSecond(t *testing.T) {
	const d = 30 * time.Second
	if got := ThrottleDelay(d, constant(0)); got != d {
		t.Errorf("ThrottleDelay(jitter 0) = %v, want %v", got, d)
	}
	if got := ThrottleDelay(d, constant(1)); got < d || got >= d+time.Second {
		t.Errorf("ThrottleDelay(jitter 1) = %v, want in [%v, %v)", got, d, d+time.Second)
	}
	if got := ThrottleDelay(-time.Second, constant(0)); got != 0 {
		t.Errorf("ThrottleDelay(-1s) = %v, want 0", got)
	}
	jitter := seeded(2)
	var gotLo, gotHi time.Duration = time.Hour, 0
	for range 10000 {
		got := ThrottleDelay(d, jitter)
		if got < d || got >= d+time.Second {
			t.Fatalf("ThrottleDelay = %v, want in [%v, %v)", got, d, d+time.Second)
		}
		gotLo, gotHi = min(gotLo, got), max(gotHi, got)
	}
	if gotLo > d+10*time.Millisecond || gotHi < d+990*time.Millisecond {
		t.Errorf("10000 draws spanned only [%v, %v]", gotLo, gotHi)
	}
}

func TestStartupDueLeavesFutureItems(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	future := now.Add(time.Nanosecond)
	if got := StartupDue(future, now, time.Minute, constant(0.5)); !got.Equal(future) {
		t.Errorf("StartupDue(future) = %v, want it unchanged %v", got, future)
	}
	if got := StartupDue(now.Add(-time.Hour), now, 0, constant(0.5)); !got.Equal(now) {
		t.Errorf("StartupDue(spread 0) = %v, want now %v", got, now)
	}
	if got := StartupDue(now, now, time.Minute, constant(1)); !got.Before(now.Add(time.Minute)) {
		t.Errorf("StartupDue(jitter 1) = %v, want before now+spread", got)
	}
}

func TestStartupDueSpreadsUniformly(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const (
		spread  = time.Minute
		n       = 100000
		buckets = 10
	)
	jitter := seeded(3)
	var count [buckets]int
	for i := range n {
		due := now.Add(-time.Duration(i) * time.Second) // all overdue, by various amounts
		got := StartupDue(due, now, spread, jitter)
		off := got.Sub(now)
		if off < 0 || off >= spread {
			t.Fatalf("StartupDue = now%+v, outside [now, now+%v)", off, spread)
		}
		count[off*buckets/spread]++
	}
	// Pearson's chi-square against the uniform distribution, 9 degrees of
	// freedom: 27.88 is the 0.1 % critical value. The source is seeded, so
	// the result is the same on every run; a spread that is not uniform
	// (e.g. all in the first half) gives a statistic in the thousands.
	expected := float64(n) / buckets
	var chi2 float64
	for _, c := range count {
		chi2 += (float64(c) - expected) * (float64(c) - expected) / expected
	}
	if chi2 > 27.88 {
		t.Errorf("bucket counts %v: chi-square %.1f > 27.88, not uniform", count, chi2)
	}
}

func TestExpiredBoundary(t *testing.T) {
	arrival := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const expire = 5 * 24 * time.Hour
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{expire - time.Nanosecond, false},
		{expire, true},
		{expire + time.Nanosecond, true},
	} {
		if got := Expired(arrival, expire, arrival.Add(c.at)); got != c.want {
			t.Errorf("Expired at age %v (expire %v) = %v, want %v", c.at, expire, got, c.want)
		}
	}
}

func TestNotifyDueBoundary(t *testing.T) {
	arrival := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	notify := []time.Duration{day, 3 * day}
	for _, c := range []struct {
		num  int
		at   time.Duration
		want bool
	}{
		{0, day - time.Nanosecond, false},
		{0, day, true},
		{0, 3 * day, true}, // a missed crossing is still due
		{1, day, false},
		{1, 3*day - time.Nanosecond, false},
		{1, 3 * day, true},
		{2, 10 * day, false}, // every entry used
		{-1, day, true},      // negative counts as 0
	} {
		if got := NotifyDue(arrival, notify, c.num, arrival.Add(c.at)); got != c.want {
			t.Errorf("NotifyDue(notify_num %d, age %v) = %v, want %v", c.num, c.at, got, c.want)
		}
	}
	if NotifyDue(arrival, nil, 0, arrival.Add(100*day)) {
		t.Error("NotifyDue with no notify entries = true, want false")
	}
}
