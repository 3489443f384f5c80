package dns

import (
	"errors"
	"strings"
)

// ErrorKind classifies a failed lookup.
type ErrorKind int

const (
	// NotFound means the name does not exist (NXDOMAIN).
	NotFound ErrorKind = iota + 1
	// NoData means the name exists but has no record of the asked type
	// (NOERROR with an empty answer, "NODATA").
	NoData
	// Temporary covers failures worth retrying later: SERVFAIL without a
	// DNSSEC reason, REFUSED, timeouts, network errors, a truncated answer
	// that could not be repeated over TCP, malformed replies.
	Temporary
	// Bogus means a validating upstream rejected the answer's DNSSEC
	// signatures: the data may exist but cannot be trusted.
	Bogus
)

// String returns a short lower-case name for the kind.
func (k ErrorKind) String() string {
	switch k {
	case NotFound:
		return "not found (NXDOMAIN)"
	case NoData:
		return "no data (NODATA)"
	case Temporary:
		return "temporary failure"
	case Bogus:
		return "DNSSEC bogus"
	}
	return "unknown error"
}

// Sentinel errors, one per [ErrorKind], for use with errors.Is:
//
//	if errors.Is(err, dns.ErrNotFound) { ... }
var (
	ErrNotFound  = errors.New("dns: not found (NXDOMAIN)")
	ErrNoData    = errors.New("dns: no data (NODATA)")
	ErrTemporary = errors.New("dns: temporary failure")
	ErrBogus     = errors.New("dns: DNSSEC bogus")
)

// Error is the error every lookup of this package returns.
type Error struct {
	Kind   ErrorKind
	Name   string // the name asked for, lower-case, no trailing dot
	Type   string // the record type asked for, such as "MX"
	Server string // the upstream that answered or failed last ("" for static/cached answers)
	Err    error  // the underlying cause, if any
	// Stale is set, on a Temporary error from a [Cache], when the upstream
	// failed and the only answer the cache had was an expired negative one
	// (NXDOMAIN or NODATA that expired less than CacheConfig.StaleGrace
	// ago). A name's non-existence is not served stale: it may have come
	// into existence since, and a permanent failure on old information
	// would bounce mail. The error's chain then holds no NotFound or
	// NoData error, so errors.Is with [ErrNotFound] and [ErrNoData] is
	// false; its message says which answer expired and how long ago. The
	// result returned with it has Info.Cached and Info.Stale set.
	Stale bool
}

// Error reports name, type, kind, server and cause, for example
// "dns: MX example.com: temporary failure from udp://127.0.0.1:53: SERVFAIL".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dns: ")
	b.WriteString(e.Type)
	b.WriteByte(' ')
	b.WriteString(e.Name)
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Server != "" {
		b.WriteString(" from ")
		b.WriteString(e.Server)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel error of e's kind.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Kind == NotFound
	case ErrNoData:
		return e.Kind == NoData
	case ErrTemporary:
		return e.Kind == Temporary
	case ErrBogus:
		return e.Kind == Bogus
	}
	return false
}
