package dns

import (
	"sync/atomic"
	"time"
)

type cacheKey struct {
	name  string // normalised
	qtype uint16
	class uint16
}

type cacheEntry struct {
	resp    *response // positive answer, or the negative response
	err     *Error    // negative answer (NotFound, NoData), nil if positive
	expires time.Time
	ttl     time.Duration // original (clamped) TTL
	// prefetching is set once a background refresh was started.
	prefetching atomic.Bool
	// retryAt: after a failed refresh, stale data is served without
	// asking upstream until this time (unix nanoseconds).
	retryAt atomic.Int64
	// failed is the upstream failure that set retryAt, for the message of
	// a stale negative entry (nil until a refresh failed).
	failed atomic.Pointer[upstreamFailure]
}

type upstreamFailure struct{ err error }

// answer returns the entry's result with info: the response of a
// positive entry, the NotFound/NoData error of a negative one.
func (e *cacheEntry) answer(info Info) (*response, Info, error) {
	if e.err != nil {
		return nil, info, e.err
	}
	return e.resp, info, nil
}
