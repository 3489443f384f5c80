package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

// TestScanBatches: a directory of more messages than a scan batch, with
// states (one larger than the scan's buffer) and damaged files in
// different batches, lists every good message once with its own envelope
// and state, moves the damaged ones, and leaves no file open, also when
// fn stops the scan.
func TestScanBatches(t *testing.T) {
	s := openTest(t, sameDir())
	batch := scanBatchSize(1) // one directory: one worker
	n := 3*batch + 7
	want := map[string]*Entry{}
	var ids []string
	for i := range n {
		env := testEnvelope()
		env.From = fmt.Sprintf("sender%d@example.org", i)
		body := testBody(100 + i)
		id := queue(t, s, env, body)
		ids = append(ids, id)
		want[id] = &Entry{ID: id, State: &State{}, Size: int64(len(body))}
	}
	sort.Strings(ids)
	if subdir(ids[0]) != subdir(ids[n-1]) {
		t.Fatal("the messages are not in one directory: the test proves nothing")
	}
	big := &State{}
	for i := range 300 {
		big.Set(i, RcptState{Attempts: i, LastError: strings.Repeat("x", 40)})
	}
	for i, id := range ids {
		var st *State
		switch {
		case i == batch+1:
			st = big
		case i%7 == 0:
			st = &State{Rcpt: map[int]RcptState{1: {Attempts: i}}}
		}
		if st != nil {
			if err := s.WriteState(id, st); err != nil {
				t.Fatal(err)
			}
			want[id].State = st
		}
	}
	if fi, err := os.Stat(s.statePath(ids[batch+1])); err != nil || fi.Size() <= headPage {
		t.Fatalf("the large state is %v bytes (%v), want more than %d", fi.Size(), err, headPage)
	}
	damaged := []string{ids[3], ids[batch], ids[2*batch+5]}
	for _, id := range damaged {
		if err := os.Truncate(s.msgPath(id), 50); err != nil {
			t.Fatal(err)
		}
		delete(want, id)
	}

	fds := openFDs(t)
	got := map[string]Entry{}
	stats, err := s.Scan(func(e Entry) error {
		if _, dup := got[e.ID]; dup {
			t.Errorf("%s listed twice", e.ID)
		}
		got[e.ID] = e
		return nil
	})
	if err != nil || stats.Messages != len(want) || stats.Corrupt != len(damaged) {
		t.Fatalf("Scan: %+v, %v; want %d messages, %d corrupt", stats, err, len(want), len(damaged))
	}
	for id, w := range want {
		e, ok := got[id]
		switch {
		case !ok:
			t.Errorf("%s not listed", id)
		case e.Size != w.Size || !reflect.DeepEqual(e.State, w.State):
			t.Errorf("%s: size %d, state %+v; want %d, %+v", id, e.Size, e.State, w.Size, w.State)
		case e.Envelope.From != fmt.Sprintf("sender%d@example.org", e.Size-100):
			t.Errorf("%s has the envelope of another message: from %q", id, e.Envelope.From)
		}
	}
	for _, id := range damaged {
		if _, err := os.Stat(filepath.Join(s.Dir(), dirCorrupt, id)); err != nil {
			t.Errorf("damaged %s not in corrupt/: %v", id, err)
		}
	}
	if now := openFDs(t); now != fds {
		t.Errorf("%d files open after Scan, %d before", now, fds)
	}

	stop := errors.New("enough")
	calls := 0
	if _, err := s.Scan(func(Entry) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("stopped Scan = %v after %d calls", err, calls)
	}
	if now := openFDs(t); now != fds {
		t.Errorf("%d files open after a stopped Scan, %d before", now, fds)
	}
}

// TestScanOddFiles: a symbolic link and a FIFO among the messages are
// damaged files (the FIFO does not block the scan); a state that is a
// directory or a symbolic link is a damaged state, moved to corrupt/,
// its message listed as never tried; a state file removed between the
// listing and the read is no state.
func TestScanOddFiles(t *testing.T) {
	logger, logs := captureLog()
	s := openTest(t, Options{Logger: logger})
	good := queue(t, s, testEnvelope(), []byte("hello\r\n"))
	dirState := queue(t, s, testEnvelope(), []byte("hello\r\n"))
	linkState := queue(t, s, testEnvelope(), []byte("hello\r\n"))
	for _, id := range []string{dirState, linkState} {
		if err := s.WriteState(id, &State{Hold: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(s.statePath(dirState)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.statePath(dirState), 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(`{"hold":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.statePath(linkState)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, s.statePath(linkState)); err != nil {
		t.Fatal(err)
	}
	link := NewID(time.Now(), nil)
	fifo := NewID(time.Now(), nil)
	for _, id := range []string{link, fifo} {
		if err := os.MkdirAll(filepath.Dir(s.msgPath(id)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(s.msgPath(good), s.msgPath(link)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(s.msgPath(fifo), 0o600); err != nil {
		t.Fatal(err)
	}

	got := map[string]Entry{}
	stats, err := s.Scan(func(e Entry) error { got[e.ID] = e; return nil })
	if err != nil || stats.Messages != 3 || stats.Corrupt != 2 || stats.BadStates != 2 {
		t.Fatalf("Scan: %+v, %v; want 3 messages, 2 corrupt, 2 bad states", stats, err)
	}
	for _, id := range []string{good, dirState, linkState} {
		if e, ok := got[id]; !ok || e.State.Hold || len(e.State.Rcpt) != 0 {
			t.Errorf("%s: listed %v, state %+v; want listed, never tried", id, ok, e.State)
		}
	}
	corrupt := files(t, filepath.Join(s.Dir(), dirCorrupt))
	if want := sortedCopy([]string{link, fifo, linkState + ".state"}); !reflect.DeepEqual(corrupt, want) {
		t.Errorf("corrupt/ holds %q, want %q (and a directory)", corrupt, want)
	}
	if fi, err := os.Lstat(filepath.Join(s.Dir(), dirCorrupt, dirState+".state")); err != nil || !fi.IsDir() {
		t.Errorf("the directory state is not in corrupt/: %v", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("the target of the linked state was touched: %v", err)
	}
	for _, id := range []string{link, fifo, dirState, linkState} {
		if !hasErrorLog(t, logs.String(), id) {
			t.Errorf("no error-level log record for %s", id)
		}
	}

	// A state listed but gone when read: the message is never tried.
	d, err := os.Open(filepath.Dir(s.msgPath(good)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sd, err := os.Open(filepath.Dir(s.statePath(dirState)))
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	dirs := batchDirs{msg: int(d.Fd()), state: int(sd.Fd()), openat: osFS().openat}
	f := dirs.open(good, true) // good has no state file
	if f.err != nil || f.fd < 0 || f.stateErr != nil || f.stateFD != -1 || f.retry {
		t.Errorf("open with a vanished state: %+v", f)
	}
	f.close()
}

// TestScanOpenFilesLimit: when opening a file fails with EMFILE, the scan
// opens it again once the files before it in its batch are closed, so a
// low limit slows the scan but loses nothing (a message's or a state's
// open may fail); when the limit persists, Scan fails with an error that
// says so, and no file is taken for damaged.
func TestScanOpenFilesLimit(t *testing.T) {
	dir := t.TempDir()
	s0 := openTestFS(t, dir, sameDir(), osFS())
	var ids []string
	for i := range 2*scanBatchSize(1) + 3 {
		id := queue(t, s0, testEnvelope(), []byte("hello\r\n"))
		ids = append(ids, id)
		if i%2 == 0 {
			if err := s0.WriteState(id, &State{Rcpt: map[int]RcptState{0: {Attempts: 1}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s0.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		fail func(attempt int, hasState bool) bool // whether the attempt-th open of a name fails
		ok   bool
	}{
		{"message once", func(a int, _ bool) bool { return a == 1 }, true},
		{"state once", func(a int, st bool) bool { return st && a == 2 }, true},
		{"always", func(int, bool) bool { return true }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			attempts := map[string]int{}
			failed := 0
			fs := osFS()
			fs.openat = func(dirfd int, name string, flags int) (int, error) {
				mu.Lock()
				attempts[name]++
				a := attempts[name]
				_, statErr := os.Stat(filepath.Join(dir, dirState, subdir(name), name))
				fail := c.fail(a, statErr == nil)
				if fail {
					failed++
				}
				mu.Unlock()
				if fail {
					return -1, unix.EMFILE
				}
				return unix.Openat(dirfd, name, flags, 0)
			}
			s := openTestFS(t, dir, Options{}, fs)
			fds := openFDs(t)
			got := map[string]*State{}
			stats, err := s.Scan(func(e Entry) error { got[e.ID] = e.State; return nil })
			if now := openFDs(t); now != fds {
				t.Errorf("%d files open after Scan, %d before", now, fds)
			}
			if failed == 0 {
				t.Fatal("no open failed: the test proves nothing")
			}
			if corrupt := files(t, filepath.Join(dir, dirCorrupt)); len(corrupt) != 0 || stats.Corrupt != 0 || stats.BadStates != 0 {
				t.Errorf("EMFILE taken for damage: %+v, corrupt/ holds %q", stats, corrupt)
			}
			if !c.ok {
				if !errors.Is(err, syscall.EMFILE) || !strings.Contains(err.Error(), "open-files limit") {
					t.Errorf("Scan with no file to spare = %v, want EMFILE and advice", err)
				}
				if f := files(t, filepath.Join(dir, dirMsg)); len(f) != len(ids) {
					t.Errorf("msg/ holds %d files, want %d", len(f), len(ids))
				}
				return
			}
			if err != nil || stats.Messages != len(ids) || len(got) != len(ids) {
				t.Fatalf("Scan: %+v, %v; %d listed, want %d", stats, err, len(got), len(ids))
			}
			for i, id := range ids {
				if want := map[bool]int{true: 1}[i%2 == 0]; got[id].Get(0).Attempts != want {
					t.Errorf("%s: state %+v, want %d attempts", id, got[id], want)
				}
			}
		})
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
