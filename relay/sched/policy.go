package sched

import (
	"math"
	"math/rand/v2"
	"time"
)

// The policy helpers below hold no state: the daemon calls them to turn a
// delivery result into the next due time it passes to [Scheduler.Add].
// Each takes jitter, a source of uniform numbers in [0, 1) such as
// (*rand.Rand).Float64; nil means math/rand/v2's Float64. A value out of
// range is clamped, so a jitter returning exactly 1 gives the top of the
// range.

// DefaultRetry is the retry schedule used by [Backoff] when it is given
// an empty one: the relay's default schedule.retry.
func DefaultRetry() []time.Duration {
	return []time.Duration{
		time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 4 * time.Hour,
	}
}

// Backoff is the wait before the next attempt after a temporary failure:
// schedule's entry for retryNum (0 is the first retry; the last entry
// repeats; a negative retryNum counts as 0), multiplied by a uniform
// factor in [0.9, 1.1] so that messages that failed together do not
// retry together. An empty schedule means [DefaultRetry]; an entry <= 0
// gives 0.
func Backoff(schedule []time.Duration, retryNum int, jitter func() float64) time.Duration {
	if len(schedule) == 0 {
		schedule = DefaultRetry()
	}
	base := schedule[min(max(retryNum, 0), len(schedule)-1)]
	if base <= 0 {
		return 0
	}
	// 0.9·base + j·0.2·base in integer steps, so that the extremes are
	// exact for whole-second schedules.
	return base - base/10 + time.Duration(float64(base/5)*draw(jitter, 1))
}

// ThrottleDelay is the wait after a throttle (a full rate or concurrency
// limit) that asked for retryAfter: retryAfter plus a uniform [0, 1 s),
// which spreads the messages a throttle held back. A negative retryAfter
// counts as 0. The caller does not count the attempt.
func ThrottleDelay(retryAfter time.Duration, jitter func() float64) time.Duration {
	return max(retryAfter, 0) + time.Duration(draw(jitter, belowOne)*float64(time.Second))
}

// StartupDue is when an item found in the spool at start-up is due: due
// itself when it is still ahead of now, else a uniform time in
// [now, now+spread), so that a restart after an outage does not open every
// connection at once. A spread <= 0 gives now.
func StartupDue(due, now time.Time, spread time.Duration, jitter func() float64) time.Time {
	if due.After(now) {
		return due
	}
	if spread <= 0 {
		return now
	}
	off := time.Duration(draw(jitter, belowOne) * float64(spread))
	return now.Add(min(off, spread-1))
}

// Expired reports whether a message that arrived at arrival has been
// queued for expire or longer at now (the boundary itself is expired).
func Expired(arrival time.Time, expire time.Duration, now time.Time) bool {
	return now.Sub(arrival) >= expire
}

// NotifyDue reports whether a delay notification is due at now for a
// message that arrived at arrival and has had notifyNum of them: its queue
// age has reached notify[notifyNum] (the boundary itself is due). It is
// false once every entry of notify has been used (and for an empty
// notify); a negative notifyNum counts as 0.
func NotifyDue(arrival time.Time, notify []time.Duration, notifyNum int, now time.Time) bool {
	n := max(notifyNum, 0)
	return n < len(notify) && now.Sub(arrival) >= notify[n]
}

// belowOne is the largest float64 below 1.
var belowOne = math.Nextafter(1, 0)

// draw is one value of jitter (rand.Float64 when nil) clamped to
// [0, top]; NaN gives 0.
func draw(jitter func() float64, top float64) float64 {
	if jitter == nil {
		jitter = rand.Float64
	}
	j := jitter()
	switch {
	case j > top:
		return top
	case j >= 0:
		return j
	default: // negative or NaN
		return 0
	}
}
