package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRoundTrip: what Create/Write/Commit stored, Load gives back: the
// same envelope (with the arrival time of Create) and the same body bytes,
// in a file with the documented header, mode 0600 in 0700 directories.
func TestRoundTrip(t *testing.T) {
	clock := &fixedClock{t: time.Date(2025, 6, 1, 12, 0, 0, 123_456_789, time.UTC)}
	s := openTestFS(t, filepath.Join(t.TempDir(), "spool"), Options{Now: clock.Now}, osFS()) // Open creates it
	env := testEnvelope()
	env.Arrival = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) // replaced by Create
	body := testBody(200 << 10)                               // several buffer flushes

	r, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(body, 1000) {
		if _, err := r.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if r.Size() != int64(len(body)) {
		t.Errorf("Size = %d, want %d", r.Size(), len(body))
	}
	id, err := r.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if id != r.ID() || !ValidID(id) {
		t.Fatalf("Commit id %q, Receipt.ID %q", id, r.ID())
	}
	if at, _ := ParseID(id); !at.Equal(clock.Now().Truncate(time.Millisecond)) {
		t.Errorf("ID time %v, clock %v", at, clock.Now())
	}
	if !r.Arrival().Equal(clock.Now()) {
		t.Errorf("Arrival %v, clock %v", r.Arrival(), clock.Now())
	}
	if env.Arrival.Year() != 1999 {
		t.Error("Create changed the caller's envelope")
	}

	m, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := testEnvelope()
	want.Arrival = clock.Now()
	if !reflect.DeepEqual(m.Envelope, want) {
		t.Errorf("envelope:\n got %+v\nwant %+v", m.Envelope, want)
	}
	got, err := io.ReadAll(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) || m.Size != int64(len(body)) || m.ID != id {
		t.Errorf("body: %d bytes (Size %d), want %d identical bytes", len(got), m.Size, len(body))
	}

	raw, err := os.ReadFile(filepath.Join(s.Dir(), "msg", subdir(id), id))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^PSPOOL1 \d{10} \d{16} [0-9a-f]{8}\n\{`).Match(raw) {
		t.Errorf("file starts %q", raw[:60])
	}
	if got := files(t, s.Dir()); !reflect.DeepEqual(got, []string{"lock", filepath.Join("msg", subdir(id), id)}) {
		t.Errorf("spool holds %q", got)
	}
	for _, p := range []string{"", "tmp", "msg", "state", "corrupt", "msg/" + subdir(id)} {
		fi, err := os.Stat(filepath.Join(s.Dir(), p))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s/: mode %v, %v; want 0700", p, fi.Mode().Perm(), err)
		}
	}
	for _, p := range []string{"lock", filepath.Join("msg", subdir(id), id)} {
		fi, err := os.Stat(filepath.Join(s.Dir(), p))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", p, fi.Mode().Perm(), err)
		}
	}
}

// TestEmptyBody: a message with no body bytes round-trips too.
func TestEmptyBody(t *testing.T) {
	s := openTest(t, Options{})
	id := queue(t, s, testEnvelope(), nil)
	m, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Size != 0 || m.Body.Size() != 0 {
		t.Errorf("Size %d, body %d", m.Size, m.Body.Size())
	}
}

// TestCommitFaults: a failure injected at each step of intake makes
// Commit (or the Write before it) fail with the right class of error,
// leaves no file in tmp/ or msg/, and queues nothing.
func TestCommitFaults(t *testing.T) {
	eio := &os.PathError{Op: "write", Path: "x", Err: syscall.EIO}
	enospc := &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}
	edquot := &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}
	isMsgSubdir := func(s *Spool, dir string) bool { return filepath.Dir(dir) == filepath.Join(s.Dir(), "msg") }
	cases := []struct {
		name    string
		inject  func(s *Spool, fs *fsOps)
		noSpace bool
	}{
		{"body write", func(s *Spool, fs *fsOps) {
			var calls atomic.Int32 // the first write is the envelope, at Create
			fs.write = func(f *os.File, p []byte) (int, error) {
				if calls.Add(1) > 1 {
					return 0, eio
				}
				return f.Write(p)
			}
		}, false},
		{"body write ENOSPC", func(s *Spool, fs *fsOps) {
			var calls atomic.Int32
			fs.write = func(f *os.File, p []byte) (int, error) {
				if calls.Add(1) > 1 {
					return 0, enospc
				}
				return f.Write(p)
			}
		}, true},
		{"body write EDQUOT, short", func(s *Spool, fs *fsOps) {
			var calls atomic.Int32
			fs.write = func(f *os.File, p []byte) (int, error) {
				if calls.Add(1) > 1 {
					n, _ := f.Write(p[:len(p)/2])
					return n, edquot
				}
				return f.Write(p)
			}
		}, true},
		{"header pwrite", func(s *Spool, fs *fsOps) {
			fs.pwrite = func(*os.File, []byte, int64) (int, error) { return 0, eio }
		}, false},
		{"header pwrite ENOSPC", func(s *Spool, fs *fsOps) {
			fs.pwrite = func(*os.File, []byte, int64) (int, error) { return 0, enospc }
		}, true},
		{"file fsync", func(s *Spool, fs *fsOps) {
			fs.fsync = func(*os.File) error { return eio }
		}, false},
		{"new msg subdirectory", func(s *Spool, fs *fsOps) {
			fs.mkdir = func(string) error { return enospc }
		}, true},
		{"fsync of msg/ for a new subdirectory", func(s *Spool, fs *fsOps) {
			fs.dirsync = func(dir string) error {
				if dir == filepath.Join(s.Dir(), "msg") {
					return eio
				}
				return osFS().dirsync(dir)
			}
		}, false},
		{"rename", func(s *Spool, fs *fsOps) {
			fs.rename = func(string, string) error { return eio }
		}, false},
		{"dir fsync", func(s *Spool, fs *fsOps) {
			fs.dirsync = func(dir string) error {
				if isMsgSubdir(s, dir) {
					return eio
				}
				return osFS().dirsync(dir)
			}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{})
			tc.inject(s, &s.fs)
			r, err := s.Create(testEnvelope())
			if err != nil {
				t.Fatal(err)
			}
			_, werr := r.Write(testBody(100 << 10)) // beyond the write buffer
			id, err := r.Commit(context.Background())
			if err == nil || id != "" {
				t.Fatalf("Commit = %q, %v; want an error", id, err)
			}
			if werr != nil && !errors.Is(err, werr) {
				t.Errorf("Write failed with %v, Commit with another error %v", werr, err)
			}
			if errors.Is(err, ErrNoSpace) != tc.noSpace {
				t.Errorf("errors.Is(%v, ErrNoSpace) = %v, want %v", err, !tc.noSpace, tc.noSpace)
			}
			if !strings.Contains(err.Error(), s.Dir()) || !strings.Contains(err.Error(), r.ID()) {
				t.Errorf("error %q does not name the spool and the ID", err)
			}
			if got := append(files(t, filepath.Join(s.Dir(), "tmp")), files(t, filepath.Join(s.Dir(), "msg"))...); len(got) != 0 {
				t.Errorf("left behind: %q", got)
			}
			stats, err := s.Scan(func(e Entry) error { return fmt.Errorf("scan found %s", e.ID) })
			if err != nil || stats.Messages != 0 {
				t.Errorf("Scan: %+v, %v", stats, err)
			}
			// The spool still works once the fault is gone.
			s.fs = osFS()
			queue(t, s, testEnvelope(), []byte("ok\r\n"))
		})
	}
}

// TestOpenFaults: a failure to create the spool's directories or to
// fsync them makes Open fail, classified, and releases the lock.
func TestOpenFaults(t *testing.T) {
	for name, inject := range map[string]func(*fsOps){
		"mkdir": func(fs *fsOps) { fs.mkdir = func(string) error { return syscall.ENOSPC } },
		"fsync": func(fs *fsOps) { fs.dirsync = func(string) error { return syscall.EIO } },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fs := osFS()
			inject(&fs)
			s, err := open(dir, Options{}, fs)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, ErrNoSpace) != (name == "mkdir") {
				t.Errorf("Open = %v: ErrNoSpace classification wrong", err)
			}
			s, err = Open(dir, Options{})
			if err != nil {
				t.Fatalf("Open after a failed Open: %v", err)
			}
			s.Close()
		})
	}
}

// TestCreateFault: a disk full at Create (the envelope write) is reported
// at once, classified, and leaves nothing.
func TestCreateFault(t *testing.T) {
	s := openTest(t, Options{})
	s.fs.write = func(*os.File, []byte) (int, error) { return 0, syscall.ENOSPC }
	r, err := s.Create(testEnvelope())
	if err == nil || !errors.Is(err, ErrNoSpace) || r != nil {
		t.Fatalf("Create = %v, %v; want ErrNoSpace", r, err)
	}
	if got := files(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
		t.Errorf("left in tmp/: %q", got)
	}
}

// recorder logs the fs operations of concurrent commits in one sequence.
type recorder struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	op  string // fsync, rename, dirsync-start, dirsync-end, return
	key string // the ID, or for dirsyncs the directory
	n   int    // dirsync call number, pairing start and end
}

func (r *recorder) add(op, key string, n int) {
	r.mu.Lock()
	r.events = append(r.events, event{op, key, n})
	r.mu.Unlock()
}

// instrument records fsync, rename and dirsync; the first sync of a msg
// subdirectory waits for gate, so that other commits rename while it runs.
func (r *recorder) instrument(s *Spool, gate <-chan struct{}, renamed func()) {
	real := osFS()
	var calls atomic.Int32
	s.fs.fsync = func(f *os.File) error {
		err := real.fsync(f)
		r.add("fsync", filepath.Base(f.Name()), 0)
		return err
	}
	s.fs.rename = func(from, to string) error {
		err := real.rename(from, to)
		r.add("rename", filepath.Base(to), 0)
		renamed()
		return err
	}
	s.fs.dirsync = func(dir string) error {
		if filepath.Dir(dir) != filepath.Join(s.Dir(), "msg") {
			return real.dirsync(dir) // msg/ itself, for a new subdirectory
		}
		n := int(calls.Add(1))
		r.add("dirsync-start", dir, n)
		if n == 1 {
			<-gate
		}
		err := real.dirsync(dir)
		r.add("dirsync-end", dir, n)
		return err
	}
}

// TestAckOrder: for every one of many concurrent commits, the file fsync
// comes before the rename, and Commit returns only after the end of a
// directory fsync of its directory that started after its rename (group
// commit never answers a commit with an fsync that began before it).
func TestAckOrder(t *testing.T) {
	for _, oneDir := range []bool{true, false} {
		t.Run(fmt.Sprintf("sameDir=%v", oneDir), func(t *testing.T) {
			const n = 24
			opts := spreadDirs()
			if oneDir {
				opts = sameDir()
			}
			s := openTest(t, opts)
			rec := &recorder{}
			gate := make(chan struct{})
			var renames atomic.Int32
			rec.instrument(s, gate, func() {
				if renames.Add(1) == n {
					close(gate)
				}
			})
			ids := runCommits(t, s, n, func(id string) { rec.add("return", id, 0) })

			rec.mu.Lock()
			defer rec.mu.Unlock()
			ev := rec.events
			index := func(op, key string) int {
				for i, e := range ev {
					if e.op == op && e.key == key {
						return i
					}
				}
				return -1
			}
			for _, id := range ids {
				fsync, rename, ret := index("fsync", id), index("rename", id), index("return", id)
				if fsync < 0 || rename < 0 || ret < 0 || !(fsync < rename && rename < ret) {
					t.Errorf("%s: fsync at %d, rename at %d, return at %d", id, fsync, rename, ret)
					continue
				}
				dir := filepath.Join(s.Dir(), "msg", subdir(id))
				covered := false
				for i := rename + 1; i < ret && !covered; i++ {
					if ev[i].op != "dirsync-start" || ev[i].key != dir {
						continue
					}
					for j := i + 1; j < ret; j++ {
						if ev[j].op == "dirsync-end" && ev[j].n == ev[i].n {
							covered = true
							break
						}
					}
				}
				if !covered {
					t.Errorf("%s returned at %d without a dir fsync of %s started after its rename at %d and ended before", id, ret, dir, rename)
				}
			}
			if t.Failed() {
				for i, e := range ev {
					t.Logf("%3d %s %s %d", i, e.op, e.key, e.n)
				}
			}
		})
	}
}

// runCommits commits n messages from n goroutines and returns their IDs;
// returned is called as each Commit returns.
func runCommits(t *testing.T, s *Spool, n int, returned func(id string)) []string {
	t.Helper()
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := s.Create(testEnvelope())
			if err != nil {
				errs[i] = err
				return
			}
			defer r.Abort()
			if _, err := r.Write(testBody(2000)); err != nil {
				errs[i] = err
				return
			}
			ids[i], errs[i] = r.Commit(context.Background())
			if errs[i] == nil {
				returned(ids[i])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestGroupCommit: concurrent commits share directory fsyncs: with every
// ID in one directory and the first fsync held until all have renamed,
// 32 commits cost fewer than 32 directory fsyncs, and never zero; with
// IDs spread over directories, at most one per commit.
func TestGroupCommit(t *testing.T) {
	const n = 32
	count := func(t *testing.T, opts Options) (dirs, files int64) {
		var d, f atomic.Int64
		opts.OnFsync = func(kind string, _ time.Duration) {
			switch kind {
			case "dir":
				d.Add(1)
			case "file":
				f.Add(1)
			default:
				t.Errorf("OnFsync kind %q", kind)
			}
		}
		s := openTest(t, opts)
		gate := make(chan struct{})
		var renames atomic.Int32
		(&recorder{}).instrument(s, gate, func() {
			if renames.Add(1) == n {
				close(gate)
			}
		})
		ids := runCommits(t, s, n, func(string) {})
		stats, err := s.Scan(func(Entry) error { return nil })
		if err != nil || stats.Messages != n || len(ids) != n {
			t.Fatalf("after %d commits Scan finds %+v, %v", n, stats, err)
		}
		return d.Load(), f.Load()
	}
	t.Run("one directory", func(t *testing.T) {
		dirs, fsyncs := count(t, sameDir())
		t.Logf("%d commits into one directory: %d file fsyncs, %d dir fsyncs", n, fsyncs, dirs)
		if fsyncs != n {
			t.Errorf("%d file fsyncs, want %d", fsyncs, n)
		}
		if dirs < 1 || dirs >= n {
			t.Errorf("%d dir fsyncs for %d commits into one directory, want 1 to %d", dirs, n, n-1)
		}
	})
	t.Run("random directories", func(t *testing.T) {
		dirs, fsyncs := count(t, spreadDirs())
		t.Logf("%d commits into random directories: %d file fsyncs, %d dir fsyncs", n, fsyncs, dirs)
		if dirs < 1 || dirs > n {
			t.Errorf("%d dir fsyncs for %d commits, want 1 to %d", dirs, n, n)
		}
	})
}

// TestCommitContext: a context ended before Commit or while it waits for
// the directory fsync fails the commit and removes the message.
func TestCommitContext(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		s := openTest(t, Options{})
		r, err := s.Create(testEnvelope())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := r.Commit(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Commit = %v, want context.Canceled", err)
		}
		if got := files(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
			t.Errorf("left in tmp/: %q", got)
		}
	})
	t.Run("waiting for the directory fsync", func(t *testing.T) {
		s := openTest(t, Options{})
		entered, release := make(chan struct{}), make(chan struct{})
		s.fs.dirsync = func(dir string) error {
			if filepath.Dir(dir) == filepath.Join(s.Dir(), "msg") {
				close(entered)
				<-release
			}
			return osFS().dirsync(dir)
		}
		t.Cleanup(func() { close(release) }) // before Close, which waits for the syncer
		ctx, cancel := context.WithCancel(context.Background())
		r, err := s.Create(testEnvelope())
		if err != nil {
			t.Fatal(err)
		}
		go func() { <-entered; cancel() }()
		if _, err := r.Commit(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Commit = %v, want context.Canceled", err)
		}
		if got := append(files(t, filepath.Join(s.Dir(), "tmp")), files(t, filepath.Join(s.Dir(), "msg"))...); len(got) != 0 {
			t.Errorf("left behind: %q", got)
		}
	})
}

// TestAbort: Abort removes the temp file; the receipt is then unusable;
// Abort after Commit leaves the message queued.
func TestAbort(t *testing.T) {
	s := openTest(t, Options{})
	r, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	r.Write([]byte("partial"))
	r.Abort()
	if got := files(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
		t.Errorf("left in tmp/: %q", got)
	}
	if _, err := r.Write([]byte("x")); err == nil {
		t.Error("Write after Abort succeeded")
	}
	if _, err := r.Commit(context.Background()); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	r, err = s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.Abort()
	if _, err := s.Load(id); err != nil {
		t.Errorf("Abort after Commit: %v", err)
	}
}

// TestCloseRefuses: after Close, intake fails with ErrClosed, Close is
// idempotent, and the lock is free for the next Open.
func TestCloseRefuses(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Create(testEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Commit(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Create(testEnvelope()); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

// TestFreeBytes: statfs reports some free space, no more than the size.
func TestFreeBytes(t *testing.T) {
	s := openTest(t, Options{})
	free, err := s.FreeBytes()
	if err != nil || free == 0 {
		t.Fatalf("FreeBytes = %d, %v", free, err)
	}
	f2, total, err := s.DiskSpace()
	if err != nil || total < f2 || total == 0 {
		t.Errorf("DiskSpace = %d free of %d, %v", f2, total, err)
	}
}
