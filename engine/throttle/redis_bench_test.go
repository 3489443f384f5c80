package throttle

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/redisbed"
)

// benchRedis starts a single redis-server on loopback and opens a store on
// it.
func benchRedis(b *testing.B) *Redis {
	b.Helper()
	srv := redisbed.Start(b, redisbed.Options{})
	return redisBed{addrs: []string{srv.Addr}}.store(b, nil)
}

// BenchmarkRedisAcquireRelease is one acquire and release of one key with
// both limits, as the engine calls them: two round trips (the acquire's
// EVALSHA, the release's EVALSHA).
func BenchmarkRedisAcquireRelease(b *testing.B) {
	benchAcquireRelease(b, Limit{Concurrency: 1 << 20, Rate: Rate{Count: 1 << 40, Period: time.Second}})
}

// BenchmarkRedisAcquire is an acquire alone (a rate limit only: its
// release needs no round trip): exactly one round trip, to compare with
// BenchmarkRedisPing and redis-benchmark -t ping.
func BenchmarkRedisAcquire(b *testing.B) {
	benchAcquireRelease(b, Limit{Rate: Rate{Count: 1 << 40, Period: time.Second}})
}

// benchAcquireRelease acquires and releases one key under lim, b.N times.
func benchAcquireRelease(b *testing.B, lim Limit) {
	s := benchRedis(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		g, err := s.Acquire(ctx, "bench\x00example.net", lim)
		if err != nil || !g.Lease.Held() {
			b.Fatalf("acquire: %+v, %v", g, err)
		}
		g.Lease.Release(false)
	}
}

// BenchmarkRedisPing is one PING through the store's client: the cost of
// a round trip from Go, the floor of an acquire.
func BenchmarkRedisPing(b *testing.B) {
	s := benchRedis(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.c.Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisAcquireReleaseParallel spreads goroutines over 64 keys:
// the throughput of one store (one process) against one server.
func BenchmarkRedisAcquireReleaseParallel(b *testing.B) {
	s := benchRedis(b)
	ctx := context.Background()
	lim := Limit{Concurrency: 1 << 20, Rate: Rate{Count: 1 << 40, Period: time.Second}}
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("bench\x00domain-%d.example", i)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := names[next.Add(1)%int64(len(names))]
		for pb.Next() {
			g, err := s.Acquire(ctx, key, lim)
			if err != nil || !g.Lease.Held() {
				b.Errorf("acquire: %+v, %v", g, err)
				return
			}
			g.Lease.Release(false)
		}
	})
}
