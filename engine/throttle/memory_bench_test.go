package throttle

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// benchLimit never refuses in a benchmark: both limits are counted, the
// concurrency one with room for every goroutine and the rate with more
// tokens than any run takes.
var benchLimit = Limit{Concurrency: 1 << 20, Rate: Rate{Count: 1 << 40, Period: time.Second}}

// BenchmarkMemoryAcquireRelease is one acquire and release of one key
// through the Store interface, as the engine calls it.
func BenchmarkMemoryAcquireRelease(b *testing.B) {
	var s Store = NewMemory(MemoryOptions{})
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		g, err := s.Acquire(ctx, "throttle\x00example.net", benchLimit)
		if err != nil || !g.Lease.Held() {
			b.Fatalf("acquire: %+v, %v", g, err)
		}
		g.Lease.Release(false)
	}
}

// BenchmarkMemoryAcquireReleaseParallel spreads goroutines over 64 keys.
func BenchmarkMemoryAcquireReleaseParallel(b *testing.B) {
	var s Store = NewMemory(MemoryOptions{})
	defer s.Close()
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("throttle\x00domain-%d.example", i)
	}
	var next atomic.Int64
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1))
		for pb.Next() {
			g, err := s.Acquire(ctx, keys[i%len(keys)], benchLimit)
			if err != nil || !g.Lease.Held() {
				b.Errorf("acquire: %+v, %v", g, err)
				return
			}
			g.Lease.Release(false)
			i++
		}
	})
}
