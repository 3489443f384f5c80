package mtasts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// RetryAfterFailure is how long a failed fetch is remembered for a domain
// and policy id: within it, [Source.Policy] reports the same failure
// instead of fetching again (RFC 8461 section 3.3 suggests at least five
// minutes, so that a broken policy host is not hammered and deliveries do
// not each wait for a fetch timeout).
const RetryAfterFailure = 5 * time.Minute

// maxFailures bounds the remembered failures.
const maxFailures = 4096

// PolicyFetcher fetches the policy of a domain: a [*Fetcher], or a
// stand-in (policies read from files for offline runs, tests). Errors
// should be *[FetchError]; [Source] reports others as
// sts-policy-fetch-error.
type PolicyFetcher interface {
	Fetch(ctx context.Context, domain string) (*Policy, error)
}

// Source decides a domain's policy from the TXT state, the cache and the
// network (RFC 8461 sections 3.3, 5.1 and 10.2). Fetcher is required;
// Cache may be nil (nothing is cached); Now nil means time.Now. A Source
// is safe for concurrent use and must not be copied after first use.
type Source struct {
	Fetcher PolicyFetcher
	Cache   *Cache
	Now     func() time.Time

	mu       sync.Mutex
	flights  map[string]*flight
	failures map[string]failure

	// joined, when set (tests), is called when a caller waits for a
	// fetch another caller started.
	joined func()
}

// Record is what the caller learned from the TXT lookup of
// _mta-sts.DOMAIN.
type Record struct {
	// ID is the policy id from [ParseRecord]; "" when there is none.
	ID string
	// Absent: no usable STSv1 record (NXDOMAIN, NODATA, none starting
	// with v=STSv1, several, or a malformed one: any ParseRecord error).
	Absent bool
	// Err: the lookup itself failed (SERVFAIL, timeout): a temporary
	// condition.
	Err error
}

// Result is the policy to apply, if any.
type Result struct {
	// Policy is nil when there is no usable policy.
	Policy *Policy
	// ID is the id the policy was fetched for.
	ID string
	// FromCache: the policy came from the cache, not from a fetch made
	// for this call.
	FromCache bool
	// Fetched is when the policy in use was fetched (its age is now -
	// Fetched).
	Fetched time.Time
	// Err says why there is no policy, or, with a cached policy standing
	// in, why it was not refreshed: a *[FetchError], the TXT lookup error,
	// or [ErrNoRecord].
	Err error
}

type flight struct {
	done    chan struct{}
	policy  *Policy
	fetched time.Time
	err     error
}

type failure struct {
	at  time.Time
	err *FetchError
}

// Policy returns the policy to apply to domain, given what the TXT lookup
// found (rec). The rules, in order ("cached" means a cache entry for the
// domain that has not expired: now < Fetched + max_age):
//
//  1. The TXT lookup failed (rec.Err), or there is no usable record
//     (rec.Absent, or rec.ID is ""): the cached policy is used if there is
//     one (FromCache; Err is rec.Err, nil when the record is absent), else
//     there is no policy (Err is rec.Err or [ErrNoRecord]). Nothing is
//     fetched: the id to fetch for is unknown, and the absence of the
//     record does not remove a cached policy (sections 3.1, 5.1, 10.2).
//  2. The cached policy has the record's id and is not in the last quarter
//     of its max_age: it is used as is, without a fetch.
//  3. Otherwise (no cached policy, a different id, or the last quarter of
//     max_age: section 3.3 asks for refreshes before expiry) the policy is
//     fetched. On success it is cached under the record's id and used,
//     whatever its mode: a policy with mode none is returned as is, and
//     the caller decides. A failure to write the cache file does not
//     matter here (see [Cache.Errors]). A Fetcher error that is not a
//     *[FetchError], a nil policy without an error, or a panic in the
//     Fetcher is reported as a *FetchError of type sts-policy-fetch-error.
//  4. When the fetch fails, the cached policy stands in (FromCache, Err is
//     the *[FetchError]) even if its id differs (section 5.1: a valid
//     cached policy applies when no live one can be fetched); without
//     one there is no policy.
//  5. A failed fetch is remembered for [RetryAfterFailure] per domain and
//     id; within that time rule 3 reports the same failure instead of
//     fetching. A new id is fetched at once.
//  6. Concurrent calls for one domain and id share one fetch. The fetch is
//     not tied to any caller's context: a caller whose ctx ends stops
//     waiting (the fetch goes on, bounded by the Fetcher's timeout, and is
//     cached), and gets the cached policy or no policy with the context's
//     error in a *FetchError.
func (s *Source) Policy(ctx context.Context, domain string, rec Record) Result {
	d := normalDomain(domain)
	now := s.now()
	cached, have := s.cached(d, now)
	if r, ok := fromMemory(rec, cached, have, now); ok {
		return r
	}
	p, fetched, err := s.fetch(ctx, d, rec.ID, now)
	if err == nil {
		return Result{Policy: p, ID: rec.ID, Fetched: fetched}
	}
	if have {
		return fromCache(cached, err)
	}
	return Result{Err: err}
}

// NeedsFetch reports whether [Source.Policy] with the same arguments would
// fetch, or wait for a fetch under way, rather than answer at once from
// the record and the cache (rules 1, 2 and 5): callers use it to decide
// whether the call is worth a goroutine.
func (s *Source) NeedsFetch(domain string, rec Record) bool {
	d := normalDomain(domain)
	now := s.now()
	cached, have := s.cached(d, now)
	if _, ok := fromMemory(rec, cached, have, now); ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, failed := s.failed(flightKey(d, rec.ID), now)
	return !failed
}

// fromMemory applies rules 1 and 2: the result when no fetch is needed.
func fromMemory(rec Record, cached Entry, have bool, now time.Time) (Result, bool) {
	if rec.Err != nil || rec.Absent || rec.ID == "" {
		if have {
			return fromCache(cached, rec.Err), true
		}
		if rec.Err != nil {
			return Result{Err: rec.Err}, true
		}
		return Result{Err: ErrNoRecord}, true
	}
	if have && cached.ID == rec.ID && now.Before(refreshAt(cached)) {
		return fromCache(cached, nil), true
	}
	return Result{}, false
}

// cached returns the unexpired cache entry of domain.
func (s *Source) cached(domain string, now time.Time) (Entry, bool) {
	if s.Cache == nil {
		return Entry{}, false
	}
	e, ok := s.Cache.Get(domain)
	if !ok || !now.Before(e.Expires()) {
		return Entry{}, false
	}
	return e, true
}

// refreshAt is the start of the last quarter of an entry's max_age.
func refreshAt(e Entry) time.Time {
	return e.Fetched.Add(e.Policy.MaxAge - e.Policy.MaxAge/4)
}

func fromCache(e Entry, err error) Result {
	return Result{Policy: e.Policy, ID: e.ID, FromCache: true, Fetched: e.Fetched, Err: err}
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// fetch fetches the policy of domain for id, sharing the fetch with
// concurrent callers and remembering failures (rules 3, 5 and 6).
func (s *Source) fetch(ctx context.Context, domain, id string, now time.Time) (*Policy, time.Time, error) {
	key := flightKey(domain, id)
	s.mu.Lock()
	if f, ok := s.failed(key, now); ok {
		s.mu.Unlock()
		return nil, time.Time{}, &FetchError{Type: f.err.Type, Domain: domain,
			Err: fmt.Errorf("%w (a fetch at %s failed; not tried again before %s)",
				f.err.Err, f.at.Format(time.RFC3339), f.at.Add(RetryAfterFailure).Format(time.RFC3339))}
	}
	fl, ok := s.flights[key]
	if ok {
		if s.joined != nil {
			s.joined()
		}
	} else {
		fl = &flight{done: make(chan struct{})}
		if s.flights == nil {
			s.flights = map[string]*flight{}
		}
		s.flights[key] = fl
		go s.run(context.WithoutCancel(ctx), fl, key, domain, id, now)
	}
	s.mu.Unlock()
	select {
	case <-fl.done:
		return fl.policy, fl.fetched, fl.err
	case <-ctx.Done():
		return nil, time.Time{}, &FetchError{Type: ResultFetchError, Domain: domain,
			Err: fmt.Errorf("waiting for the fetch: %w", ctx.Err())}
	}
}

// flightKey keys fetches and failures by domain and id.
func flightKey(domain, id string) string { return domain + "\x00" + id }

// run does one shared fetch, caches its result and records a failure.
func (s *Source) run(ctx context.Context, fl *flight, key, domain, id string, now time.Time) {
	p, err := s.callFetcher(ctx, domain)
	if err == nil && s.Cache != nil {
		_ = s.Cache.Put(Entry{Domain: domain, ID: id, Policy: p, Fetched: now}) // kept by Cache.Errors
	}
	s.mu.Lock()
	delete(s.flights, key)
	var fe *FetchError
	if errors.As(err, &fe) {
		s.remember(key, failure{at: now, err: fe})
	} else {
		delete(s.failures, key)
	}
	fl.policy, fl.fetched, fl.err = p, now, err
	s.mu.Unlock()
	close(fl.done)
}

// callFetcher runs the Fetcher and makes whatever goes wrong a
// *FetchError: a plain error, no policy, or a panic (the fetch runs in a
// goroutine of its own, where a panic would end the process).
func (s *Source) callFetcher(ctx context.Context, domain string) (p *Policy, err error) {
	fail := func(cause error) { p, err = nil, &FetchError{Type: ResultFetchError, Domain: domain, Err: cause} }
	defer func() {
		if v := recover(); v != nil {
			fail(fmt.Errorf("the policy fetcher panicked: %v", v))
		}
	}()
	if s.Fetcher == nil {
		fail(errors.New("the Source has no Fetcher"))
		return p, err
	}
	p, err = s.Fetcher.Fetch(ctx, domain)
	switch {
	case err != nil && !errors.As(err, new(*FetchError)):
		fail(err)
	case err == nil && p == nil:
		fail(errors.New("the policy fetcher returned no policy and no error"))
	}
	return p, err
}

// failed returns the failure remembered for key, if it is recent. s.mu
// is held.
func (s *Source) failed(key string, now time.Time) (failure, bool) {
	f, ok := s.failures[key]
	return f, ok && now.Before(f.at.Add(RetryAfterFailure))
}

// remember records a failure, dropping stale ones (and, past the bound,
// arbitrary ones) to keep the map small. s.mu is held.
func (s *Source) remember(key string, f failure) {
	if s.failures == nil {
		s.failures = map[string]failure{}
	}
	if len(s.failures) >= maxFailures {
		for k, old := range s.failures {
			if !f.at.Before(old.at.Add(RetryAfterFailure)) || len(s.failures) >= maxFailures {
				delete(s.failures, k)
			}
		}
	}
	s.failures[key] = f
}
