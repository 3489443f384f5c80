package dns

import (
	"errors"
	"time"
)

// serveStale answers from the expired entry e after the upstream failed
// (now, or less than staleRetry ago). A positive entry is served marked
// stale. A negative entry is not served: the name may exist by now, and a
// stale NXDOMAIN or NODATA would fail mail permanently on old information.
// The upstream failure is reported instead, as a Temporary error with
// Stale set.
func (c *Cache) serveStale(k cacheKey, e *cacheEntry, now time.Time) (*response, Info, error) {
	if e.err == nil {
		c.stale.Add(1)
		return e.resp, Info{Cached: true, Stale: true, TTL: StaleTTL}, nil
	}
	var cause error
	if f := e.failed.Load(); f != nil {
		cause = f.err
	}
	// The cause is the upstream's Temporary failure; a NotFound or NoData
	// error in its chain would defeat the purpose, so it is dropped (no
	// upstream in this package wraps one, but Upstream is an interface).
	if errors.Is(cause, ErrNotFound) || errors.Is(cause, ErrNoData) {
		cause = nil
	}
	err := &Error{Kind: Temporary, Stale: true, Name: k.name, Type: typeName(k.qtype),
		Err: &expiredNegative{last: e.err.Kind, age: now.Sub(e.expires).Round(time.Second), cause: cause}}
	var ue *Error
	if errors.As(cause, &ue) {
		err.Server = ue.Server
	}
	return nil, Info{Cached: true, Stale: true}, err
}

// expiredNegative is the cause of a stale-negative Temporary error.
type expiredNegative struct {
	last  ErrorKind     // NotFound or NoData
	age   time.Duration // how long ago the negative entry expired
	cause error         // the upstream failure, if known
}

func (e *expiredNegative) Error() string {
	what := "NXDOMAIN"
	if e.last == NoData {
		what = "NODATA"
	}
	msg := "the upstream failed and the last answer (" + what + ") expired " + e.age.String() + " ago"
	var ue *Error
	switch {
	case e.cause == nil:
	case errors.As(e.cause, &ue) && ue.Err != nil:
		msg += ": " + ue.Err.Error() // name, type and server are in the outer error
	default:
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *expiredNegative) Unwrap() error { return e.cause }
