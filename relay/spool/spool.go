package spool

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Options tune a [Spool]; the zero value is ready to use.
type Options struct {
	// Logger receives damaged files (error level) and other anomalies
	// found by Scan and Load; nil discards them.
	Logger *slog.Logger
	// OnFsync, when set, is called after every fsync of a message file
	// (kind "file") and of a message directory (kind "dir") with how long
	// it took; the daemon feeds a histogram with it. It must be cheap and
	// safe for concurrent use.
	OnFsync func(kind string, d time.Duration)
	// Now is the clock for queue IDs and arrival times; nil is time.Now.
	Now func() time.Time
	// Rand supplies the random bits of queue IDs; nil is crypto/rand. It
	// is read under a lock, so it need not be safe for concurrent use.
	Rand io.Reader
}

// Spool is an open spool directory. Its methods are safe for concurrent
// use, except that messages are not locked: see the package comment.
type Spool struct {
	dir      string
	readOnly bool
	fs       fsOps
	log      *slog.Logger
	onFsync  func(string, time.Duration)
	now      func() time.Time

	randMu sync.Mutex
	rand   io.Reader

	lockf *os.File // SPOOL/lock, flocked; nil when read-only
	dirf  *os.File // SPOOL, for syncfs; nil when read-only

	dirMu     sync.Mutex
	msgDirs   map[string]bool // msg/AB directories known to exist and be durable
	stateDirs map[string]bool // state/AB directories known to exist

	sync   *syncer
	closed atomic.Bool
}

// LockedError is returned by [Open] when another process (or another
// Spool in this one) holds the spool's lock.
type LockedError struct {
	Dir string // the spool directory
	PID int    // the holder's pid, from the lock file; 0 when not written yet
}

// Error says which spool is locked and by whom.
func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("spool %s locked by another process", e.Dir)
	}
	return fmt.Sprintf("spool %s locked by pid %d", e.Dir, e.PID)
}

const (
	dirTmp     = "tmp"
	dirMsg     = "msg"
	dirState   = "state"
	dirCorrupt = "corrupt"
	lockName   = "lock"
)

// Open opens the spool in dir for writing, creating dir and its layout
// when missing. It takes an exclusive flock(2) on dir/lock, without
// waiting, and writes this process's pid into it; when the lock is held
// the error is a [*LockedError]. Files left in tmp/ by an earlier run
// (receipts never acked) are removed. Close releases the lock.
func Open(dir string, opts Options) (*Spool, error) {
	return open(dir, opts, osFS())
}

func open(dir string, opts Options, fs fsOps) (*Spool, error) {
	s := newSpool(dir, opts, fs)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: create the spool directory: %w", dir, err)
	}
	lockf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool %s: open the lock file: %w", dir, err)
	}
	if err := unix.Flock(int(lockf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer lockf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := io.ReadAll(io.LimitReader(lockf, 32))
			pid, _ := strconv.Atoi(string(bytes.TrimSpace(b)))
			return nil, &LockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("spool %s: lock %s: %w", dir, lockf.Name(), err)
	}
	fail := func(err error) (*Spool, error) {
		lockf.Close() // releases the lock
		if s.dirf != nil {
			s.dirf.Close()
		}
		return nil, err
	}
	if err := lockf.Truncate(0); err != nil {
		return fail(fmt.Errorf("spool %s: write our pid into the lock file: %w", dir, err))
	}
	if _, err := lockf.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return fail(fmt.Errorf("spool %s: write our pid into the lock file: %w", dir, err))
	}
	s.lockf = lockf
	for _, d := range []string{dirTmp, dirMsg, dirState, dirCorrupt} {
		if err := fs.mkdir(filepath.Join(dir, d)); err != nil && !errors.Is(err, os.ErrExist) {
			return fail(classify(fmt.Errorf("spool %s: create %s/: %w", dir, d, err)))
		}
	}
	if err := emptyDir(filepath.Join(dir, dirTmp)); err != nil {
		return fail(fmt.Errorf("spool %s: empty tmp/: %w", dir, err))
	}
	// Every msg/AB that exists now is made durable by one fsync of msg/,
	// so that intake fsyncs msg/ only when it creates a new one.
	msgDir := filepath.Join(dir, dirMsg)
	names, err := readDirNames(msgDir)
	if err != nil {
		return fail(fmt.Errorf("spool %s: list msg/: %w", dir, err))
	}
	for _, n := range names {
		s.msgDirs[n] = true
	}
	for _, d := range []string{dir, msgDir} {
		if err := fs.dirsync(d); err != nil {
			return fail(fmt.Errorf("spool %s: fsync %s: %w", dir, d, err))
		}
	}
	if s.dirf, err = os.Open(dir); err != nil {
		return fail(fmt.Errorf("spool %s: open for syncfs: %w", dir, err))
	}
	s.sync = newSyncer(s)
	return s, nil
}

// OpenReadOnly opens the spool in dir for reading only, without the lock
// and without changing anything: for listing the queue while the daemon
// is stopped (or, racily, while it runs). Scan and Load report damaged
// files but leave them in place; the write methods return [ErrReadOnly].
func OpenReadOnly(dir string) (*Spool, error) {
	fi, err := os.Stat(filepath.Join(dir, dirMsg))
	if err != nil {
		return nil, fmt.Errorf("spool %s: not a spool (no msg/ directory; the daemon creates it at start): %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool %s: msg is not a directory", dir)
	}
	s := newSpool(dir, Options{}, osFS())
	s.readOnly = true
	return s, nil
}

func newSpool(dir string, opts Options, fs fsOps) *Spool {
	s := &Spool{
		dir:       dir,
		fs:        fs,
		log:       opts.Logger,
		onFsync:   opts.OnFsync,
		now:       opts.Now,
		rand:      opts.Rand,
		msgDirs:   map[string]bool{},
		stateDirs: map[string]bool{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = crand.Reader
	}
	return s
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Close waits for the directory syncs in progress, syncs the file system
// (so that recent state writes are durable) and releases the lock. Stop
// intake first: a Commit still running fails with [ErrClosed].
func (s *Spool) Close() error {
	if s.closed.Swap(true) || s.readOnly {
		return nil
	}
	s.sync.stop()
	err := s.syncfs()
	if cerr := s.dirf.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool %s: close: %w", s.dir, cerr)
	}
	if cerr := s.lockf.Close(); err == nil && cerr != nil { // releases the flock
		err = fmt.Errorf("spool %s: release the lock: %w", s.dir, cerr)
	}
	return err
}

// Sync makes every completed write in the spool's file system durable
// (syncfs(2)): state files and removals, which are not fsynced one by
// one. The daemon calls it every state-sync-interval and at shutdown.
func (s *Spool) Sync() error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.syncfs()
}

func (s *Spool) syncfs() error {
	if err := unix.Syncfs(int(s.dirf.Fd())); err != nil {
		return classify(fmt.Errorf("spool %s: syncfs: %w (check the disk and the kernel log)", s.dir, err))
	}
	return nil
}

// FreeBytes returns the bytes available to this process on the spool's
// file system (statfs(2) f_bavail). Deciding what is too little is the
// caller's job.
func (s *Spool) FreeBytes() (uint64, error) {
	free, _, err := s.DiskSpace()
	return free, err
}

// DiskSpace returns the bytes available to this process and the size of
// the spool's file system, for a free-space floor given as a percentage.
func (s *Spool) DiskSpace() (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return 0, 0, fmt.Errorf("spool %s: statfs: %w", s.dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// writable returns why the spool cannot be written, or nil.
func (s *Spool) writable() error {
	if s.readOnly {
		return fmt.Errorf("spool %s: %w", s.dir, ErrReadOnly)
	}
	if s.closed.Load() {
		return fmt.Errorf("spool %s: %w", s.dir, ErrClosed)
	}
	return nil
}

func (s *Spool) msgPath(id string) string {
	return filepath.Join(s.dir, dirMsg, subdir(id), id)
}

func (s *Spool) statePath(id string) string {
	return filepath.Join(s.dir, dirState, subdir(id), id)
}

// ensureSubdir makes sure SPOOL/kind/AB exists. Each msg/AB is made
// durable (fsync of msg/) before a message is first renamed into it;
// state/AB need not be: like the state files, Sync makes it durable.
// Subdirectories are created on first use (at most 1024 of each kind
// over the life of a spool) because mkdir is slow on some file systems.
func (s *Spool) ensureSubdir(kind, ab string) error {
	known := s.stateDirs
	if kind == dirMsg {
		known = s.msgDirs
	}
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	if known[ab] {
		return nil
	}
	rel := filepath.Join(kind, ab)
	if err := s.fs.mkdir(filepath.Join(s.dir, rel)); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", rel, err)
	}
	if kind == dirMsg {
		if err := s.fs.dirsync(filepath.Join(s.dir, dirMsg)); err != nil {
			return fmt.Errorf("fsync %s/: %w", dirMsg, err)
		}
	}
	known[ab] = true
	return nil
}

// newID returns a fresh queue ID for now.
func (s *Spool) newID(now time.Time) string {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	return NewID(now, s.rand)
}

// readDirNames lists dir; a missing dir is empty.
func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// emptyDir removes everything inside dir.
func emptyDir(dir string) error {
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}
