package engine

import (
	"math"
	"sync"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
)

// ThrottleStore counts throttles: deliveries in flight (concurrency) and
// deliveries started per period (a token bucket per key). The engine uses
// an in-memory store unless Options.Throttles gives another (a store shared
// by a fleet of MTAs, for instance).
type ThrottleStore interface {
	// Acquire takes one concurrency slot and one rate token for key. When
	// the throttle is full it takes nothing and returns ok=false, the
	// class ("concurrency" or "rate") and how long to wait before trying
	// again. On success, release gives the concurrency slot back when the
	// delivery ends; release(true) also returns the rate token, for a
	// delivery that did not start after all (another throttle was full).
	// release is safe to call more than once; only the first call counts.
	Acquire(key string, concurrency int, rate policies.Rate, now time.Time) (release func(refund bool), ok bool, class transport.Class, wait time.Duration)
	// Peek reports the slots in use and the wait a new delivery would
	// have, without taking anything (for dry-runs).
	Peek(key string, concurrency int, rate policies.Rate, now time.Time) (inUse int, wait time.Duration)
}

// MemoryThrottles is a [ThrottleStore] for one process. The zero value is
// ready to use; it is safe for concurrent use.
type MemoryThrottles struct {
	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	inFlight int
	tokens   float64
	last     time.Time
}

// refill brings the bucket up to now.
func (t *throttleEntry) refill(rate policies.Rate, now time.Time) {
	if rate.Count <= 0 {
		return
	}
	if t.last.IsZero() {
		t.tokens, t.last = float64(rate.Count), now
		return
	}
	if el := now.Sub(t.last); el > 0 {
		t.tokens = math.Min(float64(rate.Count), t.tokens+el.Seconds()*float64(rate.Count)/rate.Period.Seconds())
		t.last = now
	}
}

// wait is how long until one token is available.
func (t *throttleEntry) wait(rate policies.Rate) time.Duration {
	if rate.Count <= 0 || t.tokens >= 1 {
		return 0
	}
	missing := 1 - t.tokens
	return time.Duration(math.Ceil(missing * float64(rate.Period) / float64(rate.Count)))
}

func (m *MemoryThrottles) entry(key string) *throttleEntry {
	if m.entries == nil {
		m.entries = map[string]*throttleEntry{}
	}
	e := m.entries[key]
	if e == nil {
		e = &throttleEntry{}
		m.entries[key] = e
	}
	return e
}

// Acquire implements [ThrottleStore].
func (m *MemoryThrottles) Acquire(key string, concurrency int, rate policies.Rate, now time.Time) (func(bool), bool, transport.Class, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entry(key)
	e.refill(rate, now)
	if concurrency > 0 && e.inFlight >= concurrency {
		// A slot frees when a delivery ends; a short wait is a fair guess.
		return nil, false, transport.ClassConcurrency, time.Second
	}
	if w := e.wait(rate); w > 0 {
		return nil, false, transport.ClassRate, w
	}
	if rate.Count > 0 {
		e.tokens--
	}
	if concurrency > 0 {
		e.inFlight++
	}
	var once sync.Once
	return func(refund bool) {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if concurrency > 0 {
				e.inFlight--
			}
			if refund && rate.Count > 0 {
				e.tokens = math.Min(float64(rate.Count), e.tokens+1)
			}
		})
	}, true, "", 0
}

// Peek implements [ThrottleStore].
func (m *MemoryThrottles) Peek(key string, concurrency int, rate policies.Rate, now time.Time) (int, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok {
		return 0, 0
	}
	c := *e
	c.refill(rate, now)
	w := c.wait(rate)
	if concurrency > 0 && c.inFlight >= concurrency && w < time.Second {
		w = time.Second
	}
	return c.inFlight, w
}
