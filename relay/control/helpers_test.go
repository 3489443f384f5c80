package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQueue is an in-memory Queue that records what it was asked.
type fakeQueue struct {
	mu     sync.Mutex
	msgs   map[string]MessageInfo
	bodies map[string]string
	stats  Stats
	// failBody makes Body return a reader that fails after its bytes.
	failBody bool
	// reloadErr is what Reload returns.
	reloadErr error

	calls      int
	lastFilter Filter
	lastIDs    []string
	lastBounce bool
}

func (q *fakeQueue) record(f Filter, ids []string, bounce bool) {
	q.calls++
	q.lastFilter, q.lastIDs, q.lastBounce = f, ids, bounce
}

func (q *fakeQueue) List(_ context.Context, f Filter) ([]MessageInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record(f, nil, false)
	var out []MessageInfo
	for _, id := range slices.Sorted(maps.Keys(q.msgs)) {
		m := q.msgs[id]
		if f.Match(&m) {
			out = append(out, m)
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (q *fakeQueue) Show(_ context.Context, id string) (MessageInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record(Filter{}, []string{id}, false)
	m, ok := q.msgs[id]
	if !ok {
		return m, fmt.Errorf("show %s: %w", id, ErrNotFound)
	}
	return m, nil
}

// failingReader returns its bytes, then an error instead of io.EOF.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("disk read error")
	}
	return n, err
}

func (q *fakeQueue) Body(_ context.Context, id string) (io.ReadCloser, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record(Filter{}, []string{id}, false)
	b, ok := q.bodies[id]
	if !ok {
		return nil, fmt.Errorf("body %s: %w", id, ErrNotFound)
	}
	if q.failBody {
		return io.NopCloser(&failingReader{strings.NewReader(b)}), nil
	}
	return io.NopCloser(strings.NewReader(b)), nil
}

// count returns how many of ids are queued, and ErrNotFound for the
// others.
func (q *fakeQueue) count(ids []string) (int, error) {
	n := 0
	var missing []string
	for _, id := range ids {
		if _, ok := q.msgs[id]; ok {
			n++
		} else {
			missing = append(missing, id)
		}
	}
	if missing != nil {
		return n, fmt.Errorf("%w: %s", ErrNotFound, strings.Join(missing, ", "))
	}
	return n, nil
}

func (q *fakeQueue) Flush(_ context.Context, f Filter) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record(f, nil, false)
	if len(f.IDs) > 0 {
		return q.count(f.IDs)
	}
	return len(q.msgs), nil
}

func (q *fakeQueue) Hold(ctx context.Context, f Filter) (int, error) { return q.Flush(ctx, f) }

func (q *fakeQueue) Release(_ context.Context, ids []string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record(Filter{}, ids, false)
	return q.count(ids)
}

func (q *fakeQueue) Delete(_ context.Context, ids []string, bounce bool) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record(Filter{}, ids, bounce)
	return q.count(ids)
}

func (q *fakeQueue) Stats(context.Context) (Stats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	return q.stats, nil
}

func (q *fakeQueue) Reload(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	return q.reloadErr
}

// last returns what the last call was given.
func (q *fakeQueue) last() (Filter, []string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastFilter, q.lastIDs, q.lastBounce
}

func (q *fakeQueue) callCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.calls
}

// Queue IDs used by the tests (valid: 16 characters of 0-9, A-V).
const (
	id1 = "0123456789ABCDEF"
	id2 = "0123456789ABCDEG"
	id3 = "VVVVVVVVVVVVVVVV"
)

// newFake is a fakeQueue with two messages.
func newFake() *fakeQueue {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)
	return &fakeQueue{
		msgs: map[string]MessageInfo{
			id1: {ID: id1, From: "alice@example.org", Arrival: t0, Size: 1234, Recipients: []RecipientInfo{
				{Addr: "bob@example.net", Status: StatusPending, Dest: "example.net", Attempts: 3,
					NextAttempt: t0.Add(time.Hour), LastAttempt: t0.Add(time.Minute), LastError: "451 4.3.0 try later"},
				{Addr: "carol@example.com", Status: StatusDelivered, Dest: "smarthost"},
			}},
			id2: {ID: id2, From: "", Arrival: t0.Add(time.Second), Size: 99, Held: true, Source: "dsn", Recipients: []RecipientInfo{
				{Addr: "alice@example.org", Status: StatusPending},
			}},
		},
		bodies: map[string]string{id1: "Subject: one\r\n\r\nbody one\r\n", id2: "Subject: two\r\n\r\n"},
		stats: Stats{Messages: 2, Recipients: 3, ByState: map[string]int{StateDeferred: 1, StatusDelivered: 1, StateHeld: 1},
			Destinations:  []DestStats{{Dest: "example.net", Scheduled: 1, Ready: 2, Active: 3, Down: true}},
			OldestArrival: t0, DestinationsDown: 1},
	}
}

// sockPath is a socket path in a fresh directory, short enough for a
// unix socket.
func sockPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "control.sock")
}

// serve serves q on a new socket until the test ends, and returns the
// socket's path and a client for it.
func serve(t *testing.T, q Queue) (string, *Client) {
	t.Helper()
	path := sockPath(t)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, q) }()
	c := Dial(path)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path, c
}
