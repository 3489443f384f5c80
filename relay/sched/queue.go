package sched

import (
	"math"
	"time"
)

// item is one (message, destination) pair. It is in its destination's
// heap while it waits (idx >= 0) and out of it while a dispatch of it is
// active.
type item struct {
	id      string
	dest    *destination
	next    *item // the next item of the same message (Scheduler.byID chain)
	due     time.Time
	payload any
	idx     int    // index in dest.items; -1 while active
	gen     uint64 // dispatches so far; a Dispatch carries the one it is
	active  bool
	readd   bool // re-added while active: back into the heap at Done
}

// entry is an item in a heap, with its sort key inline so that sifting
// does not chase pointers: due (as from [key]), then seq, the order of
// (re)insertion, so that equal due times go first in, first out.
type entry struct {
	due int64
	seq uint64
	it  *item
}

// key is t as a heap key: Unix nanoseconds, clamped to the int64 range
// for times before 1678 or after 2262 (such as the zero Time).
func key(t time.Time) int64 {
	const limit = math.MaxInt64 / int64(time.Second)
	switch sec := t.Unix(); {
	case sec < -limit:
		return math.MinInt64
	case sec >= limit:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// before orders heap entries.
func before(a, b *entry) bool {
	if a.due != b.due {
		return a.due < b.due
	}
	return a.seq < b.seq
}

// itemHeap is a destination's waiting items, a min-heap for
// container/heap.
type itemHeap []entry

func (h itemHeap) Len() int { return len(h) }

func (h itemHeap) Less(i, j int) bool { return before(&h[i], &h[j]) }

func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].it.idx, h[j].it.idx = i, j
}

func (h *itemHeap) Push(x any) {
	e := x.(entry)
	e.it.idx = len(*h)
	*h = append(*h, e)
}

func (h *itemHeap) Pop() any {
	old := *h
	n := len(old) - 1
	e := old[n]
	old[n] = entry{}
	e.it.idx = -1
	*h = old[:n]
	return e
}

// countDue is the number of entries of h due at now (a key), found by
// walking only the part of the heap that is due.
func (h itemHeap) countDue(i int, now int64) int {
	if i >= len(h) || h[i].due > now {
		return 0
	}
	return 1 + h.countDue(2*i+1, now) + h.countDue(2*i+2, now)
}

// destination is the scheduled queue of one destination key and its
// dispatch state. It is in exactly one of: the ring (it had a due item
// when last looked at), the timer heap (it waits for its earliest item),
// blocked (it waits for a Done, a MarkUp/MarkDown or a Flush), or none
// (it has no waiting item).
type destination struct {
	name   string
	items  itemHeap
	tidx   int // index in Scheduler.timers; -1 when not there
	inRing bool
	// blocked: it had a due item but could not send it (its cap is
	// full, or it waits for its probe).
	blocked   bool
	active    int // normal dispatches (the probe included) not yet Done
	deferring int // down dispatches not yet Done
	down      bool
	probing   bool // a probe is active
	until     time.Time
	reason    string
}

// head is d's earliest entry; d has one.
func (d *destination) head() *entry { return &d.items[0] }

// destHeap is the destinations that wait for their earliest item, a
// min-heap by that item's (due, seq) for container/heap.
type destHeap []*destination

func (h destHeap) Len() int { return len(h) }

func (h destHeap) Less(i, j int) bool { return before(h[i].head(), h[j].head()) }

func (h destHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].tidx, h[j].tidx = i, j
}

func (h *destHeap) Push(x any) {
	d := x.(*destination)
	d.tidx = len(*h)
	*h = append(*h, d)
}

func (h *destHeap) Pop() any {
	old := *h
	n := len(old) - 1
	d := old[n]
	old[n] = nil
	d.tidx = -1
	*h = old[:n]
	return d
}

// ring is the round-robin queue of destinations with due items, a FIFO
// over a slice.
type ring struct {
	buf  []*destination
	head int
}

func (r *ring) len() int { return len(r.buf) - r.head }

func (r *ring) push(d *destination) {
	if r.head > 0 && r.head >= len(r.buf)/2 {
		n := copy(r.buf, r.buf[r.head:])
		clear(r.buf[n:])
		r.buf, r.head = r.buf[:n], 0
	}
	r.buf = append(r.buf, d)
}

func (r *ring) pop() *destination {
	d := r.buf[r.head]
	r.buf[r.head] = nil
	r.head++
	if r.head == len(r.buf) {
		r.buf, r.head = r.buf[:0], 0
	}
	return d
}
