//go:build linux

package mtasts

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/httpbed"
)

// clock is a fake clock for Source.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fetches returns how many connections reached nginx since the last call.
func (b *bed) fetches() int {
	n := 0
	for _, a := range b.dialed() {
		if a.Addr() == srv4 {
			n++
		}
	}
	return n
}

// TestSource runs the rules of Source.Policy against a real policy host
// with a fake clock. The subtests run in order and share the server's
// policy file; each makes its own Source and cache.
func TestSource(t *testing.T) {
	const domain = "source.test"
	day := 86400 * time.Second
	p1 := &Policy{Enforce, []string{"mx1.source.test"}, day}
	p2 := &Policy{Testing, []string{"mx2.source.test"}, day}
	text1 := policyText(Enforce, 86400, "mx1.source.test")
	text2 := policyText(Testing, 86400, "mx2.source.test")
	broken := []byte("version: STSv1\n")

	b := newBed(t)
	b.start(t, []string{"mta-sts." + domain, "mta-sts.nothing.test"}, httpbed.Site{})
	setPolicy := func(t *testing.T, content []byte) { b.srv.SetFile(t, policyP, content) }
	newSource := func(t *testing.T) (*Source, *clock) {
		c, err := OpenCache("")
		if err != nil {
			t.Fatal(err)
		}
		clk := &clock{t: t0}
		b.dialed()
		return &Source{Fetcher: b.fetcher(), Cache: c, Now: clk.Now}, clk
	}
	ctx := context.Background()
	// check compares a Result with the expected one and the number of
	// fetches that reached nginx (not counted when wantFetches is -1).
	check := func(t *testing.T, what string, got Result, want Result, wantFetches int) {
		t.Helper()
		if !reflect.DeepEqual(got.Policy, want.Policy) || got.ID != want.ID || got.FromCache != want.FromCache || !got.Fetched.Equal(want.Fetched) {
			t.Fatalf("%s: Result = {%+v id=%q cache=%v fetched=%v err=%v}, want {%+v id=%q cache=%v fetched=%v}", what,
				got.Policy, got.ID, got.FromCache, got.Fetched, got.Err, want.Policy, want.ID, want.FromCache, want.Fetched)
		}
		if n := b.fetches(); wantFetches >= 0 && n != wantFetches {
			t.Fatalf("%s: %d fetches reached the server, want %d", what, n, wantFetches)
		}
	}
	fetchErr := func(t *testing.T, err error, typ string) {
		t.Helper()
		var fe *FetchError
		if !errors.As(err, &fe) || fe.Type != typ {
			t.Fatalf("Err = %v, want a *FetchError of type %s", err, typ)
		}
	}

	t.Run("fresh fetch, then cached use without a fetch", func(t *testing.T) {
		setPolicy(t, text1)
		s, clk := newSource(t)
		r := s.Policy(ctx, domain, Record{ID: "1"})
		check(t, "first", r, Result{Policy: p1, ID: "1", Fetched: t0}, 1)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if e, ok := s.Cache.Get(domain); !ok || e.ID != "1" || !reflect.DeepEqual(e.Policy, p1) {
			t.Fatalf("cache entry = %+v, %v", e, ok)
		}
		setPolicy(t, text2) // a fetch would now see p2
		clk.Add(12 * time.Hour)
		check(t, "same id later", s.Policy(ctx, "SOURCE.test.", Record{ID: "1"}), Result{Policy: p1, ID: "1", FromCache: true, Fetched: t0}, 0)
	})

	t.Run("new id: refetch", func(t *testing.T) {
		setPolicy(t, text1)
		s, clk := newSource(t)
		s.Policy(ctx, domain, Record{ID: "1"})
		b.fetches()
		setPolicy(t, text2)
		clk.Add(time.Hour)
		check(t, "new id", s.Policy(ctx, domain, Record{ID: "2"}), Result{Policy: p2, ID: "2", Fetched: t0.Add(time.Hour)}, 1)
		if e, _ := s.Cache.Get(domain); e.ID != "2" {
			t.Fatalf("cache holds id %q, want 2", e.ID)
		}
	})

	t.Run("fetch failure without a cached policy", func(t *testing.T) {
		s, _ := newSource(t)
		r := s.Policy(ctx, "nothing.test", Record{ID: "1"})
		check(t, "refused", r, Result{}, 0)
		fetchErr(t, r.Err, ResultFetchError)
		setPolicy(t, broken)
		r = s.Policy(ctx, domain, Record{ID: "1"})
		check(t, "broken policy", r, Result{}, 1)
		fetchErr(t, r.Err, ResultPolicyInvalid)
	})

	t.Run("fetch failure with a cached policy: it stands in", func(t *testing.T) {
		setPolicy(t, text1)
		s, clk := newSource(t)
		s.Policy(ctx, domain, Record{ID: "1"})
		b.fetches()
		setPolicy(t, broken)
		clk.Add(time.Hour)
		r := s.Policy(ctx, domain, Record{ID: "2"})
		check(t, "new id, broken policy", r, Result{Policy: p1, ID: "1", FromCache: true, Fetched: t0}, 1)
		fetchErr(t, r.Err, ResultPolicyInvalid)
		if e, _ := s.Cache.Get(domain); e.ID != "1" {
			t.Fatalf("the failed fetch replaced the cache entry: %+v", e)
		}
	})

	t.Run("failures are remembered per id for RetryAfterFailure", func(t *testing.T) {
		setPolicy(t, broken)
		s, clk := newSource(t)
		r := s.Policy(ctx, domain, Record{ID: "1"})
		check(t, "failure", r, Result{}, 1)
		setPolicy(t, text1)
		clk.Add(RetryAfterFailure - time.Second)
		r = s.Policy(ctx, domain, Record{ID: "1"})
		check(t, "within the retry delay", r, Result{}, 0)
		fetchErr(t, r.Err, ResultPolicyInvalid)
		r = s.Policy(ctx, domain, Record{ID: "2"})
		check(t, "new id within the delay", r, Result{Policy: p1, ID: "2", Fetched: clk.Now()}, 1)
		s2, clk2 := newSource(t)
		setPolicy(t, broken)
		s2.Policy(ctx, domain, Record{ID: "1"})
		b.fetches()
		setPolicy(t, text1)
		clk2.Add(RetryAfterFailure)
		check(t, "after the delay", s2.Policy(ctx, domain, Record{ID: "1"}), Result{Policy: p1, ID: "1", Fetched: clk2.Now()}, 1)
	})

	t.Run("TXT failure or absence: the cached policy, no fetch", func(t *testing.T) {
		setPolicy(t, text1)
		s, clk := newSource(t)
		s.Policy(ctx, domain, Record{ID: "1"})
		b.fetches()
		clk.Add(time.Hour)
		txtErr := errors.New("SERVFAIL")
		r := s.Policy(ctx, domain, Record{Err: txtErr})
		check(t, "TXT lookup failed", r, Result{Policy: p1, ID: "1", FromCache: true, Fetched: t0}, 0)
		if r.Err != txtErr {
			t.Fatalf("Err = %v, want the TXT error", r.Err)
		}
		r = s.Policy(ctx, domain, Record{Absent: true})
		check(t, "TXT absent", r, Result{Policy: p1, ID: "1", FromCache: true, Fetched: t0}, 0)
		if r.Err != nil {
			t.Fatalf("Err = %v, want nil", r.Err)
		}

		s2, _ := newSource(t)
		r = s2.Policy(ctx, domain, Record{Err: txtErr})
		check(t, "TXT failed, no cache", r, Result{}, 0)
		if r.Err != txtErr {
			t.Fatalf("Err = %v, want the TXT error", r.Err)
		}
		r = s2.Policy(ctx, domain, Record{Absent: true})
		check(t, "TXT absent, no cache", r, Result{}, 0)
		if !errors.Is(r.Err, ErrNoRecord) {
			t.Fatalf("Err = %v, want ErrNoRecord", r.Err)
		}
	})

	t.Run("refresh in the last quarter of max_age", func(t *testing.T) {
		setPolicy(t, text1)
		s, clk := newSource(t)
		s.Policy(ctx, domain, Record{ID: "1"})
		b.fetches()
		setPolicy(t, text2)
		clk.Add(day*3/4 - time.Second)
		check(t, "just before the last quarter", s.Policy(ctx, domain, Record{ID: "1"}), Result{Policy: p1, ID: "1", FromCache: true, Fetched: t0}, 0)
		clk.Add(time.Second)
		refreshed := clk.Now()
		check(t, "last quarter", s.Policy(ctx, domain, Record{ID: "1"}), Result{Policy: p2, ID: "1", Fetched: refreshed}, 1)
		check(t, "after the refresh", s.Policy(ctx, domain, Record{ID: "1"}), Result{Policy: p2, ID: "1", FromCache: true, Fetched: refreshed}, 0)

		// A failed refresh keeps the cached policy.
		setPolicy(t, broken)
		clk.Add(day * 3 / 4)
		r := s.Policy(ctx, domain, Record{ID: "1"})
		check(t, "failed refresh", r, Result{Policy: p2, ID: "1", FromCache: true, Fetched: refreshed}, 1)
		fetchErr(t, r.Err, ResultPolicyInvalid)
	})

	t.Run("expiry", func(t *testing.T) {
		setPolicy(t, text1)
		s, clk := newSource(t)
		s.Policy(ctx, domain, Record{ID: "1"})
		b.fetches()
		clk.Add(day)
		check(t, "TXT failed, cache expired", s.Policy(ctx, domain, Record{Err: errors.New("timeout")}), Result{}, 0)
		check(t, "TXT absent, cache expired", s.Policy(ctx, domain, Record{Absent: true}), Result{}, 0)
		setPolicy(t, broken)
		r := s.Policy(ctx, domain, Record{ID: "1"})
		check(t, "same id, cache expired, fetch fails", r, Result{}, 1)
		fetchErr(t, r.Err, ResultPolicyInvalid)
	})

	t.Run("mode none is cached and returned as is", func(t *testing.T) {
		setPolicy(t, []byte("version: STSv1\nmode: none\nmax_age: 600\n"))
		s, clk := newSource(t)
		none := &Policy{Mode: None, MaxAge: 10 * time.Minute}
		check(t, "fetch", s.Policy(ctx, domain, Record{ID: "9"}), Result{Policy: none, ID: "9", Fetched: t0}, 1)
		clk.Add(time.Minute)
		check(t, "cached", s.Policy(ctx, domain, Record{ID: "9"}), Result{Policy: none, ID: "9", FromCache: true, Fetched: t0}, 0)
	})

	t.Run("the cache survives a restart", func(t *testing.T) {
		setPolicy(t, text1)
		dir := t.TempDir()
		c, _ := OpenCache(dir)
		clk := &clock{t: t0}
		s := &Source{Fetcher: b.fetcher(), Cache: c, Now: clk.Now}
		b.dialed()
		s.Policy(ctx, domain, Record{ID: "1"})
		b.fetches()
		setPolicy(t, text2)
		c2, _ := OpenCache(dir)
		s2 := &Source{Fetcher: b.fetcher(), Cache: c2, Now: clk.Now}
		check(t, "after the restart", s2.Policy(ctx, domain, Record{ID: "1"}), Result{Policy: p1, ID: "1", FromCache: true, Fetched: t0}, 0)
	})

	t.Run("NeedsFetch says whether Policy fetches", func(t *testing.T) {
		setPolicy(t, text1)
		s, clk := newSource(t)
		steps := []struct {
			what    string
			advance time.Duration
			rec     Record
			fetch   bool
		}{
			{"no cache", 0, Record{ID: "1"}, true},
			{"cached, same id", time.Hour, Record{ID: "1"}, false},
			{"TXT absent", 0, Record{Absent: true}, false},
			{"TXT failed", 0, Record{Err: errors.New("SERVFAIL")}, false},
			{"new id", 0, Record{ID: "2"}, true},
			{"last quarter", day * 3 / 4, Record{ID: "2"}, true},
			{"refreshed", 0, Record{ID: "2"}, false},
			{"new id, fetch fails", 0, Record{ID: "broken"}, true},
			{"failure remembered", time.Minute, Record{ID: "broken"}, false},
		}
		for _, st := range steps {
			if st.rec.ID == "broken" {
				setPolicy(t, broken)
			}
			clk.Add(st.advance)
			if got := s.NeedsFetch(domain, st.rec); got != st.fetch {
				t.Fatalf("%s: NeedsFetch = %v, want %v", st.what, got, st.fetch)
			}
			s.Policy(ctx, domain, st.rec)
			if n := b.fetches(); n != map[bool]int{false: 0, true: 1}[st.fetch] {
				t.Fatalf("%s: Policy made %d fetches, NeedsFetch said %v", st.what, n, st.fetch)
			}
		}
	})

	t.Run("concurrent calls share one fetch", func(t *testing.T) {
		setPolicy(t, text1)
		s, _ := newSource(t)
		const callers = 8
		joined := make(chan struct{}, callers)
		s.joined = func() { joined <- struct{}{} }
		release := make(chan struct{})
		b.mu.Lock()
		b.onDial = func() { <-release }
		b.mu.Unlock()
		defer func() { b.mu.Lock(); b.onDial = nil; b.mu.Unlock() }()

		results := make(chan Result, callers)
		for range callers {
			go func() { results <- s.Policy(ctx, domain, Record{ID: "1"}) }()
		}
		for range callers - 1 { // all but the one that started the fetch
			select {
			case <-joined:
			case <-time.After(10 * time.Second): // a guard against hanging, not a timing check
				close(release)
				t.Fatal("the callers did not join the running fetch")
			}
		}
		close(release)
		var got []Result
		for range callers {
			got = append(got, <-results)
		}
		if n := b.fetches(); n != 1 {
			t.Fatalf("%d fetches for %d concurrent callers, want 1", n, callers)
		}
		for _, r := range got {
			check(t, "shared", r, Result{Policy: p1, ID: "1", Fetched: t0}, -1)
		}
	})

	t.Run("a caller that gives up does not stop the shared fetch", func(t *testing.T) {
		setPolicy(t, text1)
		s, _ := newSource(t)
		release := make(chan struct{})
		dialing := make(chan struct{}, 4)
		b.mu.Lock()
		b.onDial = func() { dialing <- struct{}{}; <-release }
		b.mu.Unlock()
		defer func() { b.mu.Lock(); b.onDial = nil; b.mu.Unlock() }()

		cctx, cancel := context.WithCancel(ctx)
		done := make(chan Result)
		go func() { done <- s.Policy(cctx, domain, Record{ID: "1"}) }()
		<-dialing // the fetch has started
		cancel()
		r := <-done
		check(t, "cancelled caller", r, Result{}, 0)
		if !errors.Is(r.Err, context.Canceled) {
			t.Fatalf("Err = %v, want the cancellation", r.Err)
		}
		close(release)
		// This call joins the running fetch or finds its result cached
		// (FromCache tells which): either way the policy of the one fetch.
		r = s.Policy(ctx, domain, Record{ID: "1"})
		check(t, "next caller", r, Result{Policy: p1, ID: "1", Fetched: t0, FromCache: r.FromCache}, 1)
	})
}
