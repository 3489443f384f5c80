package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/relay/spool"
)

// TestRoundTripList: List's filter reaches the daemon's Queue field by
// field, and the messages come back equal, times included (to the
// nanosecond, in UTC).
func TestRoundTripList(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	ms, err := c.List(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []MessageInfo{q.msgs[id1], q.msgs[id2]}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("List:\n got %+v\nwant %+v", ms, want)
	}
	f := Filter{IDs: []string{id2, id1}, Domain: "Example.ORG", Held: true, Deferred: false, Limit: 7}
	ms, err = c.List(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := q.last(); !reflect.DeepEqual(got, f) {
		t.Errorf("the daemon got filter %+v, want %+v", got, f)
	}
	if len(ms) != 1 || ms[0].ID != id2 {
		t.Errorf("List(held, domain example.org): %+v, want only %s", ms, id2)
	}
	// An empty answer is an empty list, not an error.
	ms, err = c.List(t.Context(), Filter{Domain: "nowhere.test"})
	if err != nil || len(ms) != 0 {
		t.Errorf("List(no match): %v, %v", ms, err)
	}
}

// TestRoundTripTimesKeepTheirInstant: a time in another zone comes back
// as the same instant.
func TestRoundTripTimesKeepTheirInstant(t *testing.T) {
	q := newFake()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	m := q.msgs[id1]
	m.Arrival = time.Date(2026, 1, 2, 3, 4, 5, 6, zone)
	q.msgs[id1] = m
	_, c := serve(t, q)
	got, err := c.Show(t.Context(), id1)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Arrival.Equal(m.Arrival) {
		t.Errorf("arrival %v, want %v", got.Arrival, m.Arrival)
	}
	if got.Recipients[1].NextAttempt != (time.Time{}) {
		t.Errorf("a zero time came back as %v", got.Recipients[1].NextAttempt)
	}
}

// TestRoundTripShow: Show returns the message; an unknown ID gives the
// daemon's error text, which matches ErrNotFound.
func TestRoundTripShow(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	got, err := c.Show(t.Context(), id1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, q.msgs[id1]) {
		t.Errorf("Show:\n got %+v\nwant %+v", got, q.msgs[id1])
	}
	_, err = c.Show(t.Context(), id3)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Show(unknown): %v, want ErrNotFound", err)
	}
	if want := "show " + id3 + ": " + ErrNotFound.Error(); err.Error() != want {
		t.Errorf("error text %q, want the daemon's %q", err, want)
	}
}

// TestRoundTripBody: Body streams the stored bytes; an unknown ID is
// ErrNotFound; a body the daemon cannot finish reading ends in an error,
// never in a clean EOF that would pass for the whole message.
func TestRoundTripBody(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	rc, err := c.Body(t.Context(), id1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != q.bodies[id1] {
		t.Errorf("Body: %q, %v; want %q", b, err, q.bodies[id1])
	}
	if _, err := c.Body(t.Context(), id3); !errors.Is(err, ErrNotFound) {
		t.Errorf("Body(unknown): %v, want ErrNotFound", err)
	}
	q.mu.Lock()
	q.failBody = true
	q.bodies[id1] = strings.Repeat("x", 256<<10) // more than the server buffers
	q.mu.Unlock()
	rc, err = c.Body(t.Context(), id1)
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if err == nil {
		t.Error("a body cut short by the daemon read as complete")
	}
}

// TestRoundTripCounts: flush, hold, release and delete carry their
// selection (and bounce) to the daemon and its count back, also with an
// error for IDs that are not queued.
func TestRoundTripCounts(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	ctx := t.Context()

	n, err := c.Flush(ctx, Filter{Domain: "example.net"})
	if f, _, _ := q.last(); err != nil || n != 2 || f.Domain != "example.net" {
		t.Errorf("Flush(domain): %d, %v, daemon got %+v", n, err, f)
	}
	n, err = c.Flush(ctx, Filter{All: true})
	if f, _, _ := q.last(); err != nil || n != 2 || !f.All {
		t.Errorf("Flush(all): %d, %v, daemon got %+v", n, err, f)
	}
	n, err = c.Hold(ctx, Filter{IDs: []string{id1, id3}})
	if n != 1 || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), id3) {
		t.Errorf("Hold(one queued, one not): %d, %v; want 1 and ErrNotFound naming %s", n, err, id3)
	}
	n, err = c.Release(ctx, []string{id2})
	if _, ids, _ := q.last(); err != nil || n != 1 || !reflect.DeepEqual(ids, []string{id2}) {
		t.Errorf("Release: %d, %v, daemon got %v", n, err, ids)
	}
	n, err = c.Delete(ctx, []string{id1, id2}, true)
	if _, ids, bounce := q.last(); err != nil || n != 2 || !bounce || !reflect.DeepEqual(ids, []string{id1, id2}) {
		t.Errorf("Delete(bounce): %d, %v, daemon got %v bounce=%v", n, err, ids, bounce)
	}
	_, err = c.Delete(ctx, []string{id1}, false)
	if _, _, bounce := q.last(); err != nil || bounce {
		t.Errorf("Delete(no bounce): %v, daemon got bounce=%v", err, bounce)
	}
}

// TestRoundTripStats: Stats comes back equal.
func TestRoundTripStats(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	st, err := c.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, q.stats) {
		t.Errorf("Stats:\n got %+v\nwant %+v", st, q.stats)
	}
}

// TestRoundTripReload: a refused reload's text, every line of it, is the
// client's error; ErrOffline maps back; success is nil.
func TestRoundTripReload(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	if err := c.Reload(t.Context()); err != nil {
		t.Errorf("Reload: %v", err)
	}
	text := "policy.yaml:3:5: unknown setting \"relya\"\npolicy.yaml:9:1: relay: listener mta: auth needs tls"
	q.mu.Lock()
	q.reloadErr = errors.New(text)
	q.mu.Unlock()
	err := c.Reload(t.Context())
	if err == nil || err.Error() != text {
		t.Errorf("Reload refused: %v, want the text %q", err, text)
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrOffline) {
		t.Errorf("a plain error matches a sentinel: %v", err)
	}
	q.mu.Lock()
	q.reloadErr = fmt.Errorf("reload: %w", ErrOffline)
	q.mu.Unlock()
	if err := c.Reload(t.Context()); !errors.Is(err, ErrOffline) {
		t.Errorf("Reload(offline): %v, want ErrOffline", err)
	}
}

// TestClientChecksIDs: a malformed ID never reaches the daemon.
func TestClientChecksIDs(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	ctx := t.Context()
	bad := "../../etc/passwd"
	errs := []error{}
	_, err := c.Show(ctx, bad)
	errs = append(errs, err)
	_, err = c.Body(ctx, bad)
	errs = append(errs, err)
	_, err = c.Hold(ctx, Filter{IDs: []string{bad}})
	errs = append(errs, err)
	_, err = c.Release(ctx, []string{id1, bad})
	errs = append(errs, err)
	_, err = c.Delete(ctx, []string{"0123456789abcdef"}, false) // lower case is not an ID
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, spool.ErrBadID) {
			t.Errorf("call %d: %v, want ErrBadID", i, err)
		}
	}
	if n := q.callCount(); n != 0 {
		t.Errorf("the daemon's Queue was called %d times", n)
	}
}

// TestServerRefusesBadRequests: the daemon checks what a client other
// than ours sends: malformed IDs, unknown fields (which it would ignore,
// widening a change), unknown paths; its Queue is not called.
func TestServerRefusesBadRequests(t *testing.T) {
	q := newFake()
	_, c := serve(t, q)
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v1/messages/not-an-id", "", http.StatusBadRequest},
		{"POST", "/v1/hold", `{"ids":["x/../y"]}`, http.StatusBadRequest},
		{"POST", "/v1/flush", `{"domian":"example.net"}`, http.StatusBadRequest},
		{"POST", "/v1/release", `{"ids":["` + id1 + `"],"domain":"x"}`, http.StatusBadRequest},
		{"POST", "/v1/delete", `not json`, http.StatusBadRequest},
		{"GET", "/v2/stats", "", http.StatusNotFound},
		{"DELETE", "/v1/stats", "", http.StatusNotFound},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		resp, err := c.do(t.Context(), tc.method, tc.path, body)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !bytes.Contains(raw, []byte(`"error":`)) {
			t.Errorf("%s %s %s: %s %s, want %d with a JSON error", tc.method, tc.path, tc.body, resp.Status, raw, tc.status)
		}
	}
	if n := q.callCount(); n != 0 {
		t.Errorf("the daemon's Queue was called %d times", n)
	}
}

// TestSocketMode: the socket is a socket, mode 0600, and no temporary
// name is left beside it.
func TestSocketMode(t *testing.T) {
	path, _ := serve(t, newFake())
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	names, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"))
	hidden, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"))
	if len(names) != 1 || len(hidden) != 0 {
		t.Errorf("directory holds %v %v, want the socket only", names, hidden)
	}
}

// TestSecondServeOnLiveSocketFails: a socket someone serves is not taken
// over; the first server keeps working.
func TestSecondServeOnLiveSocketFails(t *testing.T) {
	path, c := serve(t, newFake())
	err := Serve(t.Context(), path, newFake())
	if err == nil || !strings.Contains(err.Error(), "another process is serving it") {
		t.Fatalf("second Serve: %v, want a refusal", err)
	}
	if _, err := c.Stats(t.Context()); err != nil {
		t.Errorf("the first server stopped answering: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the refused Serve removed the socket: %v", err)
	}
}

// staleSocket leaves a socket file at path that nobody listens on, as a
// crashed daemon does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
}

// TestStaleSocketReplaced: a socket nobody serves is replaced, and the
// new one answers; before that, a client reports ErrNoDaemon.
func TestStaleSocketReplaced(t *testing.T) {
	path := sockPath(t)
	staleSocket(t, path)
	c := Dial(path)
	defer c.Close()
	if _, err := c.Stats(t.Context()); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Stats on a stale socket: %v, want ErrNoDaemon", err)
	}
	l, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, newFake()) }()
	st, err := c.Stats(t.Context())
	if err != nil || st.Messages != 2 {
		t.Errorf("Stats on the new socket: %+v, %v", st, err)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestNotASocketRefused: a regular file in the socket's place is left
// alone.
func TestNotASocketRefused(t *testing.T) {
	path := sockPath(t)
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("the file was changed: %q, %v", b, err)
	}
}

// TestTooLongPathRefused: a path over the unix-socket limit is refused
// with a message saying so.
func TestTooLongPathRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), strings.Repeat("s", 120))
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "shorter spool directory") {
		t.Errorf("Listen(long path): %v", err)
	}
}

// TestCancelRemovesSocket: when the context ends, Serve returns nil and
// the socket is gone; a client then gets ErrNoDaemon.
func TestCancelRemovesSocket(t *testing.T) {
	path := sockPath(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- l.Serve(ctx, newFake()) }()
	c := Dial(path)
	defer c.Close()
	if _, err := c.Stats(t.Context()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there: %v", err)
	}
	c.Close() // idle connections to the old server
	if _, err := c.Stats(t.Context()); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Stats after the server stopped: %v, want ErrNoDaemon", err)
	}
	if err := l.Serve(t.Context(), newFake()); err == nil {
		t.Error("a closed Listener served again")
	}
}

// TestListenerCloseUnserved: Close on a Listener never served removes
// the socket.
func TestListenerCloseUnserved(t *testing.T) {
	path := sockPath(t)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there: %v", err)
	}
}

// TestAllowed: root and the owner are served, nobody else.
func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		uid, owner uint32
		want       bool
	}{{0, 1000, true}, {1000, 1000, true}, {1001, 1000, false}, {0, 0, true}, {65534, 0, false}} {
		if got := allowed(tc.uid, tc.owner); got != tc.want {
			t.Errorf("allowed(%d, %d) = %v", tc.uid, tc.owner, got)
		}
	}
}

// TestCurlClient: a real HTTP client (curl) speaks the protocol: stats
// over the socket as JSON, a not-found as 404 with the JSON error.
func TestCurlClient(t *testing.T) {
	curl := testbed.Require(t, "curl")
	path, _ := serve(t, newFake())
	out, err := exec.Command(curl, "-sS", "--unix-socket", path, "http://postern/v1/stats").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"messages":2`)) || !bytes.Contains(out, []byte(`"oldest_arrival":"2026-11-28T10:00:00.123456789Z"`)) {
		t.Errorf("curl stats: %v\n%s", err, out)
	}
	out, err = exec.Command(curl, "-sS", "-w", "\n%{http_code}", "--unix-socket", path, "http://postern/v1/messages/"+id3).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"kind":"not_found"`)) || !bytes.HasSuffix(out, []byte("\n404")) {
		t.Errorf("curl show unknown: %v\n%s", err, out)
	}
}

// TestPeerOtherUserRefused: a client that is neither root nor the
// socket's owner gets 403, even when the socket's mode would let it
// connect (an operator's chmod). Needs root, to run curl as nobody.
func TestPeerOtherUserRefused(t *testing.T) {
	curl := testbed.Require(t, "curl")
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "control.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	q := newFake()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, q) }()
	t.Cleanup(func() { cancel(); <-done })

	asNobody := func() string {
		cmd := exec.Command(curl, "-sS", "-w", "\n%{http_code}", "--unix-socket", path, "http://postern/v1/stats")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	// Mode 0600: the kernel refuses the connection.
	if out := asNobody(); strings.Contains(out, `"messages"`) {
		t.Fatalf("nobody read the stats through a 0600 socket:\n%s", out)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	out := asNobody()
	if !strings.Contains(out, `"kind":"forbidden"`) || !strings.Contains(out, "uid 65534 may not use the control socket") || !strings.HasSuffix(out, "\n403") {
		t.Errorf("nobody through a 0666 socket:\n%s", out)
	}
	if n := q.callCount(); n != 0 {
		t.Errorf("the Queue was called %d times for a refused peer", n)
	}
}
