package throttle

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// The defaults of MemoryOptions, and the constants of the estimates.
const (
	defaultShards    = 64
	defaultIdleAfter = 10 * time.Minute
	defaultMaxKeys   = 1_000_000
	maxShards        = 1 << 16

	// defaultHold is how long a lease is assumed to be held under a key
	// that has no finished lease yet to learn from.
	defaultHold = time.Second
	// waitFloor is the least concurrency Wait: a lease held longer than
	// the average is due any moment, but "retry now" would spin.
	waitFloor = 10 * time.Millisecond
	// holdWeight is 1/α of the moving average of hold times: each finished
	// lease moves the average a quarter of the way to its own hold time,
	// so the estimate follows a change within a handful of deliveries.
	holdWeight = 4
	// sweepBatch is how many idle keys an acquire looks at for eviction:
	// more than one, so that eviction outpaces a stream of new keys.
	sweepBatch = 2
	// maxSpare bounds the released lease records a shard keeps for reuse.
	maxSpare = 128
	// tokenSlack absorbs float rounding of the refill, so that a bucket
	// refilled in many small steps is not refused for 1e-15 of a token.
	tokenSlack = 1e-9
)

// MemoryOptions configure NewMemory; the zero value gives the defaults.
type MemoryOptions struct {
	// Now is the clock; nil means the system's monotonic clock. Tests
	// pass a fake clock.
	Now func() time.Time
	// Shards is how many independently locked parts the keys are spread
	// over, by a hash of the key; 0 means 64, other values are rounded up
	// to a power of two (at most 65,536, and at most MaxKeys).
	Shards int
	// IdleAfter is how long a key must have had nothing in flight and a
	// full bucket before it is forgotten; 0 means 10 minutes. Eviction is
	// lazy: each acquire looks at a few idle keys of its shard, so a key
	// may outlive IdleAfter, never the other way round.
	IdleAfter time.Duration
	// MaxKeys bounds the keys held, 0 meaning 1,000,000; each shard holds
	// at most MaxKeys/Shards. A new key in a full shard evicts the least
	// recently used key of that shard that has nothing in flight, even if
	// its bucket is not full yet: that key then starts over with a full
	// bucket, which under a flood of new keys is better than refusing
	// the keys of real traffic. A key with a lease in flight is never
	// evicted (its slots would be lost); when every key of the shard has
	// one, the acquire fails with an error wrapping ErrStore.
	MaxKeys int
}

// Memory is a Store for one process: keys are spread over shards by a
// hash of the key, each with its own mutex, and are forgotten once idle.
// Acquire and Release of an existing key allocate only the Lease itself
// (16 bytes); see Acquire. Use NewMemory; the zero value does not work.
type Memory struct {
	now       func() time.Time // nil: the monotonic clock
	base      time.Time        // the clock is read as nanoseconds since base
	seed      maphash.Seed
	mask      uint64
	shards    []shard
	idleAfter int64
	closed    atomic.Bool
}

// shard is one part of the keys, under one mutex.
type shard struct {
	mu      sync.Mutex
	m       *Memory
	keys    map[string]*entry
	maxKeys int       // keys this shard may hold
	idle    entryList // keys with nothing in flight, most recently released first
	spare   *slot     // released lease records, for reuse
	nspare  int
	_       [64]byte // keeps neighbouring shards' mutexes off one cache line
}

// entry is the state of one key. Times are nanoseconds since Memory.base.
type entry struct {
	key string
	// The token bucket as of last, under the last rate acquired with.
	rate   Rate
	tokens float64
	last   int64
	// The leases in flight, oldest first, and the moving average of how
	// long finished leases were held (valid when held is set).
	inFlight       int
	oldest, newest *slot
	hold           int64
	held           bool
	// With nothing in flight the entry is on its shard's idle list,
	// released at releasedAt; the bucket does not change while it is.
	releasedAt int64
	prev, next *entry
	listed     bool
}

// slot is the store's record of one lease in flight. Records are reused
// once released; the Lease handed out is not (see Acquire), and release is
// bound to the record once, when the record is made.
type slot struct {
	sh         *shard
	e          *entry
	start      int64
	prev, next *slot
	// gen is the id of the lease the record stands for; it changes when
	// the record is released, so that a late second Release of the old
	// lease (a stale id) does nothing.
	gen uint64
}

var _ Store = (*Memory)(nil)

// NewMemory makes a Memory store with the options o.
func NewMemory(o MemoryOptions) *Memory {
	m := &Memory{now: o.Now, seed: maphash.MakeSeed(), idleAfter: int64(o.IdleAfter)}
	if m.now != nil {
		m.base = m.now()
	} else {
		m.base = time.Now()
	}
	if m.idleAfter <= 0 {
		m.idleAfter = int64(defaultIdleAfter)
	}
	maxKeys := o.MaxKeys
	if maxKeys <= 0 {
		maxKeys = defaultMaxKeys
	}
	n := o.Shards
	if n <= 0 {
		n = defaultShards
	}
	n = 1 << bits.Len(uint(min(n, maxShards)-1)) // round up to a power of two
	for n > maxKeys {                            // every shard must hold a key
		n /= 2
	}
	m.mask = uint64(n - 1)
	m.shards = make([]shard, n)
	for i := range m.shards {
		m.shards[i] = shard{m: m, keys: map[string]*entry{}, maxKeys: maxKeys / n}
	}
	return m
}

// Acquire takes a concurrency slot and a rate token for key, both or
// neither (see Store). A limit of zero takes nothing and keeps no state.
//
// When both limits refuse, the grant names the one with the longer wait,
// since retrying sooner cannot succeed. The concurrency wait is when the
// oldest lease in flight is expected to end: its start plus the moving
// average of how long this key's leases were held (one second while no
// lease of the key has ended yet), at least 10ms.
//
// The returned Lease is a value naming the lease record and its
// generation: records are reused, and a late second Release of a lease
// whose record now stands for another lease does nothing. An acquire and
// release of an existing key allocate nothing.
func (m *Memory) Acquire(ctx context.Context, key string, lim Limit) (Grant, error) {
	if err := check(ctx, "acquire", key, lim); err != nil {
		return Grant{}, err
	}
	if lim.Concurrency == 0 && lim.Rate.Count == 0 {
		return Grant{Lease: MakeLease(noLease{}, 0)}, nil
	}
	sh := m.shard(key)
	now := m.clock()
	sh.mu.Lock()
	s, g, err := sh.acquire(key, lim, now)
	sh.mu.Unlock()
	if s == nil {
		return g, err
	}
	return Grant{Lease: MakeLease(s, s.gen)}, nil
}

// noLease is the holder of a lease that holds nothing (a limit of zero).
type noLease struct{}

// ReleaseLease does nothing.
func (noLease) ReleaseLease(uint64, bool) {}

// Peek reports key's usage under lim without changing anything: it
// neither creates the key nor refills its bucket nor evicts.
func (m *Memory) Peek(ctx context.Context, key string, lim Limit) (Usage, error) {
	if err := check(ctx, "peek", key, lim); err != nil {
		return Usage{}, err
	}
	sh := m.shard(key)
	now := m.clock()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if m.closed.Load() {
		return Usage{}, errClosed("peek", key)
	}
	e := sh.keys[key]
	if e == nil {
		return Usage{Tokens: float64(lim.Rate.Count)}, nil
	}
	tokens := e.tokensAt(lim.Rate, now)
	u := Usage{InUse: e.inFlight, Tokens: tokens}
	u.Class, u.Wait = e.refusal(lim, tokens, now)
	return u, nil
}

// Close forgets every key; acquires and peeks then fail with an error
// wrapping ErrStore. Leases still held count for nothing any more, and
// releasing them later does nothing. Close always returns nil.
func (m *Memory) Close() error {
	m.closed.Store(true)
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		clear(sh.keys)
		sh.idle = entryList{}
		sh.spare, sh.nspare = nil, 0
		sh.mu.Unlock()
	}
	return nil
}

// Len returns how many keys the store holds, for tests and metrics.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}

// check refuses a cancelled context and a limit no store could count.
func check(ctx context.Context, op, key string, lim Limit) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("throttle: memory: %s %q: %w", op, key, err)
	}
	if lim.Concurrency < 0 || lim.Rate.Count < 0 || (lim.Rate.Count > 0 && lim.Rate.Period <= 0) {
		return fmt.Errorf("throttle: memory: %s %q: invalid limit (concurrency %d, rate %d per %s)",
			op, key, lim.Concurrency, lim.Rate.Count, lim.Rate.Period)
	}
	return nil
}

func errClosed(op, key string) error {
	return fmt.Errorf("%w: memory: %s %q: store closed", ErrStore, op, key)
}

// shard returns the shard that holds key.
func (m *Memory) shard(key string) *shard {
	return &m.shards[maphash.String(m.seed, key)&m.mask]
}

// clock reads the clock as nanoseconds since base. Without
// MemoryOptions.Now this is the monotonic clock alone (time.Since does not
// read the wall clock, which costs as much again), so a step of the wall
// clock changes nothing.
func (m *Memory) clock() int64 {
	if m.now == nil {
		return int64(time.Since(m.base))
	}
	return int64(m.now().Sub(m.base))
}

// acquire is Acquire under the shard's lock: a lease record when granted,
// else the refusal or an error.
func (sh *shard) acquire(key string, lim Limit, now int64) (*slot, Grant, error) {
	if sh.m.closed.Load() {
		return nil, Grant{}, errClosed("acquire", key)
	}
	sh.sweep(now)
	e := sh.keys[key]
	if e == nil {
		if len(sh.keys) >= sh.maxKeys && !sh.evictOldest() {
			return nil, Grant{}, fmt.Errorf("%w: memory: acquire %q: no room for a new key: all %d keys of its shard have leases in flight",
				ErrStore, key, len(sh.keys))
		}
		e = &entry{key: key, rate: lim.Rate, tokens: float64(lim.Rate.Count), last: now}
		sh.keys[key] = e
	}
	tokens := e.tokensAt(lim.Rate, now)
	if class, wait := e.refusal(lim, tokens, now); class != "" {
		return nil, Grant{Class: class, Wait: wait}, nil
	}
	if lim.Rate.Count > 0 {
		tokens = max(tokens-1, 0)
	}
	e.rate, e.tokens, e.last = lim.Rate, tokens, max(e.last, now)
	if e.listed {
		sh.idle.remove(e)
	}
	s := sh.newSlot()
	s.e, s.start = e, now
	e.push(s)
	return s, Grant{}, nil
}

// ReleaseLease implements LeaseHolder: it ends the lease id of the record
// s, and does nothing when s stands for another lease by now (id is
// stale: the lease was released already).
func (s *slot) ReleaseLease(id uint64, refund bool) {
	sh := s.sh
	now := sh.m.clock()
	sh.mu.Lock()
	if s.gen == id && s.e != nil && !sh.m.closed.Load() {
		sh.release(s, refund, now)
		sh.recycle(s)
	}
	sh.mu.Unlock()
}

// release ends the lease s at now: the slot is freed, the hold time
// learnt (a refunded lease delivered nothing, so its time says nothing)
// or the token given back, and a key left with nothing in flight goes on
// the idle list.
func (sh *shard) release(s *slot, refund bool, now int64) {
	e := s.e
	e.unlink(s)
	if refund {
		if e.rate.Count > 0 {
			e.tokens = min(e.tokensAt(e.rate, now)+1, float64(e.rate.Count))
			e.last = max(e.last, now)
		}
	} else {
		hold := max(now-s.start, 0)
		if e.held {
			e.hold += (hold - e.hold) / holdWeight
		} else {
			e.hold, e.held = hold, true
		}
	}
	if e.inFlight == 0 {
		e.releasedAt = now
		sh.idle.pushFront(e)
	}
}

// sweep evicts the keys at the old end of the idle list that have been
// idle for IdleAfter, looking at a few at most. A key released long ago
// whose bucket is still refilling goes back to the front, to be looked at
// again later.
func (sh *shard) sweep(now int64) {
	for range sweepBatch {
		e := sh.idle.back()
		if e == nil || now < e.releasedAt+sh.m.idleAfter {
			return // the rest were released later still
		}
		if now >= e.fullAt(e.releasedAt)+sh.m.idleAfter {
			sh.evict(e)
		} else {
			sh.idle.remove(e)
			sh.idle.pushFront(e)
		}
	}
}

// evictOldest makes room for a new key by evicting the key released
// longest ago; false when every key has a lease in flight.
func (sh *shard) evictOldest() bool {
	e := sh.idle.back()
	if e == nil {
		return false
	}
	sh.evict(e)
	return true
}

func (sh *shard) evict(e *entry) {
	sh.idle.remove(e)
	delete(sh.keys, e.key)
}

// newSlot returns a lease record, reused when one is spare.
func (sh *shard) newSlot() *slot {
	if s := sh.spare; s != nil {
		sh.spare, s.next = s.next, nil
		sh.nspare--
		return s
	}
	return &slot{sh: sh}
}

// recycle keeps a released record for reuse, up to maxSpare of them.
func (sh *shard) recycle(s *slot) {
	s.e, s.prev = nil, nil
	s.gen++
	if sh.nspare >= maxSpare {
		s.next = nil
		return
	}
	s.next, sh.spare = sh.spare, s
	sh.nspare++
}

// tokensAt is the bucket's content at now under rate, without changing
// it. A key first counted without a rate has a full bucket.
func (e *entry) tokensAt(rate Rate, now int64) float64 {
	if rate.Count <= 0 {
		return 0
	}
	if e.rate.Count <= 0 {
		return float64(rate.Count)
	}
	t := e.tokens
	if d := now - e.last; d > 0 {
		t += float64(d) * float64(rate.Count) / float64(rate.Period)
	}
	return min(t, float64(rate.Count))
}

// fullAt is when the bucket, refilling under its last rate, is full.
func (e *entry) fullAt(now int64) int64 {
	r := e.rate
	if r.Count <= 0 {
		return now
	}
	missing := float64(r.Count) - e.tokensAt(r, now)
	if missing <= 0 {
		return now
	}
	return now + int64(math.Ceil(missing*float64(r.Period)/float64(r.Count)))
}

// refusal says which limit, if any, refuses an acquire at now with tokens
// in the bucket, and how long to wait; the longer wait when both do.
func (e *entry) refusal(lim Limit, tokens float64, now int64) (Class, time.Duration) {
	var class Class
	var wait time.Duration
	if lim.Concurrency > 0 && e.inFlight >= lim.Concurrency {
		class, wait = ClassConcurrency, e.concurrencyWait(now)
	}
	if r := lim.Rate; r.Count > 0 && tokens < 1-tokenSlack {
		if w := time.Duration(math.Ceil((1 - tokens) * float64(r.Period) / float64(r.Count))); w > wait {
			class, wait = ClassRate, w
		}
	}
	return class, wait
}

// concurrencyWait estimates when the oldest lease in flight ends.
func (e *entry) concurrencyWait(now int64) time.Duration {
	hold := int64(defaultHold)
	if e.held {
		hold = e.hold
	}
	return max(time.Duration(e.oldest.start+hold-now), waitFloor)
}

// push adds s as the newest lease in flight. Start times are read before
// the lock is taken, so the order can be off by a lock wait, no more.
func (e *entry) push(s *slot) {
	s.prev, s.next = e.newest, nil
	if e.newest != nil {
		e.newest.next = s
	} else {
		e.oldest = s
	}
	e.newest = s
	e.inFlight++
}

// unlink removes s from the leases in flight.
func (e *entry) unlink(s *slot) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		e.oldest = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		e.newest = s.prev
	}
	s.prev, s.next = nil, nil
	e.inFlight--
}

// entryList is a shard's keys with nothing in flight, most recently
// released at the front.
type entryList struct{ front, rear *entry }

func (l *entryList) back() *entry { return l.rear }

func (l *entryList) pushFront(e *entry) {
	e.prev, e.next, e.listed = nil, l.front, true
	if l.front != nil {
		l.front.prev = e
	} else {
		l.rear = e
	}
	l.front = e
}

func (l *entryList) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.front = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.rear = e.prev
	}
	e.prev, e.next, e.listed = nil, nil, false
}
