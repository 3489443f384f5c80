// Package throttle counts the throttles of a policy (limits.throttles):
// deliveries in flight per key (concurrency slots, held as leases) and
// deliveries started per key and period (a token bucket). It has two
// stores: [Memory], for one process, and [Redis], shared by a fleet of
// MTAs through a single Redis server or a Redis Cluster.
//
// A concurrency slot counts one delivery in flight — a group being
// delivered, or one connection attempt for a connection-level throttle —
// from Acquire to Release; a rate token counts one delivery started.
//
// The Redis store uses github.com/redis/go-redis/v9 (see [Redis] for why
// that client): each acquire is one atomic Lua script, on Redis's own
// clock, touching the keys of one hash slot, so it is one round trip on a
// single server and on a Cluster alike.
package throttle

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Rate is a number of deliveries started per period; the zero Rate is no
// limit. The bucket holds at most Count tokens and refills continuously,
// Count per Period.
type Rate struct {
	Count  int
	Period time.Duration
}

// Limit is what one throttle allows per key value: at most Concurrency
// deliveries in flight (0: no limit) and at most Rate.Count started per
// Rate.Period (zero Rate: no limit).
type Limit struct {
	Concurrency int
	Rate        Rate
}

// Class says which limit refused an acquire.
type Class string

// The classes of a refusal; they are last_error words.
const (
	ClassConcurrency Class = "concurrency"
	ClassRate        Class = "rate"
)

// Grant is the answer to an acquire: a Lease, or a refusal with the
// class and how long to wait before trying again.
type Grant struct {
	// Lease is held (Lease.Held) when the acquire succeeded.
	Lease Lease
	// Class and Wait are set when refused. Wait is an estimate: for a
	// rate, when the next token is due; for concurrency, when the
	// oldest delivery in flight is expected to end, from how long
	// deliveries under this key have lasted (never a flat guess).
	Class Class
	Wait  time.Duration
}

// Usage is a key's state, for dry-runs: slots in use, tokens left, and how
// long a delivery would wait now (0 when it could start).
type Usage struct {
	InUse  int
	Tokens float64
	Wait   time.Duration
	Class  Class // the limit that makes Wait, "" when Wait is 0
}

// Store counts throttles. Implementations are safe for concurrent use.
// Keys are opaque strings chosen by the caller (the engine uses the
// throttle's name and its key value); a store may add its own prefix.
type Store interface {
	// Acquire takes a concurrency slot (when lim.Concurrency > 0) and a
	// rate token (when lim.Rate.Count > 0) for key, atomically: both or
	// neither. The lease must be released when the delivery ends, on
	// every path; a store that can lose a process (Redis) also expires a
	// lease that its holder stopped renewing.
	Acquire(ctx context.Context, key string, lim Limit) (Grant, error)
	// Peek reports key's usage without taking anything.
	Peek(ctx context.Context, key string, lim Limit) (Usage, error)
	// Close stops the store's background work (lease renewal, client
	// connections). Leases still held are released.
	Close() error
}

// ErrStore wraps the errors of a store that could not be reached or
// answered wrongly; the engine then applies limits.on-store-error.
var ErrStore = errors.New("throttle store")

// Lease is one concurrency slot and rate token taken by Acquire: a small
// value, copied freely. Release it exactly when the delivery ends; only
// the first Release of a lease counts, whichever copy makes it and from
// whatever goroutine (a store hands out leases that stay safe to release
// twice even once it has reused its records: see LeaseHolder).
type Lease struct {
	h  LeaseHolder
	id uint64
}

// LeaseHolder is what a store puts behind its leases: ReleaseLease ends
// the lease id, and must do nothing for an id already released (a store
// reusing its records gives each use a new id). Stores implement it;
// callers use Lease.
type LeaseHolder interface {
	ReleaseLease(id uint64, refund bool)
}

// MakeLease makes the lease id of h.
func MakeLease(h LeaseHolder, id uint64) Lease { return Lease{h: h, id: id} }

// NewLease makes a Lease whose Release calls release once (it allocates:
// stores on a hot path use MakeLease).
func NewLease(release func(refund bool)) Lease {
	return Lease{h: &funcLease{release: release}, id: 1}
}

// funcLease is the holder of NewLease.
type funcLease struct {
	release func(refund bool)
	done    atomic.Bool
}

func (f *funcLease) ReleaseLease(_ uint64, refund bool) {
	if !f.done.Swap(true) && f.release != nil {
		f.release(refund)
	}
}

// Held reports whether l is a lease (the acquire succeeded).
func (l Lease) Held() bool { return l.h != nil }

// Release gives the concurrency slot back; with refund true it also gives
// the rate token back, for a delivery that never started (another
// throttle was full, the group failed before connecting). Only the first
// call counts. The zero Lease does nothing.
func (l Lease) Release(refund bool) {
	if l.h != nil {
		l.h.ReleaseLease(l.id, refund)
	}
}
