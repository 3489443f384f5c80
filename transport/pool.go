package transport

import (
	"net/netip"
	"sync"
	"time"
)

// poolKey identifies connections that are interchangeable: same address,
// source, TLS requirements, EHLO name and credentials.
type poolKey struct {
	remote netip.AddrPort
	local  netip.Addr
	host   string
	proto  Protocol
	tls    string
	ehlo   string
	creds  string
}

// pool keeps idle sessions for reuse.
type pool struct {
	mu     sync.Mutex
	idle   map[poolKey][]*session
	n      int
	closed bool
}

// get takes an idle session for key, or returns nil.
func (p *pool) get(key poolKey) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[key]
	if len(l) == 0 {
		return nil
	}
	s := l[len(l)-1]
	p.idle[key] = l[:len(l)-1]
	if len(p.idle[key]) == 0 {
		delete(p.idle, key)
	}
	p.n--
	s.idle.Stop()
	return s
}

// put keeps s for up to idle, or QUITs it when the pool is full or closed.
func (p *pool) put(s *session, idle time.Duration, maxIdle int) {
	p.mu.Lock()
	if p.closed || p.n >= maxIdle {
		p.mu.Unlock()
		s.quit()
		return
	}
	if p.idle == nil {
		p.idle = map[poolKey][]*session{}
	}
	p.idle[s.key] = append(p.idle[s.key], s)
	p.n++
	s.idle = time.AfterFunc(idle, func() {
		if p.remove(s) {
			s.quit()
		}
	})
	p.mu.Unlock()
}

// remove takes s out of the pool if it is still there.
func (p *pool) remove(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[s.key]
	for i, x := range l {
		if x == s {
			p.idle[s.key] = append(l[:i:i], l[i+1:]...)
			if len(p.idle[s.key]) == 0 {
				delete(p.idle, s.key)
			}
			p.n--
			return true
		}
	}
	return false
}

func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var all []*session
	for _, l := range p.idle {
		all = append(all, l...)
	}
	p.idle, p.n = nil, 0
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		s.idle.Stop()
		wg.Go(s.quit)
	}
	wg.Wait()
}

// release puts s back into the pool, or closes it.
func (c *Client) release(s *session) {
	s.unbind()
	if s.broken || s.uses >= s.max || c.IdleTimeout < 0 {
		s.quit()
		return
	}
	idle := c.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	maxIdle := c.MaxIdle
	if maxIdle <= 0 {
		maxIdle = 100
	}
	c.pool.put(s, idle, maxIdle)
}

// Idle is the number of connections kept idle for reuse now.
func (c *Client) Idle() int {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	return c.pool.n
}
