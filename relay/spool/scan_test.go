package spool

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestDamagedFiles: a truncated body, a short file, a bad header, garbage
// in the envelope and a foreign file name are found by Scan, moved to
// corrupt/ (with the state file), logged at error level, and the others
// are still listed; a flipped body byte passes Scan (which reads no
// bodies) and is caught by Load's CRC check, which moves it too.
func TestDamagedFiles(t *testing.T) {
	logger, logs := captureLog()
	s := openTest(t, Options{Logger: logger})
	body := testBody(5000)
	var ids []string
	for range 6 {
		ids = append(ids, queue(t, s, testEnvelope(), body))
	}
	truncated, flipped, badHeader, badJSON, good1, good2 := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	path := s.msgPath
	if err := s.WriteState(truncated, &State{Hold: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteState(good1, &State{Rcpt: map[int]RcptState{1: {Attempts: 2}}}); err != nil {
		t.Fatal(err)
	}
	poke := func(id string, off int64, b byte) {
		f, err := os.OpenFile(path(id), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{b}, off); err != nil {
			t.Fatal(err)
		}
	}
	fi, _ := os.Stat(path(truncated))
	if err := os.Truncate(path(truncated), fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(path(flipped))
	poke(flipped, fi.Size()-3, 'Z')
	poke(badHeader, 0, 'X')
	poke(badJSON, headerLen, '#')
	short := NewID(time.Now(), nil)
	if err := os.MkdirAll(filepath.Dir(path(short)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path(short), []byte("PSPOOL1 000"), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(filepath.Dir(path(good2)), "notes.txt")
	if err := os.WriteFile(foreign, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	found := map[string]Entry{}
	stats, err := s.Scan(func(e Entry) error { found[e.ID] = e; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if stats.Corrupt != 5 || stats.Messages != 3 {
		t.Errorf("Scan stats %+v, want 5 corrupt, 3 messages", stats)
	}
	var listed []string
	for id := range found {
		listed = append(listed, id)
	}
	sort.Strings(listed)
	want := []string{flipped, good1, good2}
	sort.Strings(want)
	if !reflect.DeepEqual(listed, want) {
		t.Errorf("Scan listed %q, want %q", listed, want)
	}
	if e := found[good1]; e.State.Get(1).Attempts != 2 || e.Size != int64(len(body)) || e.Envelope.From != "alice@example.org" {
		t.Errorf("entry %+v", e)
	}
	corrupt := files(t, filepath.Join(s.Dir(), "corrupt"))
	wantCorrupt := []string{truncated, truncated + ".state", badHeader, badJSON, short, subdir(good2) + "-notes.txt"}
	sort.Strings(wantCorrupt)
	if !reflect.DeepEqual(corrupt, wantCorrupt) {
		t.Errorf("corrupt/ holds %q, want %q", corrupt, wantCorrupt)
	}
	for _, id := range []string{truncated, badHeader, badJSON, short} {
		if !hasErrorLog(t, logs.String(), id) {
			t.Errorf("no error-level log record for %s in\n%s", id, logs)
		}
	}

	// Load checks the CRC: the flipped byte is caught and moved.
	if _, err := s.Load(flipped); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load of a flipped byte = %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(path(flipped)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("damaged %s still in msg/: %v", flipped, err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "corrupt", flipped)); err != nil {
		t.Errorf("damaged %s not in corrupt/: %v", flipped, err)
	}
	if !hasErrorLog(t, logs.String(), flipped) {
		t.Errorf("no error-level log record for %s", flipped)
	}
	for _, id := range []string{good1, good2} {
		m, err := s.Load(id)
		if err != nil {
			t.Fatalf("Load of an intact message: %v", err)
		}
		got, _ := io.ReadAll(m.Body)
		m.Close()
		if !bytes.Equal(got, body) {
			t.Errorf("%s: body changed", id)
		}
	}
	// Load also refuses what Scan refused, had it not been moved.
	if _, err := s.Load(badHeader); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a quarantined message = %v, want ErrNotExist", err)
	}
}

// hasErrorLog reports whether the JSON log holds an ERROR record naming id.
func hasErrorLog(t *testing.T, logs, id string) bool {
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["level"] == "ERROR" && strings.Contains(line, id) {
			return true
		}
	}
	return false
}

// TestLoadRefusesBadIDs: Load and the state methods take IDs only, never
// paths.
func TestLoadRefusesBadIDs(t *testing.T) {
	s := openTest(t, Options{})
	for _, id := range []string{"../lock", "../../../../etc/passwd", "", "lock"} {
		if _, err := s.Load(id); !errors.Is(err, ErrBadID) {
			t.Errorf("Load(%q) = %v, want ErrBadID", id, err)
		}
		if _, err := s.ReadState(id); !errors.Is(err, ErrBadID) {
			t.Errorf("ReadState(%q) = %v, want ErrBadID", id, err)
		}
		if err := s.WriteState(id, &State{}); !errors.Is(err, ErrBadID) {
			t.Errorf("WriteState(%q) = %v, want ErrBadID", id, err)
		}
		if err := s.Remove(id); !errors.Is(err, ErrBadID) {
			t.Errorf("Remove(%q) = %v, want ErrBadID", id, err)
		}
		if _, _, err := s.Head(id); !errors.Is(err, ErrBadID) {
			t.Errorf("Head(%q) = %v, want ErrBadID", id, err)
		}
	}
	if _, err := s.Load(NewID(time.Now(), nil)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of an unknown ID = %v, want ErrNotExist", err)
	}
}

// TestState: a message without a state file is all pending; written
// states read back equal, leave nothing in tmp/, and Remove deletes state
// and message; a state file that does not decode is reported as corrupt.
func TestState(t *testing.T) {
	s := openTest(t, Options{})
	id := queue(t, s, testEnvelope(), []byte("body\r\n"))
	st, err := s.ReadState(id)
	if err != nil || st.Hold || len(st.Rcpt) != 0 || st.Done(2) {
		t.Fatalf("ReadState without a file = %+v, %v; want zero", st, err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	want := &State{Hold: true}
	want.Set(0, RcptState{Status: StatusDelivered, Attempts: 1, LastAttempt: at})
	want.Set(1, RcptState{Attempts: 3, NextAttempt: at.Add(time.Hour), LastAttempt: at, LastError: "451 4.3.0 try later", NotifyNum: 1, Relayed: true})
	if err := s.WriteState(id, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadState(id)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadState = %+v, %v; want %+v", got, err, want)
	}
	if got.Done(2) {
		t.Error("Done with a pending recipient")
	}
	got.Set(1, RcptState{Status: StatusFailed})
	if !got.Done(2) {
		t.Error("not Done with both recipients final")
	}
	if f := files(t, filepath.Join(s.Dir(), "tmp")); len(f) != 0 {
		t.Errorf("left in tmp/: %q", f)
	}
	if fi, err := os.Stat(s.statePath(id)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, %v", fi, err)
	}

	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{s.statePath(id), s.msgPath(id)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Remove: %v", p, err)
		}
	}
	if err := s.Remove(id); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second Remove = %v, want ErrNotExist", err)
	}

	id2 := queue(t, s, testEnvelope(), []byte("body\r\n"))
	if err := os.MkdirAll(filepath.Dir(s.statePath(id2)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.statePath(id2), nil, 0o600); err != nil { // as an unsynced file may be after a power cut
		t.Fatal(err)
	}
	if _, err := s.ReadState(id2); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadState of an empty file = %v, want ErrCorrupt", err)
	}
	var entry Entry
	stats, err := s.Scan(func(e Entry) error { entry = e; return nil })
	if err != nil || stats.BadStates != 1 || stats.Messages != 1 || entry.ID != id2 || entry.State.Hold || len(entry.State.Rcpt) != 0 {
		t.Errorf("Scan with a bad state: %+v, %+v, %v", stats, entry, err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "corrupt", id2+".state")); err != nil {
		t.Errorf("bad state not moved to corrupt/: %v", err)
	}
}

// TestScanStops: an error from fn stops Scan and is returned.
func TestScanStops(t *testing.T) {
	s := openTest(t, Options{})
	for range 20 {
		queue(t, s, testEnvelope(), []byte("x\r\n"))
	}
	stop := errors.New("enough")
	calls := 0
	_, err := s.Scan(func(Entry) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Scan = %v after %d calls, want %v after 1", err, calls, stop)
	}
}

// TestRecovery: a daemon killed with SIGKILL (a child process) leaves its
// committed message, an unfinished receipt in tmp/ and a stale lock;
// while it lives, Open fails with its pid and OpenReadOnly lists the
// queue; after the kill, Open takes the lock, empties tmp/, deletes an
// orphan state and loads the states, and the message reads back intact.
func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldSpool$")
	cmd.Env = append(os.Environ(), "SPOOL_HELPER_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // never written: the helper blocks reading it until killed
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var id string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
			id = rest
			break
		}
	}
	if !ValidID(id) {
		t.Fatalf("helper did not report a queue ID (%v)", sc.Err())
	}

	_, err = Open(dir, Options{})
	var locked *LockedError
	if !errors.As(err, &locked) || locked.PID != cmd.Process.Pid {
		t.Fatalf("Open of a locked spool = %v, want LockedError with pid %d", err, cmd.Process.Pid)
	}
	if want := fmt.Sprintf("spool %s locked by pid %d", dir, cmd.Process.Pid); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	stats, err := ro.Scan(func(e Entry) error { seen = append(seen, e.ID); return nil })
	if err != nil || !reflect.DeepEqual(seen, []string{id}) || stats.OrphanStates != 1 {
		t.Errorf("read-only Scan while locked: %q, %+v, %v", seen, stats, err)
	}
	if err := ro.Close(); err != nil {
		t.Error(err)
	}

	cmd.Process.Kill()
	cmd.Wait()
	if f := files(t, filepath.Join(dir, "tmp")); len(f) == 0 {
		t.Fatal("the helper left no receipt in tmp/: the test proves nothing")
	}

	s := openTestFS(t, dir, Options{}, osFS())
	if f := files(t, filepath.Join(dir, "tmp")); len(f) != 0 {
		t.Errorf("tmp/ after Open: %q", f)
	}
	var entries []Entry
	stats, err = s.Scan(func(e Entry) error { entries = append(entries, e); return nil })
	if err != nil || len(entries) != 1 || stats.OrphanStates != 1 || stats.Corrupt != 0 {
		t.Fatalf("Scan after the crash: %+v, %d entries, %v", stats, len(entries), err)
	}
	if e := entries[0]; e.ID != id || e.State.Get(0).Attempts != 1 || e.State.Get(0).LastError != "451 4.3.0 later" {
		t.Errorf("entry %+v, state %+v", e, e.State)
	}
	if states := files(t, filepath.Join(dir, "state")); len(states) != 1 {
		t.Errorf("state/ after Scan holds %q, want the one state", states)
	}
	m, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, _ := io.ReadAll(m.Body)
	if !bytes.Equal(got, helperBody) {
		t.Errorf("body after the crash: %q", got)
	}
	lock, _ := os.ReadFile(filepath.Join(dir, "lock"))
	if strings.TrimSpace(string(lock)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid %d", lock, os.Getpid())
	}
}

var helperBody = []byte("Subject: crash test\r\n\r\nhello\r\n")

// TestHelperHoldSpool is the daemon of TestRecovery, run as a child
// process: it commits a message, writes its state and an orphan state,
// starts a receipt it never finishes, reports, and waits to be killed.
func TestHelperHoldSpool(t *testing.T) {
	dir := os.Getenv("SPOOL_HELPER_DIR")
	if dir == "" {
		t.Skip("run by TestRecovery")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := queue(t, s, testEnvelope(), helperBody)
	st := &State{}
	st.Set(0, RcptState{Attempts: 1, LastError: "451 4.3.0 later"})
	if err := s.WriteState(id, st); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteState(NewID(time.Now(), nil), &State{Hold: true}); err != nil { // no message: an orphan
		t.Fatal(err)
	}
	r, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write([]byte("half a message")); err != nil {
		t.Fatal(err)
	}
	r.w.Flush()
	fmt.Printf("ready %s\n", id)
	io.Copy(io.Discard, os.Stdin) // until killed
	t.Fatal("stdin closed before the helper was killed")
}

// TestReadOnly: a read-only spool lists and loads but refuses writes, and
// OpenReadOnly of a directory that is no spool fails.
func TestReadOnly(t *testing.T) {
	s := openTest(t, Options{})
	id := queue(t, s, testEnvelope(), []byte("hi\r\n"))
	ro, err := OpenReadOnly(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if m, err := ro.Load(id); err != nil {
		t.Errorf("read-only Load: %v", err)
	} else {
		m.Close()
	}
	if _, err := ro.Create(testEnvelope()); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Create = %v", err)
	}
	if err := ro.WriteState(id, &State{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteState = %v", err)
	}
	if err := ro.Remove(id); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Remove = %v", err)
	}
	if err := ro.Sync(); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Sync = %v", err)
	}
	// A damaged file is reported, not moved.
	if err := os.WriteFile(s.msgPath(id), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	stats, err := ro.Scan(func(Entry) error { return nil })
	if err != nil || stats.Corrupt != 1 {
		t.Errorf("read-only Scan: %+v, %v", stats, err)
	}
	if _, err := ro.Load(id); !errors.Is(err, ErrCorrupt) {
		t.Errorf("read-only Load of garbage = %v", err)
	}
	if _, err := os.Stat(s.msgPath(id)); err != nil {
		t.Errorf("read-only spool moved a file: %v", err)
	}
	if _, err := OpenReadOnly(t.TempDir()); err == nil {
		t.Error("OpenReadOnly of an empty directory succeeded")
	}
}

// TestSync: Sync succeeds on a writable spool (syncfs on its file system)
// and Close syncs too.
func TestSync(t *testing.T) {
	s := openTest(t, Options{})
	id := queue(t, s, testEnvelope(), []byte("x\r\n"))
	if err := s.WriteState(id, &State{Hold: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close = %v, want ErrClosed", err)
	}
}

// TestHead: Head gives the envelope and the body's size without reading
// the body, so a flipped body byte passes it (Load, which checks the
// CRC, catches it); a damaged header or envelope is moved to corrupt/ as
// Load does.
func TestHead(t *testing.T) {
	s := openTest(t, Options{})
	body := testBody(5000)
	good := queue(t, s, testEnvelope(), body)
	env, size, err := s.Head(good)
	if err != nil || size != int64(len(body)) || !reflect.DeepEqual(env.Recipients, testEnvelope().Recipients) || env.From != testEnvelope().From {
		t.Fatalf("Head = %+v, %d, %v; want the envelope and size %d", env, size, err, len(body))
	}
	flipped := queue(t, s, testEnvelope(), body)
	fi, _ := os.Stat(s.msgPath(flipped))
	f, err := os.OpenFile(s.msgPath(flipped), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'Z'}, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := s.Head(flipped); err != nil {
		t.Errorf("Head of a message with a damaged body = %v, want no error (the CRC is Load's)", err)
	}
	if _, err := s.Load(flipped); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Load of a damaged body = %v, want ErrCorrupt", err)
	}
	badJSON := queue(t, s, testEnvelope(), body)
	f, err = os.OpenFile(s.msgPath(badJSON), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'#'}, headerLen); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := s.Head(badJSON); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Head of a damaged envelope = %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, dirCorrupt, badJSON)); err != nil {
		t.Errorf("the damaged message is not in corrupt/: %v", err)
	}
	if _, _, err := s.Head(NewID(time.Now(), nil)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Head of an unknown ID = %v, want ErrNotExist", err)
	}
}
