package dns

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"
)

func benchCache(b *testing.B, names int) (*Cache, []string) {
	resp := &response{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ttl: 3600}
	up := &fakeUpstream{fn: func(string, uint16) (*response, error) { return resp, nil }}
	c := NewCache(up, CacheConfig{})
	b.Cleanup(c.Close)
	list := make([]string, names)
	for i := range list {
		list[i] = fmt.Sprintf("mx%d.example.test", i)
		if _, err := c.LookupA(context.Background(), list[i]); err != nil {
			b.Fatal(err)
		}
	}
	return c, list
}

// BenchmarkCacheHit is one LookupA answered from the cache.
func BenchmarkCacheHit(b *testing.B) {
	c, names := benchCache(b, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.LookupA(ctx, names[0])
		if err != nil || !r.Info.Cached {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkCacheHitParallel is cache hits from all CPUs over 1000 names.
func BenchmarkCacheHitParallel(b *testing.B) {
	c, names := benchCache(b, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r, err := c.LookupA(ctx, names[i%len(names)])
			if err != nil || !r.Info.Cached {
				b.Fatal(r, err)
			}
			i++
		}
	})
}

// BenchmarkStaticLookup is one LookupMX from a Static zone.
func BenchmarkStaticLookup(b *testing.B) {
	s := loadStatic(b, true)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.LookupMX(ctx, "example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// anyNameHandler answers A for every name.
func anyNameHandler(w mdns.ResponseWriter, q *mdns.Msg, _ bool) {
	m := new(mdns.Msg)
	m.SetReply(q)
	m.Answer = append(m.Answer, &mdns.A{
		Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
		A:   []byte{127, 0, 0, 1},
	})
	if o := q.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	_ = w.WriteMsg(m)
}

// BenchmarkClientUDP is one uncached question over UDP to an in-process
// server on loopback (server time included).
func BenchmarkClientUDP(b *testing.B) {
	srv := startServer(b, anyNameHandler)
	c := customClient(b, Config{EDNS: true, DNSSEC: true}, "udp://"+srv.addr)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.LookupA(ctx, "mx1.example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheMiss is a cache miss (a new name every time) through the
// cache and the client to an in-process UDP server.
func BenchmarkCacheMiss(b *testing.B) {
	srv := startServer(b, anyNameHandler)
	c := NewCache(customClient(b, Config{EDNS: true, DNSSEC: true}, "udp://"+srv.addr), CacheConfig{Size: 1000})
	b.Cleanup(c.Close)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		name := fmt.Sprintf("h%d.example.test", n.Add(1))
		r, err := c.LookupA(ctx, name)
		if err != nil || r.Info.Cached {
			b.Fatal(r, err)
		}
	}
}
