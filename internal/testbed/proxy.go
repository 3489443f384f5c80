package testbed

import (
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Proxy forwards the TCP connections made to Addr (a free loopback port)
// to a target, byte for byte, and counts them: accepted in all, open at
// once, and the most ever open at once. It is a counter in front of a real
// receiver, not a receiver.
type Proxy struct {
	// Addr is where to connect, "127.0.0.1:PORT".
	Addr netip.AddrPort

	mu                sync.Mutex
	open, peak, total int
	peers             map[string]bool // remote addresses accepted
}

// StartProxy starts a Proxy to target, stopped (every connection closed)
// when the test ends.
func StartProxy(t testing.TB, target netip.AddrPort) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().(*net.TCPAddr).AddrPort(), peers: map[string]bool{}}
	var (
		mu    sync.Mutex
		conns []net.Conn // closed at the end, so that the copiers return
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.opened(c.RemoteAddr().String())
			track(c)
			wg.Go(func() {
				var once sync.Once
				closed := func() { once.Do(p.closed) }
				defer closed()
				u, err := net.Dial("tcp", target.String())
				if err != nil {
					_ = c.Close()
					return
				}
				track(u)
				wg.Go(func() { _, _ = io.Copy(u, c); closed(); _ = u.(*net.TCPConn).CloseWrite() })
				_, _ = io.Copy(c, u)
				closed()
				_ = c.Close()
				_ = u.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *Proxy) opened(peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open++
	p.total++
	p.peak = max(p.peak, p.open)
	p.peers[peer] = true
}

func (p *Proxy) closed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open--
}

// Count returns how many connections the proxy has accepted so far.
func (p *Proxy) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// Stats returns the most connections ever open at once, and the total.
func (p *Proxy) Stats() (peak, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak, p.total
}

// Settled returns how many connections were made before the call, without
// guessing how long a connection takes to arrive: it connects itself and
// waits for the proxy to accept that probe. Connections are accepted in
// the order they were made, so by then every earlier one is counted.
func (p *Proxy) Settled(t testing.TB) int {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	probe := c.LocalAddr().String()
	for deadline := time.Now().Add(10 * time.Second); ; {
		p.mu.Lock()
		seen, n := p.peers[probe], p.total
		p.mu.Unlock()
		if seen {
			return n - 1
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy never accepted the probe connection")
		}
		runtime.Gosched()
	}
}
