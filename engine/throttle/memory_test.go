package throttle

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const ms = time.Millisecond

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness runs a script of steps against one key of a fresh store.
type harness struct {
	m      *Memory
	clock  *fakeClock
	lim    Limit
	leases []Lease
}

// step is one action of a script, with what it must observe.
type step struct {
	what string
	do   func(t *testing.T, h *harness)
}

const key = "throttle\x00example.net"

func granted() step {
	return step{"acquire granted", func(t *testing.T, h *harness) {
		g := h.acquire(t)
		if !g.Lease.Held() {
			t.Fatalf("refused (%s, wait %s), want a lease", g.Class, g.Wait)
		}
		h.leases = append(h.leases, g.Lease)
	}}
}

func refused(c Class, wait time.Duration) step {
	return step{fmt.Sprintf("acquire refused by %s, wait %s", c, wait), func(t *testing.T, h *harness) {
		g := h.acquire(t)
		if g.Lease.Held() {
			t.Fatal("granted, want a refusal")
		}
		if g.Class != c || g.Wait != wait {
			t.Fatalf("refused by %q with wait %s, want %q with %s", g.Class, g.Wait, c, wait)
		}
	}}
}

func advance(d time.Duration) step {
	return step{"advance " + d.String(), func(_ *testing.T, h *harness) { h.clock.Advance(d) }}
}

func release(i int, refund bool) step {
	return step{fmt.Sprintf("release lease %d (refund %v)", i, refund), func(_ *testing.T, h *harness) {
		h.leases[i].Release(refund)
	}}
}

func usage(want Usage) step {
	return step{fmt.Sprintf("peek %+v", want), func(t *testing.T, h *harness) {
		u, err := h.m.Peek(context.Background(), key, h.lim)
		if err != nil {
			t.Fatal(err)
		}
		if u != want {
			t.Fatalf("usage %+v, want %+v", u, want)
		}
	}}
}

func (h *harness) acquire(t *testing.T) Grant {
	t.Helper()
	g, err := h.m.Acquire(context.Background(), key, h.lim)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func times(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func script(parts ...any) []step {
	var out []step
	for _, p := range parts {
		switch p := p.(type) {
		case step:
			out = append(out, p)
		case []step:
			out = append(out, p...)
		}
	}
	return out
}

func TestMemoryScripts(t *testing.T) {
	perSecond := func(n int) Rate { return Rate{Count: n, Period: time.Second} }
	tests := []struct {
		name  string
		lim   Limit
		steps []step
	}{
		{"burst of Count tokens, then a refusal until the next token", Limit{Rate: perSecond(5)}, script(
			times(5, granted()),
			refused(ClassRate, 200*ms),
			usage(Usage{InUse: 5, Tokens: 0, Wait: 200 * ms, Class: ClassRate}),
		)},
		{"the bucket refills continuously and holds at most Count", Limit{Rate: perSecond(5)}, script(
			times(5, granted()),
			advance(100*ms),
			refused(ClassRate, 100*ms),
			usage(Usage{InUse: 5, Tokens: 0.5, Wait: 100 * ms, Class: ClassRate}),
			advance(100*ms),
			granted(),
			refused(ClassRate, 200*ms),
			advance(time.Hour),
			usage(Usage{InUse: 6, Tokens: 5}),
			times(5, granted()),
			refused(ClassRate, 200*ms),
		)},
		{"a slow rate waits for its one token", Limit{Rate: Rate{Count: 2, Period: time.Minute}}, script(
			granted(), granted(),
			advance(15*time.Second),
			refused(ClassRate, 15*time.Second),
		)},
		{"concurrency: full, then a release frees one slot", Limit{Concurrency: 2}, script(
			granted(), granted(),
			refused(ClassConcurrency, time.Second),
			usage(Usage{InUse: 2, Wait: time.Second, Class: ClassConcurrency}),
			release(0, false),
			usage(Usage{InUse: 1}),
			granted(),
			// Lease 0 was held for no time, so lease 1 is overdue.
			refused(ClassConcurrency, 10*ms),
		)},
		{"a refusal by rate takes no slot", Limit{Concurrency: 2, Rate: perSecond(1)}, script(
			granted(),
			refused(ClassRate, time.Second),
			refused(ClassRate, time.Second),
			usage(Usage{InUse: 1, Tokens: 0, Wait: time.Second, Class: ClassRate}),
			advance(time.Second),
			granted(), // the second slot is still free
			// Both limits refuse now; the rate's wait is the longer.
			refused(ClassRate, time.Second),
		)},
		{"a refusal by concurrency takes no token", Limit{Concurrency: 1, Rate: perSecond(5)}, script(
			granted(),
			refused(ClassConcurrency, time.Second),
			refused(ClassConcurrency, time.Second),
			usage(Usage{InUse: 1, Tokens: 4, Wait: time.Second, Class: ClassConcurrency}),
		)},
		{"a refund gives the token back", Limit{Concurrency: 1, Rate: Rate{Count: 1, Period: time.Minute}}, script(
			granted(),
			release(0, true),
			usage(Usage{InUse: 0, Tokens: 1}),
			granted(),
		)},
		{"a release without refund keeps the token spent", Limit{Rate: Rate{Count: 1, Period: time.Minute}}, script(
			granted(),
			release(0, false),
			usage(Usage{InUse: 0, Tokens: 0, Wait: time.Minute, Class: ClassRate}),
			refused(ClassRate, time.Minute),
		)},
		{"a refund does not overfill the bucket", Limit{Rate: Rate{Count: 2, Period: time.Minute}}, script(
			granted(),
			advance(time.Minute),
			release(0, true),
			usage(Usage{InUse: 0, Tokens: 2}),
		)},
		{"a second Release does nothing, even once the lease's record is reused", Limit{Concurrency: 2, Rate: Rate{Count: 3, Period: time.Minute}}, script(
			granted(), granted(),
			release(0, true),
			release(0, true),
			usage(Usage{InUse: 1, Tokens: 2}),
			granted(), // reuses lease 0's record
			release(0, false),
			release(0, true),
			usage(Usage{InUse: 2, Tokens: 1, Wait: time.Second, Class: ClassConcurrency}),
			refused(ClassConcurrency, time.Second),
		)},
		{"the concurrency wait follows the hold times", Limit{Concurrency: 1}, script(
			granted(), // lease 0 at 0s
			advance(200*ms),
			refused(ClassConcurrency, 800*ms), // no history: 1s assumed
			advance(2800*ms),
			release(0, false), // held 3s
			granted(),         // lease 1 at 3s
			advance(time.Second),
			refused(ClassConcurrency, 2*time.Second), // 3s + 3s - 4s
			advance(6*time.Second),
			release(1, false), // held 7s: average 3s + (7s-3s)/4 = 4s
			granted(),         // lease 2 at 10s
			refused(ClassConcurrency, 4*time.Second),
			advance(5*time.Second),
			refused(ClassConcurrency, 10*ms), // overdue: the floor
			release(2, true),                 // refunded: learns nothing
			granted(),                        // lease 3 at 15s
			refused(ClassConcurrency, 4*time.Second),
		)},
		{"a smaller Count caps the bucket", Limit{Rate: perSecond(5)}, script(
			granted(),
			step{"lower the rate to 2/s", func(_ *testing.T, h *harness) { h.lim.Rate = perSecond(2) }},
			usage(Usage{InUse: 1, Tokens: 2}),
			granted(), granted(),
			refused(ClassRate, 500*ms),
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			h := &harness{m: NewMemory(MemoryOptions{Now: clock.Now}), clock: clock, lim: tt.lim}
			defer h.m.Close()
			for i, s := range tt.steps {
				t.Run(fmt.Sprintf("%02d %s", i, s.what), func(t *testing.T) { s.do(t, h) })
				if t.Failed() {
					return
				}
			}
		})
	}
}

// has reports whether m holds key.
func has(m *Memory, key string) bool {
	sh := m.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.keys[key] != nil
}

func mustAcquire(t *testing.T, m *Memory, key string, lim Limit) Lease {
	t.Helper()
	g, err := m.Acquire(context.Background(), key, lim)
	if err != nil {
		t.Fatalf("acquire %q: %v", key, err)
	}
	if !g.Lease.Held() {
		t.Fatalf("acquire %q: refused by %s, wait %s", key, g.Class, g.Wait)
	}
	return g.Lease
}

func TestMemoryEviction(t *testing.T) {
	conc := Limit{Concurrency: 1}
	slow := Limit{Rate: Rate{Count: 10, Period: time.Hour}} // a token per 6 minutes
	tests := []struct {
		name string
		// run uses key "a", touches key "b" to make the shard sweep, and
		// says whether "a" must still be held.
		run  func(t *testing.T, m *Memory, clock *fakeClock)
		want bool
	}{
		{"idle for IdleAfter: evicted", func(t *testing.T, m *Memory, clock *fakeClock) {
			mustAcquire(t, m, "a", conc).Release(false)
			clock.Advance(time.Minute)
			mustAcquire(t, m, "b", conc).Release(false)
		}, false},
		{"idle for less than IdleAfter: kept", func(t *testing.T, m *Memory, clock *fakeClock) {
			mustAcquire(t, m, "a", conc).Release(false)
			clock.Advance(time.Minute - ms)
			mustAcquire(t, m, "b", conc).Release(false)
		}, true},
		{"a lease in flight: kept", func(t *testing.T, m *Memory, clock *fakeClock) {
			mustAcquire(t, m, "a", conc)
			clock.Advance(time.Hour)
			mustAcquire(t, m, "b", conc).Release(false)
		}, true},
		{"a bucket still refilling: kept", func(t *testing.T, m *Memory, clock *fakeClock) {
			mustAcquire(t, m, "a", slow).Release(false) // full again in 6 minutes
			for range 6 {
				clock.Advance(time.Minute)
				mustAcquire(t, m, "b", conc).Release(false)
			}
			clock.Advance(time.Minute - ms)
			mustAcquire(t, m, "b", conc).Release(false)
		}, true},
		{"a bucket full for IdleAfter: evicted", func(t *testing.T, m *Memory, clock *fakeClock) {
			mustAcquire(t, m, "a", slow).Release(false)
			for range 7 {
				clock.Advance(time.Minute)
				mustAcquire(t, m, "b", conc).Release(false)
			}
		}, false},
		{"a refunded token makes the bucket full at once", func(t *testing.T, m *Memory, clock *fakeClock) {
			mustAcquire(t, m, "a", slow).Release(true)
			clock.Advance(time.Minute)
			mustAcquire(t, m, "b", conc).Release(false)
		}, false},
		{"a peek evicts nothing", func(t *testing.T, m *Memory, clock *fakeClock) {
			mustAcquire(t, m, "a", conc).Release(false)
			clock.Advance(time.Hour)
			if _, err := m.Peek(context.Background(), "b", conc); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			// One shard, so that every acquire sweeps the shard of "a".
			m := NewMemory(MemoryOptions{Now: clock.Now, Shards: 1, IdleAfter: time.Minute})
			defer m.Close()
			tt.run(t, m, clock)
			if got := has(m, "a"); got != tt.want {
				t.Errorf("key a held: %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMemoryBoundedByMaxKeys(t *testing.T) {
	clock := newFakeClock()
	const maxKeys = 1000
	m := NewMemory(MemoryOptions{Now: clock.Now, Shards: 8, MaxKeys: maxKeys})
	defer m.Close()
	// The clock stands still: every bucket stays partial, nothing is idle
	// long enough, so only the bound evicts.
	lim := Limit{Concurrency: 1, Rate: Rate{Count: 10, Period: time.Hour}}
	for i := range 100_000 {
		mustAcquire(t, m, fmt.Sprint("key-", i), lim).Release(false)
		if n := m.Len(); n > maxKeys {
			t.Fatalf("after %d keys the store holds %d, more than MaxKeys %d", i+1, n, maxKeys)
		}
	}
}

func TestMemoryBoundedByIdleAfter(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now, IdleAfter: time.Second})
	defer m.Close()
	// A new key every millisecond, idle a second later: about a thousand
	// keys are due to be live at any time, plus those a shard has not swept
	// yet (a shard sweeps when one of its own keys is acquired). Without
	// eviction the store would reach 100,000.
	lim := Limit{Concurrency: 1, Rate: Rate{Count: 5, Period: 10 * ms}}
	most := 0
	for i := range 100_000 {
		mustAcquire(t, m, fmt.Sprint("key-", i), lim).Release(false)
		clock.Advance(ms)
		if i%10 == 0 {
			most = max(most, m.Len())
		}
	}
	if most > 1500 {
		t.Fatalf("the store held up to %d keys, want about 1000 (those of the last IdleAfter)", most)
	}
}

func TestMemoryMaxKeysEvictsLeastRecentlyReleased(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now, Shards: 1, MaxKeys: 3})
	defer m.Close()
	lim := Limit{Concurrency: 1}
	for _, k := range []string{"a", "b", "c", "a"} {
		mustAcquire(t, m, k, lim).Release(false)
		clock.Advance(ms)
	}
	mustAcquire(t, m, "d", lim)
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if has(m, k) != want {
			t.Errorf("key %s held: %v, want %v", k, !want, want)
		}
	}
}

func TestMemoryFullOfLeasesRefusesNewKeys(t *testing.T) {
	m := NewMemory(MemoryOptions{Shards: 1, MaxKeys: 4})
	defer m.Close()
	lim := Limit{Concurrency: 1}
	var first Lease
	for i := range 4 {
		l := mustAcquire(t, m, fmt.Sprint("held-", i), lim)
		if i == 0 {
			first = l
		}
	}
	_, err := m.Acquire(context.Background(), "new", lim)
	if !errors.Is(err, ErrStore) {
		t.Fatalf("acquire of a fifth key: error %v, want one wrapping ErrStore", err)
	}
	first.Release(false)
	mustAcquire(t, m, "new", lim)
	if n := m.Len(); n != 4 {
		t.Fatalf("Len %d, want 4", n)
	}
	if has(m, "held-0") {
		t.Fatal("the released key was not the one evicted")
	}
}

func TestMemoryPeekChangesNothing(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now})
	defer m.Close()
	ctx := context.Background()
	lim := Limit{Concurrency: 1, Rate: Rate{Count: 2, Period: time.Second}}

	u, err := m.Peek(ctx, "unknown", lim)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{Tokens: 2}); u != want {
		t.Fatalf("peek of an unknown key: %+v, want %+v", u, want)
	}
	if m.Len() != 0 {
		t.Fatal("peek created the key")
	}

	mustAcquire(t, m, "k", lim)
	want := Usage{InUse: 1, Tokens: 1, Wait: time.Second, Class: ClassConcurrency}
	for range 10 {
		if u, _ := m.Peek(ctx, "k", lim); u != want {
			t.Fatalf("peek: %+v, want %+v", u, want)
		}
	}
	// What an acquire sees is what it would have seen without the peeks.
	if g, _ := m.Acquire(ctx, "k", lim); g.Lease.Held() || g.Class != ClassConcurrency || g.Wait != time.Second {
		t.Fatalf("acquire after peeks: %+v, want a concurrency refusal with wait 1s", g)
	}
}

func TestMemoryConcurrentInvariants(t *testing.T) {
	clock := newFakeClock() // standing still: no token comes back by itself
	m := NewMemory(MemoryOptions{Now: clock.Now})
	defer m.Close()
	const (
		concurrency = 3
		tokens      = 500
		workers     = 16
		rounds      = 2000
	)
	lim := Limit{Concurrency: concurrency, Rate: Rate{Count: tokens, Period: time.Hour}}
	var inFlight, most, spent atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				g, err := m.Acquire(context.Background(), "shared", lim)
				if err != nil {
					t.Error(err)
					return
				}
				if !g.Lease.Held() {
					continue
				}
				n := inFlight.Add(1)
				for old := most.Load(); n > old && !most.CompareAndSwap(old, n); old = most.Load() {
				}
				runtime.Gosched()
				inFlight.Add(-1)
				refund := (w+i)%2 == 0
				if !refund {
					spent.Add(1)
				}
				g.Lease.Release(refund)
				g.Lease.Release(!refund) // a second call must not count
			}
		})
	}
	wg.Wait()
	if most.Load() > concurrency {
		t.Errorf("%d leases were in flight at once, the limit is %d", most.Load(), concurrency)
	}
	if spent.Load() == 0 || spent.Load() > tokens {
		t.Errorf("%d tokens spent, want between 1 and %d", spent.Load(), tokens)
	}
	u, err := m.Peek(context.Background(), "shared", lim)
	if err != nil {
		t.Fatal(err)
	}
	if u.InUse != 0 || u.Tokens != float64(tokens-spent.Load()) {
		t.Errorf("at the end: %+v, want nothing in use and %d tokens", u, tokens-spent.Load())
	}
}

func TestMemoryAllocations(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	defer m.Close()
	ctx := context.Background()
	lim := Limit{Concurrency: 10, Rate: Rate{Count: 1e9, Period: time.Second}}
	mustAcquire(t, m, "steady", lim).Release(false)
	allocs := testing.AllocsPerRun(1000, func() {
		g, _ := m.Acquire(ctx, "steady", lim)
		g.Lease.Release(false)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per acquire and release of an existing key, want none", allocs)
	}
}

// A lease is a value naming a reused record: once released, a copy of it
// released again does nothing, even after the record stands for another
// lease.
func TestMemoryStaleLeaseCopy(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	defer m.Close()
	ctx := context.Background()
	lim := Limit{Concurrency: 1}
	first := mustAcquire(t, m, "k", lim)
	stale := first
	first.Release(false)
	second := mustAcquire(t, m, "k", lim) // reuses the record
	stale.Release(false)                  // must not free second's slot
	if g, _ := m.Acquire(ctx, "k", lim); g.Lease.Held() {
		t.Fatal("a stale copy of a released lease freed another lease's slot")
	}
	second.Release(false)
	if g, _ := m.Acquire(ctx, "k", lim); !g.Lease.Held() {
		t.Fatal("the slot was not freed by its own lease")
	}
}

func TestMemoryErrorsAndEdges(t *testing.T) {
	ctx := context.Background()
	t.Run("invalid limits", func(t *testing.T) {
		m := NewMemory(MemoryOptions{})
		defer m.Close()
		for _, lim := range []Limit{
			{Concurrency: -1},
			{Rate: Rate{Count: -1, Period: time.Second}},
			{Rate: Rate{Count: 1}},
		} {
			if _, err := m.Acquire(ctx, "k", lim); err == nil {
				t.Errorf("acquire with %+v: no error", lim)
			}
			if _, err := m.Peek(ctx, "k", lim); err == nil {
				t.Errorf("peek with %+v: no error", lim)
			}
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		m := NewMemory(MemoryOptions{})
		defer m.Close()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := m.Acquire(cctx, "k", Limit{Concurrency: 1}); !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
	t.Run("no limit keeps no state", func(t *testing.T) {
		m := NewMemory(MemoryOptions{})
		defer m.Close()
		g, err := m.Acquire(ctx, "k", Limit{})
		if err != nil || !g.Lease.Held() {
			t.Fatalf("acquire without limits: %+v, %v", g, err)
		}
		g.Lease.Release(false)
		if m.Len() != 0 {
			t.Error("a key without limits was stored")
		}
	})
	t.Run("closed", func(t *testing.T) {
		m := NewMemory(MemoryOptions{})
		held := mustAcquire(t, m, "k", Limit{Concurrency: 1})
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		held.Release(false) // must not panic or resurrect anything
		if _, err := m.Acquire(ctx, "k", Limit{Concurrency: 1}); !errors.Is(err, ErrStore) {
			t.Errorf("acquire after Close: %v, want an error wrapping ErrStore", err)
		}
		if _, err := m.Peek(ctx, "k", Limit{Concurrency: 1}); !errors.Is(err, ErrStore) {
			t.Errorf("peek after Close: %v, want an error wrapping ErrStore", err)
		}
		if m.Len() != 0 {
			t.Error("Close kept keys")
		}
	})
	t.Run("shard counts", func(t *testing.T) {
		for _, c := range []struct{ shards, maxKeys, want int }{
			{0, 0, 64}, {1, 0, 1}, {3, 0, 4}, {64, 2, 2}, {1 << 30, 0, 1 << 16},
		} {
			m := NewMemory(MemoryOptions{Shards: c.shards, MaxKeys: c.maxKeys})
			if got := len(m.shards); got != c.want {
				t.Errorf("Shards %d, MaxKeys %d: %d shards, want %d", c.shards, c.maxKeys, got, c.want)
			}
		}
	})
}

// FuzzMemory drives one shard with three keys through acquires, releases,
// refunds, repeated releases and clock steps, with room for two keys only,
// and checks after every step that the store agrees with a count of the
// leases held: Peek predicts each acquire exactly, slots in use are the
// leases not yet released, the bucket stays within [0, Count], and a new
// key is refused for room only when every key held has a lease in flight.
func FuzzMemory(f *testing.F) {
	f.Add([]byte{1, 2, 0, 0, 0, 1, 6, 4, 13, 8, 3, 0, 0})
	f.Add([]byte{3, 0, 0, 4, 8, 0, 1, 5, 2, 2, 7, 11})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		lim := Limit{Concurrency: int(data[0] % 4), Rate: Rate{Count: int(data[1] % 4), Period: time.Second}}
		if lim.Concurrency == 0 && lim.Rate.Count == 0 {
			lim.Concurrency = 1 // else nothing is counted
		}
		clock := newFakeClock()
		m := NewMemory(MemoryOptions{Now: clock.Now, Shards: 1, MaxKeys: 2, IdleAfter: 100 * ms})
		defer m.Close()
		ctx := context.Background()
		keys := []string{"a", "b", "c"}
		type held struct {
			key   string
			lease Lease
		}
		var leases []held
		inUse := map[string]int{}
		for _, b := range data[2:] {
			arg := int(b >> 2)
			switch b % 4 {
			case 0: // acquire
				k := keys[arg%len(keys)]
				u, err := m.Peek(ctx, k, lim)
				if err != nil {
					t.Fatal(err)
				}
				g, err := m.Acquire(ctx, k, lim)
				if err != nil {
					busy := 0
					for _, n := range inUse {
						busy += min(n, 1)
					}
					if !errors.Is(err, ErrStore) || inUse[k] > 0 || busy < 2 {
						t.Fatalf("acquire %s: %v with %d keys busy", k, err, busy)
					}
					continue
				}
				if (g.Lease.Held()) != (u.Wait == 0) || g.Class != u.Class || g.Wait != u.Wait {
					t.Fatalf("acquire %s: %+v after peek %+v", k, g, u)
				}
				if g.Lease.Held() {
					leases = append(leases, held{k, g.Lease})
					inUse[k]++
				}
			case 1, 3: // release, with refund when 3
				if len(leases) == 0 {
					continue
				}
				i := arg % len(leases)
				leases[i].lease.Release(b%4 == 3)
				inUse[leases[i].key]--
				leases = append(leases[:i], leases[i+1:]...)
			case 2: // a step of the clock, or a repeated release
				if arg%2 == 0 {
					clock.Advance(time.Duration(arg) * 10 * ms)
				} else {
					NewLease(nil).Release(false)
					for _, l := range leases[:min(1, len(leases))] {
						l.lease.Release(false)
						inUse[l.key]--
						l.lease.Release(true)
						leases = leases[1:]
					}
				}
			}
			for _, k := range keys {
				u, err := m.Peek(ctx, k, lim)
				if err != nil {
					t.Fatal(err)
				}
				if u.InUse != inUse[k] {
					t.Fatalf("key %s: %d in use, %d leases held", k, u.InUse, inUse[k])
				}
				if u.Tokens < 0 || u.Tokens > float64(lim.Rate.Count) {
					t.Fatalf("key %s: %v tokens, Count %d", k, u.Tokens, lim.Rate.Count)
				}
				if lim.Concurrency > 0 && u.InUse > lim.Concurrency {
					t.Fatalf("key %s: %d in use, limit %d", k, u.InUse, lim.Concurrency)
				}
			}
		}
	})
}
