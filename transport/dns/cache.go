package dns

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	mdns "github.com/miekg/dns"
)

// Cache defaults.
const (
	DefaultCacheSize   = 10000
	DefaultMaxTTL      = 24 * time.Hour
	DefaultNegativeTTL = 5 * time.Minute
	DefaultStaleGrace  = time.Hour
	// StaleTTL is the TTL reported for an answer served stale, the value
	// RFC 8767 section 4 recommends.
	StaleTTL = 30 * time.Second
	// staleRetry is how long a failed refresh keeps serving stale data
	// before the upstream is asked again (RFC 8767's failure recheck timer).
	staleRetry = 30 * time.Second
)

// CacheConfig tunes a [Cache]. The zero value gives the defaults.
type CacheConfig struct {
	// Size is the number of entries (one per name, type and class) kept,
	// least recently used evicted first. Zero means DefaultCacheSize.
	Size int
	// MinTTL raises the TTL of positive answers; zero means no floor.
	MinTTL time.Duration
	// MaxTTL caps the TTL of positive answers. Zero means DefaultMaxTTL.
	MaxTTL time.Duration
	// NegativeTTL caps how long NXDOMAIN and NODATA answers are kept; the
	// answer's own negative TTL (RFC 2308: the smaller of the SOA's TTL
	// and MINIMUM) applies when smaller. Negative answers without an SOA
	// record are not cached (RFC 2308 section 5). Zero means
	// DefaultNegativeTTL; a negative value disables negative caching.
	NegativeTTL time.Duration
	// StaleGrace is how long after expiry an entry may still be served,
	// marked Info.Stale, when the upstream fails with a Temporary error
	// (RFC 8767). Bogus answers are never papered over with stale data.
	// Only positive answers are served stale: an expired NXDOMAIN or
	// NODATA entry within the grace turns the upstream failure into a
	// Temporary error with [Error.Stale] set, never into a negative
	// answer. Zero means DefaultStaleGrace; a negative value disables
	// serve-stale.
	StaleGrace time.Duration
	// NoPrefetch turns off prefetching: by default an entry asked for in
	// the last 10% of its TTL is refreshed in the background, once.
	NoPrefetch bool
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
}

// Stats are the cache's counters since it was created.
type Stats struct {
	Hits       uint64 // answered from a fresh entry
	Misses     uint64 // no fresh entry: the caller waited for an upstream answer (or stale data)
	Upstream   uint64 // questions sent to the upstream, prefetches included
	Collapsed  uint64 // misses that joined a question already in flight instead of asking again
	Errors     uint64 // upstream failures (Temporary or Bogus); NXDOMAIN/NODATA are answers, not errors
	Stale      uint64 // positive answers served stale (an expired negative entry is never served: see Error.Stale)
	Prefetches uint64 // background refreshes started
	Entries    int    // entries held now, stale ones included
}

// Upstream is what a [Cache] can wrap: a *Client or a *Static. (Its
// unexported method carries negative-caching TTLs that Resolver results
// do not expose.)
type Upstream interface {
	Resolver
	query(ctx context.Context, name string, qtype uint16) (*response, error)
}

// Cache is a TTL-respecting LRU cache in front of an [Upstream]. It is
// safe for concurrent use. A hit costs one map look-up under a lock and
// allocates nothing: results share the cached slices, which callers must
// not modify.
//
// Concurrent misses for the same (name, type, class) send one question
// upstream; the others wait for its answer. The question runs detached
// from any one caller's context (bounded by the Client's own timeouts),
// so a caller that gives up does not fail the others.
type Cache struct {
	up     Upstream
	lru    *lru.Cache[cacheKey, *cacheEntry]
	cfg    CacheConfig
	now    func() time.Time
	mu     sync.Mutex
	flight map[cacheKey]*flightCall

	hits, misses, upstream, collapsed, errs, stale, prefetches atomic.Uint64

	bg     context.Context // prefetches run under it; Close cancels it
	stop   context.CancelFunc
	wg     sync.WaitGroup // prefetches in flight
	closed bool           // under mu
}

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

type flightCall struct {
	done  chan struct{}
	entry *cacheEntry // the new entry, or nil
	err   error       // the upstream error when nothing cacheable came back
}

// NewCache wraps up in a cache configured by cfg.
func NewCache(up Upstream, cfg CacheConfig) *Cache {
	if cfg.Size <= 0 {
		cfg.Size = DefaultCacheSize
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.StaleGrace == 0 {
		cfg.StaleGrace = DefaultStaleGrace
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	l, _ := lru.New[cacheKey, *cacheEntry](cfg.Size) // only fails for size <= 0
	bg, stop := context.WithCancel(context.Background())
	return &Cache{up: up, lru: l, cfg: cfg, now: now, flight: make(map[cacheKey]*flightCall), bg: bg, stop: stop}
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits:       c.hits.Load(),
		Misses:     c.misses.Load(),
		Upstream:   c.upstream.Load(),
		Collapsed:  c.collapsed.Load(),
		Errors:     c.errs.Load(),
		Stale:      c.stale.Load(),
		Prefetches: c.prefetches.Load(),
		Entries:    c.lru.Len(),
	}
}

// Close cancels background prefetches and waits for them to end. The
// cache still answers afterwards, without prefetching. (Questions asked
// on behalf of callers are not tracked: they end with the upstream's own
// timeouts.)
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
}

// Purge drops every entry.
func (c *Cache) Purge() { c.lru.Purge() }

// LookupMX implements [Resolver].
func (c *Cache) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	return lookupMX(ctx, c, domain)
}

// LookupA implements [Resolver].
func (c *Cache) LookupA(ctx context.Context, host string) (AddrResult, error) {
	return lookupAddr(ctx, c, host, mdns.TypeA)
}

// LookupAAAA implements [Resolver].
func (c *Cache) LookupAAAA(ctx context.Context, host string) (AddrResult, error) {
	return lookupAddr(ctx, c, host, mdns.TypeAAAA)
}

// LookupTLSA implements [Resolver].
func (c *Cache) LookupTLSA(ctx context.Context, name string) (TLSAResult, error) {
	return lookupTLSA(ctx, c, name)
}

// LookupTXT implements [Resolver].
func (c *Cache) LookupTXT(ctx context.Context, name string) (TXTResult, error) {
	return lookupTXT(ctx, c, name)
}

// Immediate implements [Immediate]: the cache holds a fresh answer (or a
// fresh negative answer) for the question.
func (c *Cache) Immediate(name, typ string) bool {
	e, ok := c.lru.Peek(cacheKey{name: normalize(name), qtype: qtypeOf(typ), class: mdns.ClassINET})
	return ok && e.expires.After(c.now())
}

func (c *Cache) lookup(ctx context.Context, name string, qtype uint16) (*response, Info, error) {
	k := cacheKey{name: name, qtype: qtype, class: mdns.ClassINET}
	now := c.now()
	e, ok := c.lru.Get(k)
	if ok {
		left := e.expires.Sub(now)
		if left > 0 {
			c.hits.Add(1)
			if !c.cfg.NoPrefetch && left < e.ttl/10 && e.prefetching.CompareAndSwap(false, true) {
				c.prefetch(k)
			}
			return e.answer(Info{Cached: true, TTL: left})
		}
	}
	c.misses.Add(1)
	staleOK := ok && c.cfg.StaleGrace > 0 && now.Sub(e.expires) < c.cfg.StaleGrace
	if staleOK && now.UnixNano() < e.retryAt.Load() {
		return c.serveStale(k, e, now)
	}
	ne, cached, err := c.fetch(ctx, k)
	if ne != nil {
		now := c.now()
		if cached {
			return ne.answer(Info{Cached: true, TTL: max(ne.expires.Sub(now), 0)})
		}
		return ne.answer(Info{TTL: max(ne.expires.Sub(now), 0), Server: ne.resp.server})
	}
	// Serve stale when the upstream failed, not when this caller gave up
	// (its context is done): that says nothing about the upstream.
	if staleOK && ctx.Err() == nil && errors.Is(err, ErrTemporary) {
		now := c.now()
		e.failed.Store(&upstreamFailure{err: err})
		e.retryAt.Store(now.Add(staleRetry).UnixNano())
		return c.serveStale(k, e, now)
	}
	return nil, Info{}, err
}

// answer returns the entry's result with info: the response of a
// positive entry, the NotFound/NoData error of a negative one.
func (e *cacheEntry) answer(info Info) (*response, Info, error) {
	if e.err != nil {
		return nil, info, e.err
	}
	return e.resp, info, nil
}

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

// fetch asks the upstream for k, joining a question already in flight.
// It returns the new entry (positive or negative answer) or the error;
// cached is set when a fresh entry turned out to be in the cache already.
func (c *Cache) fetch(ctx context.Context, k cacheKey) (e *cacheEntry, cached bool, err error) {
	c.mu.Lock()
	call, ok := c.flight[k]
	if ok {
		c.collapsed.Add(1)
	} else {
		// Check again under the lock: a question for k may have finished
		// (and stored its entry) since the caller looked.
		if e, ok := c.lru.Peek(k); ok && e.expires.After(c.now()) {
			c.mu.Unlock()
			return e, true, nil
		}
		call = &flightCall{done: make(chan struct{})}
		c.flight[k] = call
		go c.run(context.WithoutCancel(ctx), k, call)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.entry, false, call.err
	case <-ctx.Done():
		return nil, false, &Error{Kind: Temporary, Name: k.name, Type: typeName(k.qtype), Err: ctx.Err()}
	}
}

// prefetch refreshes k in the background unless a question for it is
// already in flight.
func (c *Cache) prefetch(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if _, ok := c.flight[k]; ok {
		return
	}
	c.prefetches.Add(1)
	call := &flightCall{done: make(chan struct{})}
	c.flight[k] = call
	c.wg.Add(1) // under mu, and never after Close set closed: no Add races Wait
	go func() {
		defer c.wg.Done()
		c.run(c.bg, k, call)
	}()
}

// run asks the upstream, stores what can be cached, and wakes the waiters.
func (c *Cache) run(ctx context.Context, k cacheKey, call *flightCall) {
	c.upstream.Add(1)
	resp, err := c.up.query(ctx, k.name, k.qtype)
	now := c.now()
	var e *cacheEntry
	var derr *Error
	switch {
	case err == nil:
		ttl := time.Duration(resp.ttl) * time.Second
		ttl = min(max(ttl, c.cfg.MinTTL), c.cfg.MaxTTL)
		e = &cacheEntry{resp: resp, expires: now.Add(ttl), ttl: ttl}
	case errors.As(err, &derr) && (derr.Kind == NotFound || derr.Kind == NoData):
		e = &cacheEntry{resp: resp, err: derr}
		if resp != nil && resp.hasTTL && c.cfg.NegativeTTL > 0 {
			ttl := min(time.Duration(resp.ttl)*time.Second, c.cfg.NegativeTTL)
			e.expires, e.ttl = now.Add(ttl), ttl
		} else {
			e.expires = now // answered, but not to be cached
		}
		if e.resp == nil {
			e.resp = &response{}
		}
	default:
		c.errs.Add(1)
	}
	c.mu.Lock()
	if e != nil && e.expires.After(now) {
		c.lru.Add(k, e)
	}
	delete(c.flight, k)
	c.mu.Unlock()
	call.entry, call.err = e, err
	close(call.done)
}
