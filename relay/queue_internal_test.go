package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/safefile"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/relay/sched"
	"github.com/postern-mta/postern/relay/spool"
	"github.com/postern-mta/postern/transport"
)

// testQueue is a queue over a real spool in a temporary directory, with a
// fake clock and the jitter fixed at its midpoint (no jitter).
func testQueue(t *testing.T, dialer transport.Dialer) (*queue, *sched.FakeClock) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	policy := "version: 1\nrouting:\n  route: sink\n  routes:\n    sink: {type: relay, address: 127.0.0.1, port: 9}\nqueue:\n  retry: [10m, 1h]\n"
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policies.LoadFile(path, policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := sched.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	eng, err := engine.New(set, engine.Options{Clock: clock.Now, Dialer: dialer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	q := &queue{sp: sp, sc: sched.New(sched.Options{Workers: 4, Clock: clock}), eng: eng, clock: clock,
		log: slog.New(slog.DiscardHandler), jitter: func() float64 { return 0.5 },
		dsn: func() dsnSettings { return dsnSettings{hostname: "relay.test"} }}
	return q, clock
}

// queueOne puts a message with one recipient in the spool.
func queueOne(t *testing.T, q *queue) (string, *spool.Message) {
	t.Helper()
	rc, err := q.sp.Create(&spool.Envelope{From: "a@sender.test", Recipients: []spool.Recipient{{Addr: "b@dest.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Write([]byte("Subject: t\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	id, err := rc.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := q.sp.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = msg.Close() })
	return id, msg
}

// TestRecordCountsAttempts: a temporary failure counts one attempt and
// waits queue.retry's entry for it; a throttle's deferral counts none
// (also when the attempt was counted before it was made) and waits for
// the throttle; an attempt counted before it was made is not counted
// again.
func TestRecordCountsAttempts(t *testing.T) {
	q, clock := testQueue(t, nil)
	id, msg := queueOne(t, q)
	now := clock.Now()
	temp := engine.Result{Result: transport.Result{Recipient: "b@dest.test", Status: transport.StatusTemporary, Code: 451,
		Class: transport.ClassUnexpectedReply, RetryAfter: now.Add(10 * time.Minute)}, RetryFrom: engine.RetryFromSchedule}
	throttled := engine.Result{Result: transport.Result{Recipient: "b@dest.test", Status: transport.StatusTemporary, Code: 451,
		Class: transport.ClassRate, RetryAfter: now.Add(30 * time.Second)}, RetryFrom: engine.RetryFromThrottle}
	dp := sched.Dispatch{ID: id, Dest: "dest.test"}

	st := &spool.State{}
	q.record(context.Background(), dp, msg, st, []int{0}, engine.Message{}, []engine.Result{temp}, now, false)
	if rs := st.Get(0); rs.Attempts != 1 || !rs.NextAttempt.Equal(now.Add(10*time.Minute)) || rs.LastClass != "unexpected-reply" {
		t.Fatalf("after a temporary failure: %+v, want 1 attempt, next in 10m", rs)
	}

	q.record(context.Background(), dp, msg, st, []int{0}, engine.Message{}, []engine.Result{throttled}, now, false)
	if rs := st.Get(0); rs.Attempts != 1 || rs.NextAttempt.Before(now.Add(30*time.Second)) || !rs.NextAttempt.Before(now.Add(31*time.Second)) {
		t.Fatalf("after a throttle's deferral: %+v, want still 1 attempt, next in [30s, 31s)", rs)
	}

	// Counted before the attempt (as deliver does once a state exists).
	rs := st.Get(0)
	rs.Attempts++
	st.Set(0, rs)
	q.record(context.Background(), dp, msg, st, []int{0}, engine.Message{}, []engine.Result{throttled}, now, true)
	if rs := st.Get(0); rs.Attempts != 1 {
		t.Fatalf("a throttle's deferral counted before it was made: %d attempts, want 1", rs.Attempts)
	}
	rs = st.Get(0)
	rs.Attempts++
	st.Set(0, rs)
	q.record(context.Background(), dp, msg, st, []int{0}, engine.Message{}, []engine.Result{temp}, now, true)
	if rs := st.Get(0); rs.Attempts != 2 {
		t.Fatalf("a failure counted before it was made: %d attempts, want 2", rs.Attempts)
	}
	saved, err := q.sp.ReadState(id)
	if err != nil || saved.Get(0).Attempts != 2 {
		t.Fatalf("the state on disk: %+v, %v", saved, err)
	}
}

// TestDeliverRecordsAttemptFirst: before an attempt of a message that has
// a state, the state on disk already counts it and names the next
// attempt, so a crash during the delivery can neither forget it nor
// retry at once. The dialer reads the state file at the moment the
// engine connects.
func TestDeliverRecordsAttemptFirst(t *testing.T) {
	var q *queue
	var id string
	var atDial *spool.State
	dialer := dialFunc(func(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
		st, err := q.sp.ReadState(id)
		if err != nil {
			t.Errorf("reading the state at dial: %v", err)
		}
		atDial = st
		return nil, errors.New("connection refused (test)")
	})
	q, clock := testQueue(t, dialer)
	id, _ = queueOne(t, q)
	now := clock.Now()
	st := &spool.State{}
	st.Set(0, spool.RcptState{Attempts: 1, LastError: "451 earlier"})
	if err := q.sp.WriteState(id, st); err != nil {
		t.Fatal(err)
	}
	q.sc.Add(id, "route:sink", now, &item{rcpts: []int{0}})
	dp, ok := q.sc.TryNext()
	if !ok {
		t.Fatal("nothing to dispatch")
	}
	q.deliver(context.Background(), dp)
	if atDial == nil {
		t.Fatal("the engine never dialed")
	}
	if rs := atDial.Get(0); rs.Attempts != 2 || !rs.NextAttempt.Equal(now.Add(time.Hour)) {
		t.Fatalf("the state at the moment of the attempt: %+v, want 2 attempts and the next one in 1h (queue.retry[1])", rs)
	}
	after, err := q.sp.ReadState(id)
	if err != nil {
		t.Fatal(err)
	}
	if rs := after.Get(0); rs.Attempts != 2 || rs.LastClass != "connection" {
		t.Fatalf("after the attempt: %+v, want it counted once, class connection", rs)
	}
}

// dialFunc is a transport.Dialer.
type dialFunc func(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error)

func (f dialFunc) DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	return f(ctx, network, remote, local)
}

// TestMsgLocks: one holder per message at a time, other messages not
// held up, and no lock kept once nobody holds or waits for it.
func TestMsgLocks(t *testing.T) {
	var l msgLocks
	unlockA := l.lock("A")
	got := make(chan string, 2)
	// Each goroutine reports after its release.
	go func() { u := l.lock("A"); u(); got <- "A" }()
	go func() { u := l.lock("B"); u(); got <- "B" }()
	if first := <-got; first != "B" {
		t.Fatalf("%s got its lock while A was held", first)
	}
	unlockA()
	if second := <-got; second != "A" {
		t.Fatalf("got %s, want A after the release", second)
	}
	l.mu.Lock()
	n := len(l.m)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d locks kept after every release", n)
	}
}

// TestListenerTLSBounded: a listener's certificate named by the policy is
// read as a bounded regular file: a FIFO is refused at once, with the
// listener and its position, instead of hanging the start or a reload.
func TestListenerTLSBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "cert.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	l := policies.Listener{Name: "mta", TLS: &policies.ListenerTLS{Cert: fifo, Key: fifo}}
	_, err := listenerTLS(l)
	if !errors.Is(err, safefile.ErrNotRegular) || !strings.Contains(err.Error(), `"mta"`) {
		t.Fatalf("a FIFO as the certificate: %v, want ErrNotRegular naming the listener", err)
	}
}

// TestCensus: the queue's census counts each message once by the state of
// its destinations (active over pending over deferred; a down
// destination's items are deferred), its recipients per destination, the
// held messages apart, and the oldest arrival from the queue IDs.
func TestCensus(t *testing.T) {
	q, clock := testQueue(t, nil)
	now := clock.Now()
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = spool.NewID(now.Add(-time.Duration(5-i)*time.Hour), strings.NewReader(strings.Repeat("x", 64)))
	}
	// ids[0]: two destinations, one due (pending) and one later.
	q.sc.Add(ids[0], "a.example", now, &item{rcpts: []int{0, 1}})
	q.sc.Add(ids[0], "b.example", now.Add(time.Hour), &item{rcpts: []int{2}})
	// ids[1]: due later (deferred).
	q.sc.Add(ids[1], "b.example", now.Add(time.Minute), &item{rcpts: []int{0}})
	// ids[2]: due, but its destination is down (deferred).
	q.sc.Add(ids[2], "down.example", now, &item{rcpts: []int{0}})
	q.sc.MarkDown("down.example", now.Add(time.Minute), "refused")
	// ids[3]: being delivered (active).
	q.sc.Add(ids[3], "c.example", now.Add(-time.Second), &item{rcpts: []int{0, 1, 2}})
	dp, ok := q.sc.TryNext()
	if !ok || dp.ID != ids[3] {
		t.Fatalf("dispatched %+v, %v; want %s (the earliest due)", dp, ok, ids[3])
	}
	// ids[4]: held, with 2 pending recipients.
	q.setHeld(ids[4], true, 2)

	c := q.census()
	wantMsgs := map[string]int{statePending: 1, stateDeferred: 2, stateActive: 1, stateHeld: 1}
	wantRcpts := map[string]int{statePending: 2, stateDeferred: 3, stateActive: 3, stateHeld: 2}
	for _, s := range queueStates {
		if c.messages[s] != wantMsgs[s] || c.recipients[s] != wantRcpts[s] {
			t.Errorf("%s: %d messages, %d recipients; want %d, %d", s, c.messages[s], c.recipients[s], wantMsgs[s], wantRcpts[s])
		}
	}
	if want := now.Add(-5 * time.Hour).Truncate(time.Millisecond); !c.oldest.Equal(want) {
		t.Errorf("oldest arrival %v, want %v (ids[0]'s)", c.oldest, want)
	}
	// Released (scheduled again) or removed, a held message counts no more.
	q.setHeld(ids[4], false, 0)
	q.sc.Done(dp)
	if c := q.census(); c.messages[stateHeld] != 0 || c.messages[stateActive] != 0 {
		t.Errorf("after the release and the dispatch's end: %v", c.messages)
	}
}

// TestDownDeferralReadsNoBody: a dispatch to a down destination reads the
// envelope only: a message whose body was damaged is deferred (no
// attempt, no state file) and left in place, and only the attempt that
// reads the body (Load checks the CRC) moves it to corrupt/ and drops it
// from the schedule.
func TestDownDeferralReadsNoBody(t *testing.T) {
	dialer := dialFunc(func(context.Context, string, netip.AddrPort, netip.Addr) (net.Conn, error) {
		return nil, errors.New("connection refused (test)")
	})
	q, clock := testQueue(t, dialer)
	id, msg := queueOne(t, q)
	msg.Close()
	path := filepath.Join(q.sp.Dir(), "msg", id[7:9], id)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	if _, err := f.WriteAt([]byte{'Z'}, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	f.Close()

	now := clock.Now()
	q.sc.MarkDown("route:sink", now.Add(time.Minute), "refused (test)")
	q.sc.Add(id, "route:sink", now, &item{rcpts: []int{0}})
	dp, ok := q.sc.TryNext()
	if !ok || !dp.Down {
		t.Fatalf("dispatch %+v, %v; want a down dispatch", dp, ok)
	}
	q.deliver(context.Background(), dp)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the message left msg/ on a down deferral: %v", err)
	}
	if items := q.sc.Items(id); len(items) != 1 || !items[0].Due.Equal(now.Add(time.Minute)) {
		t.Fatalf("after the deferral the schedule holds %+v, want one entry due at the end of the down period", items)
	}

	clock.Advance(time.Minute)
	dp, ok = q.sc.TryNext()
	if !ok || dp.Down || !dp.Probe {
		t.Fatalf("dispatch %+v, %v; want the probe", dp, ok)
	}
	q.deliver(context.Background(), dp)
	if _, err := os.Stat(filepath.Join(q.sp.Dir(), "corrupt", id)); err != nil {
		t.Errorf("the damaged message is not in corrupt/ after the attempt that read it: %v", err)
	}
	if items := q.sc.Items(id); len(items) != 0 {
		t.Errorf("the damaged message is still scheduled: %+v", items)
	}
}
