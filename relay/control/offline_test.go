package control

import (
	"context"
	"errors"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/relay/spool"
)

// testSpool is a spool written with the spool package: three messages,
// with states, and the lock released (the daemon is stopped).
type testSpool struct {
	dir         string
	a, b, c     string // IDs, in arrival order
	bodyA       string
	t0          time.Time
	next, tried time.Time
}

func newTestSpool(t *testing.T) *testSpool {
	t.Helper()
	ts := &testSpool{dir: t.TempDir(), t0: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	ts.next = ts.t0.Add(time.Hour)
	ts.tried = ts.t0.Add(5 * time.Minute)
	now := ts.t0
	sp, err := spool.Open(ts.dir, spool.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	put := func(env *spool.Envelope, body string) string {
		r, err := sp.Create(env)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Abort()
		if _, err := io.WriteString(r, body); err != nil {
			t.Fatal(err)
		}
		id, err := r.Commit(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
		return id
	}
	ts.bodyA = "Received: by relay\r\nSubject: a\r\n\r\nhello\r\n"
	ts.a = put(&spool.Envelope{From: "alice@example.org", Recipients: []spool.Recipient{
		{Addr: "bob@example.net"}, {Addr: "carol@Example.COM"}, {Addr: "dave@example.net"},
	}}, ts.bodyA)
	ts.b = put(&spool.Envelope{From: "", Source: "dsn", Recipients: []spool.Recipient{{Addr: "alice@example.org"}}}, "Subject: b\r\n\r\n")
	ts.c = put(&spool.Envelope{From: "erin@example.org", Recipients: []spool.Recipient{{Addr: "frank@example.com"}}}, "Subject: c\r\n\r\n")
	// a: bob deferred, carol delivered, dave never tried. b: held.
	// c: no state file at all.
	stA := &spool.State{}
	stA.Set(0, spool.RcptState{Attempts: 2, NextAttempt: ts.next, LastAttempt: ts.tried, LastError: "451 4.3.0 try later"})
	stA.Set(1, spool.RcptState{Status: spool.StatusDelivered, Attempts: 1, LastAttempt: ts.tried})
	if err := sp.WriteState(ts.a, stA); err != nil {
		t.Fatal(err)
	}
	if err := sp.WriteState(ts.b, &spool.State{Hold: true}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	return ts
}

// state reads the state of id with a read-only spool.
func (ts *testSpool) state(t *testing.T, id string) *spool.State {
	t.Helper()
	sp, err := spool.OpenReadOnly(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sp.ReadState(id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func openOffline(t *testing.T, dir string, writable bool) Queue {
	t.Helper()
	q, c, err := OpenOffline(dir, writable)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return q
}

func ids(ms []MessageInfo) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// TestOfflineList: List reads every message with its envelope and state,
// in ID order, and applies the filter.
func TestOfflineList(t *testing.T) {
	ts := newTestSpool(t)
	q := openOffline(t, ts.dir, false)
	ctx := t.Context()
	ms, err := q.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(ms), []string{ts.a, ts.b, ts.c}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List: %v, want %v", got, want)
	}
	wantA := MessageInfo{ID: ts.a, From: "alice@example.org", Arrival: ts.t0, Size: int64(len(ts.bodyA)), Recipients: []RecipientInfo{
		{Addr: "bob@example.net", Status: StatusPending, Attempts: 2, NextAttempt: ts.next, LastAttempt: ts.tried, LastError: "451 4.3.0 try later"},
		{Addr: "carol@Example.COM", Status: StatusDelivered, Attempts: 1, LastAttempt: ts.tried},
		{Addr: "dave@example.net", Status: StatusPending},
	}}
	if !reflect.DeepEqual(ms[0], wantA) {
		t.Errorf("message a:\n got %+v\nwant %+v", ms[0], wantA)
	}
	if !ms[1].Held || ms[1].Source != "dsn" || ms[1].From != "" || ms[1].Arrival != ts.t0.Add(time.Second) {
		t.Errorf("message b: %+v", ms[1])
	}
	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{Domain: "example.com"}, []string{ts.a, ts.c}}, // carol@Example.COM: case does not matter
		{Filter{Domain: "example.net"}, []string{ts.a}},
		{Filter{Held: true}, []string{ts.b}},
		{Filter{Deferred: true}, []string{ts.a}},
		{Filter{Limit: 2}, []string{ts.a, ts.b}},
		{Filter{IDs: []string{ts.c, ts.a}}, []string{ts.a, ts.c}},
		{Filter{IDs: []string{ts.c}, Domain: "example.net"}, nil},
	} {
		ms, err := q.List(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(ms); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%+v): %v, want %v", tc.f, got, tc.want)
		}
	}
}

// TestOfflineShowBodyStats: Show, Body and Stats over the files; an ID
// that is not queued is ErrNotFound.
func TestOfflineShowBodyStats(t *testing.T) {
	ts := newTestSpool(t)
	q := openOffline(t, ts.dir, false)
	ctx := t.Context()
	m, err := q.Show(ctx, ts.a)
	if err != nil || m.ID != ts.a || len(m.Recipients) != 3 || m.Recipients[0].LastError != "451 4.3.0 try later" {
		t.Errorf("Show(a): %+v, %v", m, err)
	}
	missing := spool.NewID(ts.t0, strings.NewReader("zzzz"))
	if _, err := q.Show(ctx, missing); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Show(missing): %v, want ErrNotFound naming the ID", err)
	}
	if _, err := q.Show(ctx, "nope"); !errors.Is(err, spool.ErrBadID) {
		t.Errorf("Show(bad ID): %v", err)
	}
	rc, err := q.Body(ctx, ts.a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != ts.bodyA {
		t.Errorf("Body(a): %q, %v; want %q", b, err, ts.bodyA)
	}
	if _, err := q.Body(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Body(missing): %v", err)
	}
	st, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Messages: 3, Recipients: 5, OldestArrival: ts.t0,
		ByState: map[string]int{StateDeferred: 1, StatusDelivered: 1, StatePending: 2, StateHeld: 1}}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Stats:\n got %+v\nwant %+v", st, want)
	}
}

// TestOfflineReadOnlyRefusesChanges: without --offline the verbs that
// change the queue (and reload) return ErrOffline and change nothing.
func TestOfflineReadOnlyRefusesChanges(t *testing.T) {
	ts := newTestSpool(t)
	q := openOffline(t, ts.dir, false)
	ctx := t.Context()
	before := ts.state(t, ts.a)
	var errs []error
	_, err := q.Flush(ctx, Filter{All: true})
	errs = append(errs, err)
	_, err = q.Hold(ctx, Filter{IDs: []string{ts.a}})
	errs = append(errs, err)
	_, err = q.Release(ctx, []string{ts.b})
	errs = append(errs, err)
	_, err = q.Delete(ctx, []string{ts.c}, false)
	errs = append(errs, err)
	errs = append(errs, q.Reload(ctx))
	for i, err := range errs {
		if !errors.Is(err, ErrOffline) {
			t.Errorf("verb %d: %v, want ErrOffline", i, err)
		}
	}
	if !strings.Contains(errs[1].Error(), "--offline") {
		t.Errorf("hold's error does not name --offline: %v", errs[1])
	}
	if after := ts.state(t, ts.a); !reflect.DeepEqual(before, after) {
		t.Errorf("state of a changed: %+v -> %+v", before, after)
	}
	if !ts.state(t, ts.b).Hold {
		t.Error("b was released")
	}
	if ms, _ := q.List(ctx, Filter{}); len(ms) != 3 {
		t.Errorf("%d messages left, want 3", len(ms))
	}
}

// TestOfflineWhileLocked: --offline while another process holds the lock
// fails with the LockedError's message (naming the pid); reading works
// beside it.
func TestOfflineWhileLocked(t *testing.T) {
	ts := newTestSpool(t)
	sp, err := spool.Open(ts.dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	_, _, err = OpenOffline(ts.dir, true)
	var le *spool.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("OpenOffline(writable) on a locked spool: %v, want a LockedError", err)
	}
	if !strings.Contains(err.Error(), "locked by pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q does not name the holder", err)
	}
	q := openOffline(t, ts.dir, false)
	if ms, err := q.List(t.Context(), Filter{}); err != nil || len(ms) != 3 {
		t.Errorf("List beside the lock holder: %d, %v", len(ms), err)
	}
}

// TestOfflineNotASpool: a directory that is not a spool is refused and
// not created, read-only or writable.
func TestOfflineNotASpool(t *testing.T) {
	dir := t.TempDir() + "/nothing"
	for _, w := range []bool{false, true} {
		if _, _, err := OpenOffline(dir, w); err == nil || !strings.Contains(err.Error(), "not a spool") {
			t.Errorf("OpenOffline(%v): %v", w, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory was created: %v", err)
	}
}

// TestOfflineWritable: with the lock, hold, release, flush and delete
// change the state files (and the message files, for delete).
func TestOfflineWritable(t *testing.T) {
	ts := newTestSpool(t)
	q := openOffline(t, ts.dir, true)
	ctx := t.Context()

	// Nothing selected: nothing changes.
	if n, err := q.Hold(ctx, Filter{}); n != 0 || err != nil {
		t.Errorf("Hold(empty filter): %d, %v", n, err)
	}
	if n, err := q.Flush(ctx, Filter{Held: true}); n != 0 || err != nil {
		t.Errorf("Flush(held only, no selector): %d, %v", n, err)
	}
	if ts.state(t, ts.c).Hold || ts.state(t, ts.a).Get(0).NextAttempt.IsZero() {
		t.Fatal("an empty filter changed the queue")
	}

	n, err := q.Hold(ctx, Filter{Domain: "example.com"}) // a (carol) and c (frank)
	if err != nil || n != 2 {
		t.Errorf("Hold(domain): %d, %v, want 2", n, err)
	}
	if !ts.state(t, ts.a).Hold || !ts.state(t, ts.c).Hold {
		t.Error("hold did not set the hold mark")
	}
	if ts.state(t, ts.a).Get(0).Attempts != 2 {
		t.Error("hold lost the recipients' state")
	}
	n, err = q.Hold(ctx, Filter{IDs: []string{ts.b}}) // held already
	if err != nil || n != 0 {
		t.Errorf("Hold(held already): %d, %v, want 0", n, err)
	}

	n, err = q.Release(ctx, []string{ts.a, ts.b})
	if err != nil || n != 2 {
		t.Errorf("Release: %d, %v, want 2", n, err)
	}
	if ts.state(t, ts.a).Hold || ts.state(t, ts.b).Hold || !ts.state(t, ts.c).Hold {
		t.Error("release changed the wrong messages")
	}

	n, err = q.Flush(ctx, Filter{Domain: "example.org"}) // b's alice: never tried, nothing to flush
	if err != nil || n != 0 {
		t.Errorf("Flush(example.org): %d, %v, want 0", n, err)
	}
	n, err = q.Flush(ctx, Filter{All: true})
	if err != nil || n != 1 {
		t.Errorf("Flush(all): %d, %v, want 1", n, err)
	}
	st := ts.state(t, ts.a)
	if r := st.Get(0); !r.NextAttempt.IsZero() || r.Attempts != 2 || r.LastError != "451 4.3.0 try later" {
		t.Errorf("after flush, bob: %+v, want due now with the rest kept", r)
	}
	if st.Get(1).Status != spool.StatusDelivered {
		t.Errorf("flush changed a delivered recipient: %+v", st.Get(1))
	}

	missing := spool.NewID(ts.t0, strings.NewReader("zzzz"))
	n, err = q.Delete(ctx, []string{ts.c, missing, ts.c}, false)
	if n != 1 || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Delete(c, missing): %d, %v; want 1 and ErrNotFound naming %s", n, err, missing)
	}
	if _, err := q.Show(ctx, ts.c); !errors.Is(err, ErrNotFound) {
		t.Errorf("c still queued after delete: %v", err)
	}
	if ms, _ := q.List(ctx, Filter{}); !reflect.DeepEqual(ids(ms), []string{ts.a, ts.b}) {
		t.Errorf("left after delete: %v", ids(ms))
	}

	n, err = q.Delete(ctx, []string{ts.a}, true)
	if n != 0 || err == nil || !strings.Contains(err.Error(), "--bounce needs the running daemon (it sends the DSN)") {
		t.Errorf("Delete(bounce) offline: %d, %v", n, err)
	}
	if _, err := q.Show(ctx, ts.a); err != nil {
		t.Errorf("a refused --bounce deleted the message: %v", err)
	}
	if err := q.Reload(ctx); !errors.Is(err, ErrOffline) {
		t.Errorf("Reload offline: %v", err)
	}
}

// TestOfflineServedOverSocket: the offline Queue behind Serve is what a
// Client sees (the daemon-side wiring is the same interface).
func TestOfflineServedOverSocket(t *testing.T) {
	ts := newTestSpool(t)
	_, c := serve(t, openOffline(t, ts.dir, false))
	ms, err := c.List(t.Context(), Filter{Held: true})
	if err != nil || !reflect.DeepEqual(ids(ms), []string{ts.b}) {
		t.Errorf("List(held) over the socket: %v, %v", ids(ms), err)
	}
	_, err = c.Hold(t.Context(), Filter{All: true})
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "--offline") {
		t.Errorf("Hold over the socket, read-only: %v", err)
	}
}
