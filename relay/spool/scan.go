package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// Entry is one queued message found by [Spool.Scan].
type Entry struct {
	ID       string
	Envelope *Envelope
	State    *State
	Size     int64 // body bytes
}

// ScanStats counts what [Spool.Scan] found.
type ScanStats struct {
	Messages     int // entries passed to fn
	Corrupt      int // damaged message files (moved to corrupt/ unless read-only)
	OrphanStates int // state files without a message (deleted unless read-only)
	BadStates    int // state files that did not decode (moved to corrupt/ unless read-only; the message restarts as never tried)
}

// Scan walks msg/*/* and calls fn, from one goroutine, for every queued
// message with its envelope and state, in no particular order. It checks
// each file's header, size and envelope but not its body (Load checks the
// CRC). Damaged message files are moved to corrupt/ and logged at error
// level; state files without a message are deleted; a state file that
// does not decode is moved to corrupt/ and its message treated as never
// tried (the worst outcome of losing state is a duplicate). On a
// read-only spool nothing is moved or deleted, only counted. An error
// from fn stops the scan and is returned.
func (s *Spool) Scan(fn func(Entry) error) (ScanStats, error) {
	var stats ScanStats
	if s.closed.Load() {
		return stats, fmt.Errorf("spool %s: %w", s.dir, ErrClosed)
	}
	subs, err := s.scanSubdirs()
	if err != nil {
		return stats, err
	}
	// Subdirectories are read by several workers: the files are small and
	// many, and on a cold cache their reads overlap. fn runs here.
	workers := min(max(runtime.GOMAXPROCS(0)*4, 16), len(subs))
	jobs := make(chan string)
	results := make(chan subdirResult, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for ab := range jobs {
				select {
				case results <- s.scanSubdir(ab, buf):
				case <-stop:
					return
				}
			}
		})
	}
	go func() {
		defer close(results)
		defer wg.Wait()
		defer close(jobs)
		for _, ab := range subs {
			select {
			case jobs <- ab:
			case <-stop:
				return
			}
		}
	}()
	var ferr error
	for res := range results {
		if ferr != nil {
			continue // drain
		}
		stats.Corrupt += res.corrupt
		stats.OrphanStates += res.orphans
		stats.BadStates += res.badStates
		if res.err != nil {
			ferr = res.err
			close(stop)
			continue
		}
		for _, e := range res.entries {
			if err := fn(e); err != nil {
				ferr = err
				close(stop)
				break
			}
			stats.Messages++
		}
	}
	return stats, ferr
}

// scanSubdirs lists the AB names under msg/ and state/.
func (s *Spool) scanSubdirs() ([]string, error) {
	seen := map[string]bool{}
	var subs []string
	for _, kind := range []string{dirMsg, dirState} {
		names, err := readDirNames(filepath.Join(s.dir, kind))
		if err != nil {
			return nil, fmt.Errorf("spool %s: scan: list %s/: %w", s.dir, kind, err)
		}
		for _, n := range names {
			if len(n) != 2 || !ValidID("00000000000000"+n) {
				s.log.Warn("spool: scan: ignoring a foreign entry", "path", filepath.Join(s.dir, kind, n))
				continue
			}
			if !seen[n] {
				seen[n] = true
				subs = append(subs, n)
			}
		}
	}
	sort.Strings(subs)
	return subs, nil
}

type subdirResult struct {
	entries                     []Entry
	corrupt, orphans, badStates int
	err                         error
}

// scanSubdir reads msg/AB and state/AB, with buf as scratch space.
func (s *Spool) scanSubdir(ab string, buf []byte) (res subdirResult) {
	msgDir := filepath.Join(s.dir, dirMsg, ab)
	stateDir := filepath.Join(s.dir, dirState, ab)
	d, err := os.Open(msgDir)
	var msgs []string
	if err == nil {
		defer d.Close()
		msgs, err = d.Readdirnames(-1)
	} else if errors.Is(err, os.ErrNotExist) {
		err = nil // state/AB without msg/AB: only orphans
	}
	if err != nil {
		res.err = fmt.Errorf("spool %s: scan: list %s: %w", s.dir, msgDir, err)
		return res
	}
	states, err := readDirNames(stateDir)
	if err != nil {
		res.err = fmt.Errorf("spool %s: scan: list %s: %w", s.dir, stateDir, err)
		return res
	}
	hasState := make(map[string]bool, len(states))
	for _, n := range states {
		hasState[n] = true
	}
	hasMsg := make(map[string]bool, len(msgs))
	sort.Strings(msgs)
	for _, id := range msgs {
		path := filepath.Join(msgDir, id)
		if !ValidID(id) || subdir(id) != ab {
			res.corrupt++
			why := fmt.Errorf("%w: the name is not a queue ID of this directory", ErrCorrupt)
			if s.readOnly {
				s.log.Error("spool: foreign file among messages (left in place: spool open read-only)", "path", path)
			} else {
				s.quarantinePath(path, filepath.Join(s.dir, dirCorrupt, ab+"-"+id), why)
			}
			continue
		}
		env, size, err := scanFile(int(d.Fd()), id, buf)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since the listing (read-only scan of a live spool)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			res.err = fmt.Errorf("spool %s: scan: %s: %w", s.dir, path, err)
			return res
		}
		if err != nil {
			res.corrupt++
			s.quarantine(id, err)
			delete(hasState, id) // moved along (or, read-only, not an orphan)
			continue
		}
		hasMsg[id] = true
		st := &State{}
		if hasState[id] {
			st, err = s.ReadState(id)
			if errors.Is(err, ErrCorrupt) {
				res.badStates++
				st = &State{}
				if s.readOnly {
					s.log.Error("spool: damaged state file; message shown as never tried", "id", id, "err", err)
				} else {
					s.quarantinePath(s.statePath(id), filepath.Join(s.dir, dirCorrupt, id+".state"), err, "id", id)
				}
			} else if err != nil {
				res.err = fmt.Errorf("spool %s: scan: %w", s.dir, err)
				return res
			}
		}
		res.entries = append(res.entries, Entry{ID: id, Envelope: env, State: st, Size: size})
	}
	for n := range hasState {
		if hasMsg[n] {
			continue
		}
		res.orphans++
		if s.readOnly {
			continue
		}
		if err := os.Remove(filepath.Join(stateDir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			res.err = fmt.Errorf("spool %s: scan: delete orphan state %s: %w", s.dir, n, err)
			return res
		}
	}
	return res
}

// scanFile checks the header, size and envelope of the message file
// name in the directory open as dirfd, with buf as scratch space. It uses
// the system calls directly: a scan opens every file in the queue.
func scanFile(dirfd int, name string, buf []byte) (*Envelope, int64, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, 0, fmt.Errorf("%w: a symbolic link", ErrCorrupt)
		}
		return nil, 0, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, 0, fmt.Errorf("%w: not a regular file", ErrCorrupt)
	}
	// Only the first page is wanted: no readahead into the body.
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM)
	h, env, err := readHead(fdReader(fd), st.Size, buf)
	if err != nil {
		return nil, 0, err
	}
	return env, h.bodyLen, nil
}

// fdReader reads a raw file descriptor with pread(2).
type fdReader int

func (fd fdReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pread(int(fd), p[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}
