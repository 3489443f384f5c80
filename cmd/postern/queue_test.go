package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/relay/control"
	"github.com/postern-mta/postern/relay/spool"
)

// fakeDaemon is the daemon's side of the control socket, in memory: it
// answers from msgs and stats and records what it was asked.
type fakeDaemon struct {
	mu    sync.Mutex
	msgs  []control.MessageInfo
	stats control.Stats
	calls []string // "verb filter-or-ids"
}

func (d *fakeDaemon) record(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf(format, args...))
}

func (d *fakeDaemon) recorded() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

func (d *fakeDaemon) find(id string) (control.MessageInfo, bool) {
	for _, m := range d.msgs {
		if m.ID == id {
			return m, true
		}
	}
	return control.MessageInfo{}, false
}

func (d *fakeDaemon) List(_ context.Context, f control.Filter) ([]control.MessageInfo, error) {
	d.record("list %+v", f)
	var out []control.MessageInfo
	for _, m := range d.msgs {
		if f.Match(&m) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (d *fakeDaemon) Show(_ context.Context, id string) (control.MessageInfo, error) {
	d.record("show %s", id)
	if m, ok := d.find(id); ok {
		return m, nil
	}
	return control.MessageInfo{}, fmt.Errorf("message %s: %w", id, control.ErrNotFound)
}

func (d *fakeDaemon) Body(_ context.Context, id string) (io.ReadCloser, error) {
	d.record("body %s", id)
	if _, ok := d.find(id); ok {
		return io.NopCloser(strings.NewReader("Subject: " + id + "\r\n\r\nhi\r\n")), nil
	}
	return nil, fmt.Errorf("message %s: %w", id, control.ErrNotFound)
}

func (d *fakeDaemon) Flush(_ context.Context, f control.Filter) (int, error) {
	d.record("flush %+v", f)
	return 2, nil
}

func (d *fakeDaemon) Hold(_ context.Context, f control.Filter) (int, error) {
	d.record("hold %+v", f)
	return len(f.IDs), nil
}

func (d *fakeDaemon) Release(_ context.Context, ids []string) (int, error) {
	d.record("release %v", ids)
	return 1, fmt.Errorf("%w: %s", control.ErrNotFound, ids[len(ids)-1])
}

func (d *fakeDaemon) Delete(_ context.Context, ids []string, bounce bool) (int, error) {
	d.record("delete %v bounce=%v", ids, bounce)
	return len(ids), nil
}

func (d *fakeDaemon) Stats(context.Context) (control.Stats, error) {
	d.record("stats")
	return d.stats, nil
}

func (d *fakeDaemon) Reload(context.Context) error { return nil }

const (
	qid1 = "0123456789ABCDEF"
	qid2 = "0123456789ABCDEG"
	qid3 = "VVVVVVVVVVVVVVVV"
)

// newFakeDaemon has two messages, one with hostile strings in it, and
// stats with 25 destinations; it serves SPOOL/control.sock of a new
// directory until the test ends. It returns the directory.
func newFakeDaemon(t *testing.T) (*fakeDaemon, string) {
	t.Helper()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	d := &fakeDaemon{
		msgs: []control.MessageInfo{
			{ID: qid1, From: "alice@example.org", Arrival: t0, Size: 1234, Recipients: []control.RecipientInfo{
				{Addr: "bob@example.net", Status: control.StatusPending, Dest: "example.net", Attempts: 3,
					NextAttempt: t0.Add(time.Hour), LastAttempt: t0.Add(time.Minute), LastError: "451 4.3.0 try later\r\nbob@example.net delivered\x1b[2J"},
				{Addr: "carol@example.com", Status: control.StatusDelivered, Dest: "smarthost"},
			}},
			{ID: qid2, From: "", Arrival: t0.Add(time.Second), Size: 99, Held: true, Source: "dsn", Recipients: []control.RecipientInfo{
				{Addr: "alice@example.org", Status: control.StatusPending},
			}},
		},
		stats: control.Stats{Messages: 2, Recipients: 3, OldestArrival: t0, DestinationsDown: 1,
			ByState: map[string]int{control.StateDeferred: 1, control.StatusDelivered: 1, control.StateHeld: 1}},
	}
	for i := range 25 {
		d.stats.Destinations = append(d.stats.Destinations, control.DestStats{Dest: fmt.Sprintf("d%02d.example", i), Scheduled: i, Down: i == 3})
	}
	dir := t.TempDir()
	l, err := control.Listen(filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, d) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return d, dir
}

// TestQueueListDaemon: list asks the daemon and prints a block per
// message (ID, size, arrival, sender; each recipient with its status,
// attempts, times, destination, and its last error escaped on a line of
// its own) and the count.
func TestQueueListDaemon(t *testing.T) {
	_, dir := newFakeDaemon(t)
	code, out, errs := runCLI(t, "queue", "list", "--spool", dir)
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := qid1 + "      1234 2026-11-28T10:00:00Z <alice@example.org>\n" +
		"    <bob@example.net> deferred attempts=3 last=2026-11-28T10:01:00Z next=2026-11-28T11:00:00Z dest=example.net\n" +
		`        (451 4.3.0 try later\r\nbob@example.net delivered\x1b[2J)` + "\n" +
		"    <carol@example.com> delivered dest=smarthost\n" +
		"\n" +
		qid2 + "        99 2026-11-28T10:00:01Z <> held source=dsn\n" +
		"    <alice@example.org> pending\n" +
		"\n" +
		"-- 2 messages\n"
	if out != want {
		t.Errorf("list:\n%s\nwant:\n%s", out, want)
	}
}

// TestQueueListJSON: --json prints one JSON array that decodes to the
// daemon's messages.
func TestQueueListJSON(t *testing.T) {
	d, dir := newFakeDaemon(t)
	code, out, errs := runCLI(t, "queue", "list", "--json", "--spool", dir)
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "[") {
		t.Errorf("not one JSON array on one line:\n%s", out)
	}
	var got []control.MessageInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d.msgs) {
		t.Errorf("JSON:\n got %+v\nwant %+v", got, d.msgs)
	}
	if !strings.Contains(out, `"from":"alice@example.org"`) || !strings.Contains(out, `"next_attempt":"2026-11-28T11:00:00Z"`) {
		t.Errorf("field names or time format changed:\n%s", out)
	}
}

// TestQueueVerbsReachDaemon: each verb's arguments and flags reach the
// daemon as a Filter or IDs, and its count is printed; a partial failure
// prints the count and the daemon's error, exit 1.
func TestQueueVerbsReachDaemon(t *testing.T) {
	d, dir := newFakeDaemon(t)
	for _, tc := range []struct {
		args     []string
		call     string
		code     int
		out, err string
	}{
		{[]string{"list", "--domain", "example.org", "--held", "--limit", "5"}, "list {IDs:[] Domain:example.org Held:true Deferred:false All:false Limit:5}", 0, "", ""},
		{[]string{"flush"}, "flush {IDs:[] Domain: Held:false Deferred:false All:true Limit:0}", 0, "flushed 2 messages\n", ""},
		{[]string{"flush", "--domain", "example.net"}, "flush {IDs:[] Domain:example.net Held:false Deferred:false All:false Limit:0}", 0, "flushed 2 messages\n", ""},
		{[]string{"flush", qid1}, "flush {IDs:[" + qid1 + "] Domain: Held:false Deferred:false All:false Limit:0}", 0, "flushed 2 messages\n", ""},
		{[]string{"hold", qid1}, "hold {IDs:[" + qid1 + "] Domain: Held:false Deferred:false All:false Limit:0}", 0, "held 1 message\n", ""},
		{[]string{"release", qid1, qid3}, "release [" + qid1 + " " + qid3 + "]", 1, "released 1 message\n",
			"postern queue release: no such message in the queue: " + qid3 + "\n"},
		{[]string{"delete", "--bounce", qid1, qid2}, "delete [" + qid1 + " " + qid2 + "] bounce=true", 0, "deleted 2 messages\n", ""},
		{[]string{"delete", qid2}, "delete [" + qid2 + "] bounce=false", 0, "deleted 1 message\n", ""},
		{[]string{"show", qid3}, "show " + qid3, 1, "", "postern queue show: message " + qid3 + ": no such message in the queue\n"},
		{[]string{"show", "--body", qid2}, "body " + qid2, 0, "Subject: " + qid2 + "\r\n\r\nhi\r\n", ""},
	} {
		before := len(d.recorded())
		code, out, errs := runCLI(t, append(append([]string{"queue"}, tc.args...), "--spool", dir)...)
		calls := d.recorded()[before:]
		if len(calls) != 1 || calls[0] != tc.call {
			t.Errorf("%v: the daemon got %q, want %q", tc.args, calls, tc.call)
		}
		if code != tc.code || (tc.out != "" && out != tc.out) || errs != tc.err {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errs, tc.code, tc.out, tc.err)
		}
	}
}

// TestQueueShowText: show prints the message's block, without the count.
func TestQueueShowText(t *testing.T) {
	_, dir := newFakeDaemon(t)
	code, out, errs := runCLI(t, "queue", "show", qid2, "--spool", dir)
	want := qid2 + "        99 2026-11-28T10:00:01Z <> held source=dsn\n    <alice@example.org> pending\n"
	if code != exitOK || errs != "" || out != want {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errs, out, want)
	}
}

// TestQueueStats: stats prints the counts by state (in a fixed order),
// the oldest message's age and the 20 busiest destinations; --json the
// daemon's Stats.
func TestQueueStats(t *testing.T) {
	d, dir := newFakeDaemon(t)
	code, out, errs := runCLI(t, "queue", "stats", "--spool", dir)
	if code != exitOK || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	head := "messages: 2\nrecipients: 3\n  deferred: 1\n  held: 1\n  delivered: 1\noldest: 2026-11-28T10:00:00Z ("
	if !strings.HasPrefix(out, head) {
		t.Errorf("stats:\n%s\nwant it to start with:\n%s", out, head)
	}
	if !strings.Contains(out, " ago)\ndestinations down: 1\ndestinations (the 20 busiest of 25):\n  d24.example scheduled=24 ready=0 active=0\n") {
		t.Errorf("stats: no destinations, or not busiest first:\n%s", out)
	}
	if strings.Contains(out, "d04.example") || !strings.Contains(out, "d05.example") || strings.Count(out, " scheduled=") != 20 {
		t.Errorf("stats: not the top 20:\n%s", out)
	}
	code, out, _ = runCLI(t, "queue", "stats", "--json", "--spool", dir)
	var st control.Stats
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || !reflect.DeepEqual(st, d.stats) {
		t.Errorf("stats --json: exit %d, %v:\n%s", code, err, out)
	}
}

// TestQueueUsage: a malformed ID, an unknown verb, a flag of another
// verb, or a missing or conflicting selector is bad usage (exit 2); the
// daemon is not asked.
func TestQueueUsage(t *testing.T) {
	d, dir := newFakeDaemon(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"hold", "../etc"}, `postern queue hold: "../etc" is not a queue ID (16 characters of 0-9 and A-V)`},
		{[]string{"show", "0123456789abcdef"}, `"0123456789abcdef" is not a queue ID`},
		{[]string{"delete", qid1, "x"}, `"x" is not a queue ID`},
		{[]string{}, "postern queue: name what to do: list, show, flush, hold, release, delete, stats"},
		{[]string{"purge"}, `postern queue: unknown action "purge"`},
		{[]string{"show", qid1, "--json"}, "postern queue show: --json is not a flag of show"},
		{[]string{"list", "--offline"}, "--offline is not a flag of list"},
		{[]string{"release", qid1, "--bounce"}, "--bounce is not a flag of release"},
		{[]string{"list", "--held", "--deferred"}, "--held and --deferred exclude each other"},
		{[]string{"list", "--limit", "-1"}, "--limit must be 0 or more"},
		{[]string{"list", qid1}, "list takes no queue IDs"},
		{[]string{"show"}, "show takes one queue ID"},
		{[]string{"show", qid1, qid2}, "show takes one queue ID"},
		{[]string{"hold"}, "give queue IDs or --domain"},
		{[]string{"hold", qid1, "--domain", "x.example"}, "give queue IDs or --domain"},
		{[]string{"flush", qid1, "--all"}, "only one of them"},
		{[]string{"release"}, "release needs queue IDs"},
		{[]string{"delete", "--bounce"}, "delete needs queue IDs"},
		{[]string{"stats", "extra"}, "stats takes no queue IDs"},
		{[]string{"list", "--nope"}, "flag provided but not defined: -nope"},
	} {
		code, out, errs := runCLI(t, append(append([]string{"queue"}, tc.args...), "--spool", dir)...)
		if code != exitUsage || out != "" || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errs, tc.msg)
		}
	}
	if calls := d.recorded(); len(calls) != 0 {
		t.Errorf("the daemon was asked: %q", calls)
	}
}

// realSpool writes a spool with two messages (the second held) and no
// daemon; it returns the directory, the IDs and the first body.
func realSpool(t *testing.T) (dir, a, b, bodyA string) {
	t.Helper()
	dir = t.TempDir()
	sp, err := spool.Open(dir, spool.Options{})
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
		return id
	}
	bodyA = "Received: by relay\r\nSubject: a\r\n\r\nhello\r\n"
	a = put(&spool.Envelope{From: "alice@example.org", Recipients: []spool.Recipient{{Addr: "bob@example.net"}}}, bodyA)
	b = put(&spool.Envelope{From: "carol@example.org", Recipients: []spool.Recipient{{Addr: "dave@example.com"}}}, "Subject: b\r\n\r\n")
	st := &spool.State{}
	st.Set(0, spool.RcptState{Attempts: 1, NextAttempt: time.Now().Add(time.Hour), LastError: "421 4.4.2 timeout"})
	if err := sp.WriteState(a, st); err != nil {
		t.Fatal(err)
	}
	if err := sp.WriteState(b, &spool.State{Hold: true}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, a, b, bodyA
}

func readState(t *testing.T, dir, id string) *spool.State {
	t.Helper()
	sp, err := spool.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sp.ReadState(id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestQueueNoDaemonReadsSpool: with no daemon (no socket, or a stale
// one a crashed daemon left), list, show and stats read the spool
// directly and say so on standard error.
func TestQueueNoDaemonReadsSpool(t *testing.T) {
	dir, a, b, bodyA := realSpool(t)
	notice := "postern queue: no daemon on " + filepath.Join(dir, "control.sock") + ": reading the spool directly\n"
	for _, stale := range []bool{false, true} {
		if stale {
			ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "control.sock"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ul.SetUnlinkOnClose(false)
			ul.Close()
		}
		code, out, errs := runCLI(t, "queue", "list", "--spool", dir)
		if code != exitOK || errs != notice {
			t.Fatalf("stale=%v: list: exit %d, stderr %q", stale, code, errs)
		}
		if !strings.Contains(out, a+" ") || !strings.Contains(out, "<bob@example.net> deferred attempts=1") ||
			!strings.Contains(out, "(421 4.4.2 timeout)") || !strings.Contains(out, "<carol@example.org> held") ||
			!strings.HasSuffix(out, "\n-- 2 messages\n") {
			t.Errorf("stale=%v: list:\n%s", stale, out)
		}
	}
	code, out, errs := runCLI(t, "queue", "list", "--held", "--spool", dir)
	if code != exitOK || strings.Contains(out, a) || !strings.Contains(out, b) {
		t.Errorf("list --held: exit %d, %s\n%s", code, errs, out)
	}
	code, out, errs = runCLI(t, "queue", "show", a, "--body", "--spool", dir)
	if code != exitOK || out != bodyA || errs != notice {
		t.Errorf("show --body: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "queue", "stats", "--spool", dir)
	if code != exitOK || !strings.HasPrefix(out, "messages: 2\nrecipients: 2\n  deferred: 1\n  held: 1\n") ||
		!strings.HasSuffix(out, "destinations: not known without the daemon\n") {
		t.Errorf("stats: exit %d:\n%s", code, out)
	}
	code, _, errs = runCLI(t, "queue", "show", qid3, "--spool", dir)
	if code != exitFailed || !strings.Contains(errs, "no such message in the queue: "+qid3) {
		t.Errorf("show (not queued): exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI(t, "queue", "list", "--spool", filepath.Join(dir, "nothing"))
	if code != exitFailed || !strings.Contains(errs, "not a spool") {
		t.Errorf("list of no spool: exit %d, stderr %q", code, errs)
	}
}

// TestQueueNoDaemonRefusesChanges: with no daemon, a verb that changes
// the queue exits 1 naming --offline, and changes nothing.
func TestQueueNoDaemonRefusesChanges(t *testing.T) {
	dir, a, b, _ := realSpool(t)
	for _, args := range [][]string{{"hold", a}, {"release", b}, {"flush", "--all"}, {"delete", a}} {
		code, out, errs := runCLI(t, append(append([]string{"queue"}, args...), "--spool", dir)...)
		want := "postern queue " + args[0] + ": no daemon on " + filepath.Join(dir, "control.sock") +
			": to change the spool without it, run again with --offline (it takes the spool lock)\n"
		if code != exitFailed || out != "" || errs != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if readState(t, dir, a).Hold || !readState(t, dir, b).Hold || readState(t, dir, a).Get(0).NextAttempt.IsZero() {
		t.Error("a state changed")
	}
}

// TestQueueOffline: --offline changes the state files under the spool
// lock; --bounce and a held lock are refused with their reasons.
func TestQueueOffline(t *testing.T) {
	dir, a, b, _ := realSpool(t)
	run := func(args ...string) (int, string, string) {
		return runCLI(t, append(append([]string{"queue"}, args...), "--spool", dir, "--offline")...)
	}
	if code, out, errs := run("hold", a); code != exitOK || out != "held 1 message\n" || errs != "" || !readState(t, dir, a).Hold {
		t.Errorf("hold: exit %d, %q, %q", code, out, errs)
	}
	if code, out, _ := run("release", a, b); code != exitOK || out != "released 2 messages\n" || readState(t, dir, a).Hold || readState(t, dir, b).Hold {
		t.Errorf("release: exit %d, %q", code, out)
	}
	if code, out, _ := run("flush"); code != exitOK || out != "flushed 1 message\n" || !readState(t, dir, a).Get(0).NextAttempt.IsZero() {
		t.Errorf("flush: exit %d, %q", code, out)
	}
	if code, out, errs := run("delete", b, "--bounce"); code != exitFailed || out != "" ||
		!strings.Contains(errs, "--bounce needs the running daemon (it sends the DSN)") {
		t.Errorf("delete --bounce: exit %d, %q, %q", code, out, errs)
	}
	if code, out, _ := run("delete", b); code != exitOK || out != "deleted 1 message\n" {
		t.Errorf("delete: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "queue", "list", "--spool", dir); code != exitOK || strings.Contains(out, b) || !strings.Contains(out, a) {
		t.Errorf("after delete: exit %d:\n%s", code, out)
	}

	sp, err := spool.Open(dir, spool.Options{}) // a daemon holds the lock
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	code, out, errs := run("hold", a)
	if code != exitFailed || out != "" || !strings.Contains(errs, "locked by pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("hold --offline while locked: exit %d, %q, %q", code, out, errs)
	}
	if readState(t, dir, a).Hold {
		t.Error("held while the lock was taken")
	}
}

// TestQueueHelpListsVerbs: -h names every verb's synopsis.
func TestQueueHelpListsVerbs(t *testing.T) {
	code, _, errs := runCLI(t, "queue", "-h")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, v := range queueVerbs {
		if !strings.Contains(errs, "postern queue "+v+" ") {
			t.Errorf("-h has no synopsis for %s:\n%s", v, errs)
		}
	}
}
