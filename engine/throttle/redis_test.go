package throttle

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/redisbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// redisBed is a Redis deployment the store tests run against.
type redisBed struct {
	name    string
	addrs   []string
	cluster bool
	// masters are the servers holding data, for INFO.
	masters func(t testing.TB) []*redisbed.Server
}

// startRedisBeds starts a single redis-server and a 3-master Redis
// Cluster; they stop when t ends.
func startRedisBeds(t *testing.T) []redisBed {
	t.Helper()
	single := redisbed.Start(t, redisbed.Options{})
	cluster := redisbed.StartCluster(t, redisbed.ClusterOptions{Masters: 3})
	return []redisBed{
		{name: "single", addrs: []string{single.Addr},
			masters: func(testing.TB) []*redisbed.Server { return []*redisbed.Server{single} }},
		{name: "cluster", addrs: cluster.Addrs(), cluster: true, masters: cluster.Masters},
	}
}

// store opens a store on the bed (a "process" of the fleet), closed when
// the test ends; mod changes the options first.
func (b redisBed) store(t testing.TB, mod func(*RedisOptions)) *Redis {
	t.Helper()
	o := RedisOptions{Addrs: b.addrs, Cluster: b.cluster}
	if mod != nil {
		mod(&o)
	}
	r, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// inspect returns a plain client of the bed, for the test to look at
// what the store wrote.
func (b redisBed) inspect(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: b.addrs, IsClusterMode: b.cluster, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// redisKeys are the Redis keys the store uses for key, with the default
// prefix: leases, starts, bucket, hold.
func redisKeys(key string) []string { return keys("{" + defaultRedisPrefix + key + "}") }

func mustGrant(t testing.TB, s Store, key string, lim Limit) Lease {
	t.Helper()
	g, err := s.Acquire(context.Background(), key, lim)
	if err != nil {
		t.Fatalf("acquire %q: %v", key, err)
	}
	if !g.Lease.Held() {
		t.Fatalf("acquire %q refused (%s, wait %s), want a lease", key, g.Class, g.Wait)
	}
	return g.Lease
}

func mustRefuse(t testing.TB, s Store, key string, lim Limit, class Class) Grant {
	t.Helper()
	g, err := s.Acquire(context.Background(), key, lim)
	if err != nil {
		t.Fatalf("acquire %q: %v", key, err)
	}
	if g.Lease.Held() {
		g.Lease.Release(true)
		t.Fatalf("acquire %q granted, want a refusal by %s", key, class)
	}
	if g.Class != class {
		t.Fatalf("acquire %q refused by %q (wait %s), want %q", key, g.Class, g.Wait, class)
	}
	return g
}

// redisTime reads the server's clock.
func redisTime(t testing.TB, c redis.UniversalClient) time.Time {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return now
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still not %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// abandon makes r behave like a process killed with -9: renewal stops and
// the connections close, without releasing anything.
func (r *Redis) abandon() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.stop)
		<-r.done
		r.closeErr = r.c.Close()
	})
}

// TestRedis runs the store's behaviour on a single node and on a 3-master
// Cluster.
func TestRedis(t *testing.T) {
	for _, bed := range startRedisBeds(t) {
		t.Run(bed.name, func(t *testing.T) {
			t.Run("AcquireRefuseRelease", func(t *testing.T) { testRedisAcquireRefuseRelease(t, bed) })
			t.Run("RateExactAcrossStores", func(t *testing.T) { testRedisRateAcrossStores(t, bed) })
			t.Run("ConcurrencyNeverExceeded", func(t *testing.T) { testRedisConcurrencyInvariant(t, bed) })
			t.Run("LeaseExpiresWithoutRenewal", func(t *testing.T) { testRedisLeaseExpiry(t, bed) })
			t.Run("CloseReleasesLeases", func(t *testing.T) { testRedisCloseReleases(t, bed) })
			t.Run("WaitFollowsHoldTimes", func(t *testing.T) { testRedisHoldAverage(t, bed) })
			t.Run("PeekChangesNothing", func(t *testing.T) { testRedisPeek(t, bed) })
			t.Run("ServerClockAndTTLs", func(t *testing.T) { testRedisServerClock(t, bed) })
			t.Run("OneRoundTripPerAcquire", func(t *testing.T) { testRedisRoundTrips(t, bed) })
			t.Run("Ping", func(t *testing.T) {
				if err := bed.store(t, nil).Ping(context.Background()); err != nil {
					t.Fatal(err)
				}
			})
			if bed.cluster {
				t.Run("KeysSpreadOverSlots", func(t *testing.T) { testRedisSlots(t, bed) })
			}
		})
	}
}

// testRedisAcquireRefuseRelease walks one key through both limits: slots
// taken and refused, a release freeing a slot, a double release counting
// once, the longer wait winning when both limits refuse, a refund giving
// the token back.
func testRedisAcquireRefuseRelease(t *testing.T, bed redisBed) {
	s := bed.store(t, nil)
	key := "acquire\x00example.net"
	lim := Limit{Concurrency: 2, Rate: Rate{Count: 3, Period: time.Hour}}
	a := mustGrant(t, s, key, lim)
	b := mustGrant(t, s, key, lim)
	g := mustRefuse(t, s, key, lim, ClassConcurrency)
	// No lease of this key ended yet: the estimate is the oldest start
	// plus the default hold time (1s).
	if g.Wait < waitFloor || g.Wait > defaultHold {
		t.Errorf("concurrency wait %s, want within [%s, %s]", g.Wait, waitFloor, defaultHold)
	}
	a.Release(false)
	c := mustGrant(t, s, key, lim) // the last token
	a.Release(false)               // counts once: the slot stays with c
	// Slots full and bucket empty: the rate's wait (20 minutes a token)
	// is the longer one.
	g = mustRefuse(t, s, key, lim, ClassRate)
	if g.Wait <= 19*time.Minute || g.Wait > 20*time.Minute {
		t.Errorf("rate wait %s, want about 20m", g.Wait)
	}
	b.Release(true) // refund: the slot and the token come back
	d := mustGrant(t, s, key, lim)
	mustRefuse(t, s, key, lim, ClassRate)
	c.Release(false)
	d.Release(false)
	u, err := s.Peek(context.Background(), key, lim)
	if err != nil {
		t.Fatal(err)
	}
	if u.InUse != 0 || u.Tokens >= 1 || u.Class != ClassRate {
		t.Errorf("usage after releasing all %+v, want nothing in use, no token, class rate", u)
	}
}

// testRedisRateAcrossStores has many goroutines of three stores (three
// "processes") draw from one bucket of 10 tokens per hour: exactly 10
// are granted, the rest refused by rate.
func testRedisRateAcrossStores(t *testing.T, bed redisBed) {
	const count = 10
	stores := []*Redis{bed.store(t, nil), bed.store(t, nil), bed.store(t, nil)}
	key := "rate\x00example.net"
	lim := Limit{Rate: Rate{Count: count, Period: time.Hour}}
	var granted, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 30 {
		wg.Go(func() {
			s := stores[i%len(stores)]
			for range 4 {
				g, err := s.Acquire(context.Background(), key, lim)
				switch {
				case err != nil:
					errs <- err
					return
				case g.Lease.Held():
					granted.Add(1)
					g.Lease.Release(false)
				case g.Class != ClassRate || g.Wait <= 0 || g.Wait > 6*time.Minute:
					errs <- fmt.Errorf("refusal %s with wait %s, want rate within 6m", g.Class, g.Wait)
					return
				default:
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if granted.Load() != count || refused.Load() != 120-count {
		t.Fatalf("%d granted, %d refused; want exactly %d granted of 120", granted.Load(), refused.Load(), count)
	}
}

// testRedisConcurrencyInvariant has many goroutines of three stores take
// and release slots of one key limited to 3; an atomic counts deliveries
// "in flight" and must never exceed 3.
func testRedisConcurrencyInvariant(t *testing.T, bed redisBed) {
	const limit = 3
	stores := []*Redis{bed.store(t, nil), bed.store(t, nil), bed.store(t, nil)}
	key := "concurrency\x00example.net"
	lim := Limit{Concurrency: limit}
	var inFlight, most, granted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 12 {
		wg.Go(func() {
			s := stores[i%len(stores)]
			for range 25 {
				g, err := s.Acquire(context.Background(), key, lim)
				if err != nil {
					errs <- err
					return
				}
				if !g.Lease.Held() {
					continue
				}
				granted.Add(1)
				n := inFlight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				runtime.Gosched()
				inFlight.Add(-1)
				g.Lease.Release(false)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if most.Load() > limit {
		t.Fatalf("%d deliveries in flight at once, limit %d", most.Load(), limit)
	}
	if granted.Load() == 0 {
		t.Fatal("nothing granted")
	}
	u, err := stores[0].Peek(context.Background(), key, lim)
	if err != nil {
		t.Fatal(err)
	}
	if u.InUse != 0 {
		t.Fatalf("%d slots in use after every lease was released", u.InUse)
	}
	t.Logf("%d granted, at most %d in flight", granted.Load(), most.Load())
}

// testRedisLeaseExpiry: a held lease is renewed past its first expiry
// while its store lives; once the store stops renewing (a process killed
// with -9), the slot frees after LeaseTTL, not before.
func testRedisLeaseExpiry(t *testing.T, bed redisBed) {
	ttl := func(o *RedisOptions) { o.LeaseTTL = time.Second }
	a, b := bed.store(t, ttl), bed.store(t, ttl)
	c := bed.inspect(t)
	key := "expiry\x00example.net"
	lim := Limit{Concurrency: 1}
	mustGrant(t, a, key, lim)
	leaseExpiry := func() float64 {
		t.Helper()
		z, err := c.ZRangeWithScores(context.Background(), redisKeys(key)[0], 0, -1).Result()
		if err != nil || len(z) != 1 {
			t.Fatalf("leases of %q: %v, %v; want one", key, z, err)
		}
		return z[0].Score
	}
	first := leaseExpiry()
	// Wait on Redis's clock until the first expiry has passed: the lease
	// must have been renewed, and still hold the slot.
	eventually(t, 10*time.Second, "past the first expiry", func() bool {
		return float64(redisTime(t, c).UnixMilli()) > first+100
	})
	if leaseExpiry() <= first {
		t.Fatal("the lease was not renewed")
	}
	mustRefuse(t, b, key, lim, ClassConcurrency)

	a.abandon()
	last := leaseExpiry()
	eventually(t, 10*time.Second, "granted after the abandoned lease expired", func() bool {
		g, err := b.Acquire(context.Background(), key, lim)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Lease.Held() {
			return false
		}
		if now := float64(redisTime(t, c).UnixMilli()); now < last {
			t.Fatalf("granted at %v, before the abandoned lease's expiry %v", now, last)
		}
		return true
	})
}

// testRedisCloseReleases: Close releases the leases its store holds, so
// another store gets the slot at once rather than after LeaseTTL; the
// closed store refuses work with ErrStore.
func testRedisCloseReleases(t *testing.T, bed redisBed) {
	a, b := bed.store(t, nil), bed.store(t, nil)
	key := "close\x00example.net"
	lim := Limit{Concurrency: 1}
	l := mustGrant(t, a, key, lim)
	mustRefuse(t, b, key, lim, ClassConcurrency)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	mustGrant(t, b, key, lim) // LeaseTTL is 30s: only Close can have freed it
	l.Release(false)          // after Close: does nothing, must not panic
	if _, err := a.Acquire(context.Background(), key, lim); !errors.Is(err, ErrStore) {
		t.Fatalf("acquire on a closed store: %v, want ErrStore", err)
	}
}

// testRedisHoldAverage: the first release sets the key's average hold
// time to the time held; a refund leaves it alone; later releases move it
// a quarter of the way; a concurrency refusal waits the average minus the
// oldest lease's age.
func testRedisHoldAverage(t *testing.T, bed redisBed) {
	s := bed.store(t, nil)
	c := bed.inspect(t)
	ctx := context.Background()
	key := "hold\x00example.net"
	hold := redisKeys(key)[3]
	lim := Limit{Concurrency: 1}
	avg := func() int64 {
		t.Helper()
		v, err := c.Get(ctx, hold).Int64()
		if err != nil {
			t.Fatalf("GET %s: %v", hold, err)
		}
		return v
	}

	l := mustGrant(t, s, key, lim)
	z, err := c.ZRangeWithScores(ctx, redisKeys(key)[1], 0, -1).Result()
	if err != nil || len(z) != 1 {
		t.Fatalf("lease starts: %v, %v; want one", z, err)
	}
	start := int64(z[0].Score)
	eventually(t, 10*time.Second, "300ms held", func() bool { return redisTime(t, c).UnixMilli() >= start+300 })
	l.Release(false)
	if got := avg(); got < 300 {
		t.Fatalf("average hold %dms after holding 300ms or more", got)
	}

	// From a known average on: 5s.
	if err := c.Set(ctx, hold, "5000", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	l = mustGrant(t, s, key, lim)
	g := mustRefuse(t, s, key, lim, ClassConcurrency)
	if g.Wait <= 4*time.Second || g.Wait > 5*time.Second {
		t.Errorf("concurrency wait %s, want the 5s average minus the lease's age", g.Wait)
	}
	l.Release(true)
	if got := avg(); got != 5000 {
		t.Fatalf("average %dms after a refund, want 5000 unchanged", got)
	}
	mustGrant(t, s, key, lim).Release(false) // held a few ms
	if got := avg(); got < 3750 || got > 3850 {
		t.Fatalf("average %dms after a short hold, want 5000 + (hold-5000)/4, about 3750", got)
	}
}

// testRedisPeek: Peek of an unknown key shows a full bucket; Peek of a
// used key reports it and changes none of its Redis keys, not even an
// expired lease (it runs read-only, EVALSHA_RO).
func testRedisPeek(t *testing.T, bed redisBed) {
	ctx := context.Background()
	s := bed.store(t, nil)
	c := bed.inspect(t)
	lim := Limit{Concurrency: 1, Rate: Rate{Count: 2, Period: time.Hour}}
	u, err := s.Peek(ctx, "peek\x00unknown.example", lim)
	if err != nil {
		t.Fatal(err)
	}
	if (u != Usage{Tokens: 2}) {
		t.Fatalf("usage of an unknown key %+v, want a full bucket and nothing else", u)
	}

	// Two stores hold a slot each: a's lease lives 1s, b's an hour, and
	// so does the key.
	key := "peek\x00example.net"
	lim.Concurrency = 2
	a := bed.store(t, func(o *RedisOptions) { o.LeaseTTL = time.Second })
	b := bed.store(t, func(o *RedisOptions) { o.LeaseTTL = time.Hour })
	mustGrant(t, a, key, lim)
	mustGrant(t, b, key, lim)
	u, err = s.Peek(ctx, key, lim)
	if err != nil {
		t.Fatal(err)
	}
	if u.InUse != 2 || u.Tokens > 0.01 || u.Class != ClassRate || u.Wait <= 29*time.Minute || u.Wait > 30*time.Minute {
		t.Fatalf("usage %+v, want 2 in use, no token, a rate wait of about 30m", u)
	}
	// a dies: once its lease has expired, Peek reports the slot free but
	// leaves the expired lease listed (only an acquire removes it).
	a.abandon()
	eventually(t, 10*time.Second, "the abandoned lease expired", func() bool {
		u, err = s.Peek(ctx, key, lim)
		return err == nil && u.InUse == 1
	})
	if u.Class != ClassRate {
		t.Fatalf("usage %+v, want a slot free and the rate refusing", u)
	}
	dump := func() string {
		t.Helper()
		var b strings.Builder
		for _, k := range redisKeys(key) {
			v, err := c.Dump(ctx, k).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s=%q\n", k, v)
		}
		return b.String()
	}
	before := dump()
	for range 3 {
		if _, err := s.Peek(ctx, key, lim); err != nil {
			t.Fatal(err)
		}
	}
	if after := dump(); after != before {
		t.Fatalf("Peek changed the keys:\nbefore %s\nafter %s", before, after)
	}
	if n, _ := c.ZCard(ctx, redisKeys(key)[0]).Result(); n != 2 {
		t.Fatalf("%d leases listed, want 2: the expired one too", n)
	}
}

// testRedisServerClock: the script stamps the bucket and the lease with
// Redis's TIME (read in the script, which Redis 7 allows before writes),
// and every key it writes has a TTL, so idle keys vanish.
func testRedisServerClock(t *testing.T, bed redisBed) {
	ctx := context.Background()
	s := bed.store(t, func(o *RedisOptions) { o.LeaseTTL = 10 * time.Second })
	c := bed.inspect(t)
	key := "clock\x00example.net"
	k := redisKeys(key)
	lim := Limit{Concurrency: 5, Rate: Rate{Count: 5, Period: time.Minute}}

	before := redisTime(t, c).UnixMilli()
	l := mustGrant(t, s, key, lim)
	after := redisTime(t, c).UnixMilli()
	ts, err := c.HGet(ctx, k[2], "ts").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if ts < before || ts > after {
		t.Errorf("bucket stamped %d, outside Redis TIME [%d, %d]", ts, before, after)
	}
	exp, err := c.ZRangeWithScores(ctx, k[0], 0, -1).Result()
	if err != nil || len(exp) != 1 {
		t.Fatalf("leases: %v, %v", exp, err)
	}
	if e := int64(exp[0].Score); e < before+10_000 || e > after+10_000 {
		t.Errorf("lease expires at %d, want Redis TIME + 10s within [%d, %d]", e, before+10_000, after+10_000)
	}
	l.Release(false)
	for i, max := range []time.Duration{10 * time.Second, 10 * time.Second, time.Minute / 5, time.Hour} {
		ttl, err := c.PTTL(ctx, k[i]).Result()
		if err != nil {
			t.Fatal(err)
		}
		// -2: gone (an emptied sorted set); -1 (no TTL) must never be.
		if ttl == -1 || ttl > max {
			t.Errorf("PTTL %s = %s, want a TTL of at most %s", k[i], ttl, max)
		}
	}
	// A bucket full again is deleted: take a token of a fresh key, and
	// refund it.
	k = redisKeys(key + "-refund")
	l = mustGrant(t, s, key+"-refund", Limit{Rate: lim.Rate})
	if n, err := c.Exists(ctx, k[2]).Result(); err != nil || n != 1 {
		t.Fatalf("bucket after taking a token: exists %d, %v", n, err)
	}
	l.Release(true)
	if n, err := c.Exists(ctx, k[2]).Result(); err != nil || n != 0 {
		t.Fatalf("bucket full again after the refund: exists %d, %v; want it deleted", n, err)
	}
}

// testRedisRoundTrips watches every master with MONITOR while the store
// makes n acquires, then n releases: Redis receives one EVALSHA for each,
// nothing else (the commands the script runs are not round trips).
func testRedisRoundTrips(t *testing.T, bed redisBed) {
	const n = 20
	s := bed.store(t, func(o *RedisOptions) { o.LeaseTTL = time.Hour }) // no renewal meanwhile
	key := "roundtrips\x00example.net"
	lim := Limit{Concurrency: 100, Rate: Rate{Count: 100, Period: time.Second}}
	mustGrant(t, s, key, lim).Release(false) // connects, and loads the scripts
	var mons []*redisbed.Monitor
	for _, m := range bed.masters(t) {
		mons = append(mons, m.Monitor(t))
	}
	sent := func() map[string]int {
		t.Helper()
		count := map[string]int{}
		for _, m := range mons {
			for _, c := range m.Next(t) {
				if c.Client != "lua" {
					count[c.Name]++
				}
			}
		}
		return count
	}
	leases := make([]Lease, n)
	for i := range leases {
		leases[i] = mustGrant(t, s, key, lim)
	}
	if got := sent(); len(got) != 1 || got["evalsha"] != n {
		t.Errorf("commands sent for %d acquires: %v, want evalsha=%d only", n, got, n)
	}
	for _, l := range leases {
		l.Release(false)
	}
	if got := sent(); len(got) != 1 || got["evalsha"] != n {
		t.Errorf("commands sent for %d releases: %v, want evalsha=%d only", n, got, n)
	}
}

// testRedisSlots: keys spread over all three masters, and the Redis keys
// of one throttle key share one slot (else the script would fail with
// CROSSSLOT).
func testRedisSlots(t *testing.T, bed redisBed) {
	s := bed.store(t, nil)
	c := bed.inspect(t)
	ctx := context.Background()
	lim := Limit{Concurrency: 1, Rate: Rate{Count: 1, Period: time.Minute}}
	slots := map[int64]bool{}
	nodes := map[string]bool{}
	for i := range 40 {
		key := fmt.Sprintf("slots\x00domain-%d.example", i)
		mustGrant(t, s, key, lim)
		var slot int64 = -1
		for _, k := range redisKeys(key) {
			ks, err := c.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if slot >= 0 && ks != slot {
				t.Fatalf("the keys of %q are in slots %d and %d", key, slot, ks)
			}
			slot = ks
		}
		slots[slot] = true
		n, err := c.(*redis.ClusterClient).MasterForKey(ctx, redisKeys(key)[0])
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.Options().Addr] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("40 keys in %d slots landed on %d masters, want all 3", len(slots), len(nodes))
	}
}

// TestRedisServerRestart stops the server under a store: acquires fail
// with ErrStore; after a restart (which also empties the script cache)
// they work again. Then it freezes the server: an acquire fails with
// ErrStore at its Timeout (a deadline error), and works once it thaws.
func TestRedisServerRestart(t *testing.T) {
	srv := redisbed.Start(t, redisbed.Options{})
	bed := redisBed{addrs: []string{srv.Addr}}
	s := bed.store(t, func(o *RedisOptions) { o.Timeout = 500 * time.Millisecond })
	key := "restart\x00example.net"
	lim := Limit{Concurrency: 10, Rate: Rate{Count: 100, Period: time.Second}}
	mustGrant(t, s, key, lim).Release(false)
	srv.Stop(t)
	for range 3 {
		if _, err := s.Acquire(context.Background(), key, lim); !errors.Is(err, ErrStore) {
			t.Fatalf("acquire with Redis stopped: %v, want ErrStore", err)
		} else {
			t.Logf("Redis stopped: %v", err)
		}
	}
	if err := s.Ping(context.Background()); !errors.Is(err, ErrStore) {
		t.Fatalf("ping with Redis stopped: %v, want ErrStore", err)
	}
	srv.Restart(t)
	works := func() bool {
		g, err := s.Acquire(context.Background(), key, lim)
		if err == nil && g.Lease.Held() {
			g.Lease.Release(false)
		}
		return err == nil && g.Lease.Held()
	}
	eventually(t, 15*time.Second, "acquiring again after the restart", works)

	// A hung server (SIGSTOP) answers nothing: the acquire gives up at
	// its Timeout, with a deadline error wrapped in ErrStore.
	srv.Pause(t)
	_, err := s.Acquire(context.Background(), key, lim)
	if !errors.Is(err, ErrStore) || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)) {
		t.Fatalf("acquire with Redis hung: %v, want ErrStore and a deadline", err)
	}
	t.Logf("Redis hung: %v", err)
	srv.Resume(t)
	eventually(t, 15*time.Second, "acquiring again after the server resumed", works)
}

// TestRedisClusterFailover kills (SIGKILL) the master holding a key in a
// 3-master, 3-replica Cluster: acquires of that key fail with ErrStore
// until the replica takes over, then resume, within a bound.
func TestRedisClusterFailover(t *testing.T) {
	cl := redisbed.StartCluster(t, redisbed.ClusterOptions{Masters: 3, Replicas: 1})
	bed := redisBed{addrs: cl.Addrs(), cluster: true}
	s := bed.store(t, func(o *RedisOptions) { o.Timeout = 500 * time.Millisecond })
	key := "failover\x00example.net"
	lim := Limit{Concurrency: 10, Rate: Rate{Count: 1000, Period: time.Second}}
	mustGrant(t, s, key, lim).Release(false)
	old := cl.MasterOf(t, redisKeys(key)[0])
	old.Kill(t)
	failures := 0
	eventually(t, 30*time.Second, "acquiring again after the failover", func() bool {
		g, err := s.Acquire(context.Background(), key, lim)
		if err != nil {
			if !errors.Is(err, ErrStore) {
				t.Fatalf("acquire during failover: %v, want ErrStore", err)
			}
			failures++
			return false
		}
		g.Lease.Release(false)
		return true
	})
	if now := cl.MasterOf(t, redisKeys(key)[0]); now == old {
		t.Fatalf("key still served by the killed master %s", old.Addr)
	}
	t.Logf("%d acquires failed during the failover", failures)
}

// TestRedisAuthAndErrors: a password is sent and works; a wrong one fails
// with ErrStore and the password appears in no error; a server that is
// not there fails with ErrStore.
func TestRedisAuthAndErrors(t *testing.T) {
	const secret = "pw-9f2c1e"
	srv := redisbed.Start(t, redisbed.Options{Password: secret})
	lim := Limit{Concurrency: 1}
	ok, err := NewRedis(RedisOptions{Addrs: []string{srv.Addr}, Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	mustGrant(t, ok, "auth", lim).Release(false)

	for _, o := range []RedisOptions{
		{Addrs: []string{srv.Addr}, Password: secret + "-wrong"},
		{Addrs: []string{srv.Addr}, Username: "nobody", Password: secret},
		{Addrs: []string{testbed.Addr("127.0.0.1", testbed.FreePort(t, "127.0.0.1"))}, Password: secret, Timeout: 300 * time.Millisecond},
	} {
		r, err := NewRedis(o)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Acquire(context.Background(), "auth", lim)
		perr := r.Ping(context.Background())
		r.Close()
		for _, err := range []error{err, perr} {
			if !errors.Is(err, ErrStore) {
				t.Fatalf("%s: %v, want ErrStore", o, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the password: %v", err)
			}
		}
		t.Logf("%s: %v", o, err)
	}
}

// TestRedisTLS talks to a TLS-only server (rediss://), checking its
// certificate against the test's CA; a client without that CA fails.
func TestRedisTLS(t *testing.T) {
	ca := smtpbed.NewCA(t)
	leaf := ca.Issue(t, "127.0.0.1")
	srv := redisbed.Start(t, redisbed.Options{TLSCertFile: leaf.CertFile, TLSKeyFile: leaf.KeyFile,
		ClientTLS: &tls.Config{RootCAs: ca.Pool}})
	o, err := ParseURL("rediss://" + srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	o.TLS.RootCAs = ca.Pool
	r, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mustGrant(t, r, "tls", Limit{Concurrency: 1}).Release(false)

	o, _ = ParseURL("rediss://" + srv.Addr) // the system roots: the test CA is unknown
	o.Timeout = time.Second
	bad, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Acquire(context.Background(), "tls", Limit{Concurrency: 1}); !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("acquire with an unknown CA: %v, want an ErrStore about the certificate", err)
	}
}

// TestRedisOptions checks what NewRedis refuses, and that the options
// print without the password.
func TestRedisOptions(t *testing.T) {
	for _, o := range []RedisOptions{
		{},
		{Addrs: []string{"a:1", "b:1"}, DB: 1},
		{Addrs: []string{"a:1"}, Cluster: true, DB: 2},
		{Addrs: []string{"a:1"}, DB: -1},
		{Addrs: []string{"a:1"}, Prefix: "x{y}:"},
		{Addrs: []string{"a:1"}, LeaseTTL: time.Millisecond},
		{Addrs: []string{"a:1"}, Timeout: -time.Second},
	} {
		if r, err := NewRedis(o); err == nil {
			r.Close()
			t.Errorf("NewRedis(%s) accepted", o)
		}
	}
	o := RedisOptions{Addrs: []string{"127.0.0.1:6379"}, Username: "u", Password: "hunter2"}
	if s := o.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "<hidden>") {
		t.Errorf("String() = %q, want the password hidden", s)
	}
	if s := fmt.Sprintf("%v %+v", o, o); strings.Contains(s, "hunter2") {
		t.Errorf("formatted options show the password: %q", s)
	}
	// No network I/O in NewRedis: an address nobody serves is fine.
	r, err := NewRedis(RedisOptions{Addrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

// TestRedisNoLimitNoRoundTrip: a limit with neither concurrency nor rate
// is granted without asking Redis (here: no Redis at all).
func TestRedisNoLimitNoRoundTrip(t *testing.T) {
	r, err := NewRedis(RedisOptions{Addrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g, err := r.Acquire(context.Background(), "k", Limit{})
	if err != nil || !g.Lease.Held() {
		t.Fatalf("acquire without limits: %+v, %v", g, err)
	}
	g.Lease.Release(true)
	if _, err := r.Acquire(context.Background(), "k", Limit{Rate: Rate{Count: 1}}); err == nil || errors.Is(err, ErrStore) {
		t.Fatalf("a rate without a period: %v, want an invalid-limit error (not ErrStore)", err)
	}
}

func TestParseURL(t *testing.T) {
	tls12 := &tls.Config{MinVersion: tls.VersionTLS12}
	tests := []struct {
		in      string
		want    RedisOptions
		wantErr string
	}{
		{in: "redis://127.0.0.1:6379", want: RedisOptions{Addrs: []string{"127.0.0.1:6379"}}},
		{in: "redis://redis.example", want: RedisOptions{Addrs: []string{"redis.example:6379"}}},
		{in: "REDIS://h:7000/3", want: RedisOptions{Addrs: []string{"h:7000"}, DB: 3}},
		{in: "redis://postern@h:6380/", want: RedisOptions{Addrs: []string{"h:6380"}, Username: "postern"}},
		{in: "redis://us%40er@h", want: RedisOptions{Addrs: []string{"h:6379"}, Username: "us@er"}},
		{in: "rediss://h:6380", want: RedisOptions{Addrs: []string{"h:6380"}, TLS: tls12}},
		{in: "redis://[::1]:7000", want: RedisOptions{Addrs: []string{"[::1]:7000"}}},
		{in: "redis://[::1]", want: RedisOptions{Addrs: []string{"[::1]:6379"}}},
		{in: "redis://a:7000,b:7001,[::1]", want: RedisOptions{Addrs: []string{"a:7000", "b:7001", "[::1]:6379"}}},
		{in: "rediss://u@a:7000?cluster=true", want: RedisOptions{Addrs: []string{"a:7000"}, Cluster: true, Username: "u", TLS: tls12}},
		{in: "redis://a?cluster=false", want: RedisOptions{Addrs: []string{"a:6379"}}},

		{in: "redis://user:hunter2@h:6379", wantErr: "inline password"},
		{in: "redis://:hunter2@h", wantErr: "inline password"},
		{in: "redis://h?password=hunter2", wantErr: "inline password"},
		{in: "redis://u:hun/ter2@h", wantErr: "inline password"},
		{in: "h:6379", wantErr: "want redis://"},
		{in: "http://h", wantErr: "scheme"},
		{in: "redis://", wantErr: "empty host"},
		{in: "redis://a,,b", wantErr: "empty host"},
		{in: "redis://:6379", wantErr: "empty host name"},
		{in: "redis://h:0", wantErr: "port"},
		{in: "redis://h:redis", wantErr: "port"},
		{in: "redis://::1", wantErr: "too many colons"},
		{in: "redis://h/x", wantErr: "database"},
		{in: "redis://h/-1", wantErr: "database"},
		{in: "redis://a,b/1", wantErr: "only database 0"},
		{in: "redis://a/1?cluster=true", wantErr: "only database 0"},
		{in: "redis://a,b?cluster=false", wantErr: "several hosts"},
		{in: "redis://a?cluster=maybe", wantErr: "cluster="},
		{in: "redis://a?timeout=1s", wantErr: "unknown parameter"},
		{in: "redis://a#frag", wantErr: "fragment"},
		{in: "redis://@a", wantErr: "malformed user"},
		{in: "ftp://h", wantErr: `scheme "ftp"`},
		{in: "u:hunter2@h://x", wantErr: "want redis://host:port"}, // no scheme: nothing before "://" is shown
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseURL(%q) = %v, want an error about %q", tt.in, err, tt.wantErr)
			} else if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hun/ter2") {
				t.Errorf("ParseURL(%q): the error shows the password: %v", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tt.in, err)
			continue
		}
		if fmt.Sprint(got.Addrs) != fmt.Sprint(tt.want.Addrs) || got.Cluster != tt.want.Cluster ||
			got.Username != tt.want.Username || got.DB != tt.want.DB ||
			(got.TLS == nil) != (tt.want.TLS == nil) || (got.TLS != nil && got.TLS.MinVersion != tls.VersionTLS12) {
			t.Errorf("ParseURL(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzParseURL: ParseURL never panics, never shows a password it refused,
// and what it accepts NewRedis accepts too.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"redis://h:1/2", "rediss://u@a,b?cluster=true", "redis://u:p@h", "redis://[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseURL(s)
		if err != nil {
			// The password is what stands between the first ":" of the
			// userinfo and its last "@". An error that shows it leaks it,
			// unless the same text is written elsewhere in the URL too
			// (a scheme "abcd" with the password "abcd").
			if _, rest, ok := strings.Cut(s, "://"); ok {
				if i := strings.LastIndex(rest, "@"); i >= 0 {
					if _, pw, ok := strings.Cut(rest[:i], ":"); ok && len(pw) >= 4 && strings.Contains(err.Error(), pw) &&
						!strings.Contains(strings.Replace(s, pw+"@", "@", 1), pw) {
						t.Fatalf("ParseURL(%q): error shows the password: %v", s, err)
					}
				}
			}
			return
		}
		r, err := NewRedis(o)
		if err != nil {
			t.Fatalf("ParseURL(%q) = %s, which NewRedis refuses: %v", s, o, err)
		}
		r.Close()
	})
}
