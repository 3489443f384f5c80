package dns

import (
	"context"
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
