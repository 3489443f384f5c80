package dns

import (
	"context"
	"errors"
	"time"

	mdns "github.com/miekg/dns"
)

type flightCall struct {
	done  chan struct{}
	entry *cacheEntry // the new entry, or nil
	err   error       // the upstream error when nothing cacheable came back
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
