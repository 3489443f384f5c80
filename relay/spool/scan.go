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
	batch := scanBatchSize(workers)
	jobs := make(chan string)
	results := make(chan subdirResult, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for ab := range jobs {
				select {
				case results <- s.scanSubdir(ab, batch, buf):
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

// maxScanBatch is how many message files of a directory a scan worker
// opens, at most, and asks the kernel to read (posix_fadvise WILLNEED)
// before it reads the first of them. On a cold cache the reads are then
// in flight together and the worker seldom sleeps on one: the sleep and
// wake-up of a blocking read cost more CPU than the read, and on a
// virtual machine far more.
const maxScanBatch = 64

// scanBatchSize is the batch of each of the scan's workers: at most
// maxScanBatch, and all the workers' batches together (a message and a
// state file each) hold no more than a quarter of the open-files limit.
func scanBatchSize(workers int) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 4
	}
	return int(max(1, min(maxScanBatch, lim.Cur/4/uint64(2*max(workers, 1)))))
}

// batchFile is a message file of a batch, opened and being read ahead,
// and its state file.
type batchFile struct {
	id        string
	hasState  bool  // listed in state/AB
	fd        int   // -1 when not open
	size      int64 // of the message file
	err       error // from opening the message file
	stateFD   int   // -1 when not open or none
	stateSize int64
	stateErr  error // from opening the state file
	retry     bool  // err is the open-files limit: nothing is open, open again when it is this file's turn
}

// scanSubdir reads msg/AB and state/AB, batch files at a time, with buf
// as scratch space.
func (s *Spool) scanSubdir(ab string, batch int, buf []byte) (res subdirResult) {
	msgDir := filepath.Join(s.dir, dirMsg, ab)
	stateDir := filepath.Join(s.dir, dirState, ab)
	d, msgs, err := openDir(msgDir)
	if err != nil {
		res.err = fmt.Errorf("spool %s: scan: list %s: %w", s.dir, msgDir, err)
		return res
	}
	if d != nil { // else state/AB without msg/AB: only orphans
		defer d.Close()
	}
	sd, states, err := openDir(stateDir)
	if err != nil {
		res.err = fmt.Errorf("spool %s: scan: list %s: %w", s.dir, stateDir, err)
		return res
	}
	dirs := batchDirs{msg: -1, state: -1, openat: s.fs.openat}
	if d != nil {
		dirs.msg = int(d.Fd())
	}
	if sd != nil {
		defer sd.Close()
		dirs.state = int(sd.Fd())
	}
	hasState := make(map[string]bool, len(states))
	for _, n := range states {
		hasState[n] = true
	}
	hasMsg := make(map[string]bool, len(msgs))
	sort.Strings(msgs)
	ids := msgs[:0]
	for _, id := range msgs {
		if ValidID(id) && subdir(id) == ab {
			ids = append(ids, id)
			continue
		}
		res.corrupt++
		path := filepath.Join(msgDir, id)
		why := fmt.Errorf("%w: the name is not a queue ID of this directory", ErrCorrupt)
		if s.readOnly {
			s.log.Error("spool: foreign file among messages (left in place: spool open read-only)", "path", path)
		} else {
			s.quarantinePath(path, filepath.Join(s.dir, dirCorrupt, ab+"-"+id), why)
		}
	}
	files := make([]batchFile, 0, min(batch, len(ids)))
	for len(ids) > 0 {
		n := min(len(ids), batch)
		files = files[:0]
		for _, id := range ids[:n] {
			files = append(files, dirs.open(id, hasState[id]))
		}
		ids = ids[n:]
		err := s.readBatch(files, dirs, buf, hasMsg, hasState, &res)
		for i := range files {
			files[i].close() // those left open by an error
		}
		if err != nil {
			res.err = fmt.Errorf("spool %s: scan: %w", s.dir, err)
			return res
		}
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

// openDir opens and lists a directory; a missing one is nil and empty.
func openDir(dir string) (*os.File, []string, error) {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, names, nil
}

// readBatch checks the files of a batch in order, closing each when done
// with it, quarantines the damaged ones and appends the good ones to
// res.entries. It records the messages found in hasMsg and forgets, in
// hasState, the states moved along with a damaged message. An error that
// is not damage (an I/O error, the open-files limit) is returned.
func (s *Spool) readBatch(files []batchFile, dirs batchDirs, buf []byte, hasMsg, hasState map[string]bool, res *subdirResult) error {
	for i := range files {
		f := &files[i]
		if f.retry { // the files before it are closed now
			*f = dirs.open(f.id, f.hasState)
			if f.retry {
				return fmt.Errorf("%s: %w (raise the open-files limit: ulimit -n, systemd's LimitNOFILE)", s.msgPath(f.id), f.err)
			}
		}
		var env *Envelope
		var size int64
		err := f.err
		if err == nil {
			var h header
			h, env, err = readHead(fdReader(f.fd), f.size, buf)
			size = h.bodyLen
		}
		if errors.Is(err, os.ErrNotExist) {
			f.close()
			continue // removed since the listing (read-only scan of a live spool)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("%s: %w", s.msgPath(f.id), err)
		}
		if err != nil {
			f.close()
			res.corrupt++
			s.quarantine(f.id, err)
			delete(hasState, f.id) // moved along (or, read-only, not an orphan)
			continue
		}
		hasMsg[f.id] = true
		st := &State{}
		if f.stateFD >= 0 || f.stateErr != nil {
			err = f.stateErr
			if err == nil {
				st, err = readStateFD(f.stateFD, f.stateSize, buf)
			}
			if errors.Is(err, ErrCorrupt) {
				res.badStates++
				st = &State{}
				if s.readOnly {
					s.log.Error("spool: damaged state file; message shown as never tried", "id", f.id, "err", err)
				} else {
					s.quarantinePath(s.statePath(f.id), filepath.Join(s.dir, dirCorrupt, f.id+".state"), err, "id", f.id)
				}
			} else if err != nil {
				return fmt.Errorf("read state %s: %w", f.id, err)
			}
		}
		f.close()
		res.entries = append(res.entries, Entry{ID: f.id, Envelope: env, State: st, Size: size})
	}
	return nil
}

// batchDirs are the directories of a batch, open: msg/AB and state/AB
// (-1 when missing), and the openat(2) to open their files with.
type batchDirs struct {
	msg, state int
	openat     func(dirfd int, name string, flags int) (int, error)
}

// open opens the message file id, checks that it is a regular file and
// asks the kernel to read its first page; when hasState, it does the same
// for the whole state file. It uses the system calls directly: a scan
// opens every file in the queue. When the open-files limit is reached
// the result is to be opened again (retry), with nothing open.
func (dirs batchDirs) open(id string, hasState bool) batchFile {
	f := batchFile{id: id, hasState: hasState, fd: -1, stateFD: -1}
	f.fd, f.size, f.err = dirs.openAhead(dirs.msg, id, headPage)
	switch {
	case tooManyFiles(f.err):
		f.retry = true
		return f
	case errors.Is(f.err, unix.ELOOP):
		f.err = fmt.Errorf("%w: a symbolic link", ErrCorrupt)
	case errors.Is(f.err, errNotRegular):
		f.err = fmt.Errorf("%w: not a regular file", ErrCorrupt)
	}
	if f.err != nil || !hasState || dirs.state < 0 {
		return f
	}
	f.stateFD, f.stateSize, f.stateErr = dirs.openAhead(dirs.state, id, -1)
	switch {
	case tooManyFiles(f.stateErr):
		f.close()
		f.retry, f.err = true, f.stateErr
	case errors.Is(f.stateErr, os.ErrNotExist):
		f.stateErr = nil // removed since the listing: never tried, as ReadState says
	case errors.Is(f.stateErr, unix.ELOOP):
		f.stateErr = fmt.Errorf("%w: a symbolic link", ErrCorrupt)
	case errors.Is(f.stateErr, errNotRegular):
		f.stateErr = fmt.Errorf("%w: not a regular file", ErrCorrupt)
	}
	return f
}

// close closes what is open of f.
func (f *batchFile) close() {
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
	if f.stateFD >= 0 {
		unix.Close(f.stateFD)
		f.stateFD = -1
	}
}

// tooManyFiles reports whether err is EMFILE or ENFILE.
func tooManyFiles(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// headPage is how much of a message file a scan reads: its header and,
// almost always, its whole envelope.
const headPage = 4096

var errNotRegular = errors.New("not a regular file")

// openAhead opens the regular file name in the directory open as dirfd
// without following a symbolic link, and starts reading its first n
// bytes into the page cache without waiting for them (posix_fadvise
// WILLNEED, which reads no more than asked); n < 0 means the whole file.
// It returns the descriptor and the file's size; on error nothing is
// left open.
func (dirs batchDirs) openAhead(dirfd int, name string, n int64) (int, int64, error) {
	fd, err := dirs.openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK)
	if err != nil {
		return -1, 0, &os.PathError{Op: "open", Path: name, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, 0, errNotRegular
	}
	if n < 0 || n > st.Size {
		n = st.Size
	}
	if n > 0 {
		_ = unix.Fadvise(fd, 0, n, unix.FADV_WILLNEED) // a hint: a failure only costs time
	}
	return fd, st.Size, nil
}

// readStateFD reads and decodes the state file open as fd, of the given
// size (state files are replaced, never changed in place), with buf as
// scratch space; fd -1 is no state file, the zero State.
func readStateFD(fd int, size int64, buf []byte) (*State, error) {
	if fd < 0 {
		return &State{}, nil
	}
	data := buf
	if int64(cap(data)) < size {
		data = make([]byte, size)
	}
	n, err := fdReader(fd).ReadAt(data[:size], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return decodeState(data[:n])
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
