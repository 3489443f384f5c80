package spool

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// headerLen is the size of the fixed-width header that starts every
// message file: "PSPOOL1 " + 10 digits + " " + 16 digits + " " + 8 hex
// digits + "\n".
const headerLen = 45

const headerMagic = "PSPOOL1 "

// maxEnvelope bounds the envelope JSON (a thousand recipients with every
// DSN parameter fit in well under a megabyte).
const maxEnvelope = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// formatHeader returns the header of a message file.
func formatHeader(envLen, bodyLen int64, crc uint32) []byte {
	return fmt.Appendf(nil, "%s%010d %016d %08x\n", headerMagic, envLen, bodyLen, crc)
}

// Receipt is a message being received: the listener writes the body into
// it as DATA streams in, then calls Commit (ack) or Abort. A Receipt is
// not safe for concurrent use.
type Receipt struct {
	s       *Spool
	id      string
	arrival time.Time
	tmp     string
	f       *os.File
	w       *bufio.Writer
	crc     hash.Hash32
	envLen  int64
	bodyLen int64
	err     error // sticky: the first write error
	done    bool  // committed or aborted
}

// Create starts receiving a message with envelope env. It assigns the
// queue ID and the arrival time (env.Arrival is ignored and the stored
// envelope carries the new one; env itself is not changed), creates
// tmp/ID and writes the envelope. The caller then writes the body with
// Write and finishes with [Receipt.Commit] or [Receipt.Abort]; deferring
// Abort is safe, it does nothing after a Commit.
func (s *Spool) Create(env *Envelope) (*Receipt, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	now := s.now()
	e := *env
	e.Arrival = now.Round(0).UTC()
	data, err := json.Marshal(&e)
	if err != nil {
		return nil, fmt.Errorf("spool %s: encode the envelope: %w", s.dir, err)
	}
	if len(data) > maxEnvelope {
		return nil, fmt.Errorf("spool %s: envelope of %d bytes is over the %d-byte limit (too many recipients?)", s.dir, len(data), maxEnvelope)
	}
	var (
		id  string
		tmp string
		f   *os.File
	)
	// A new ID collides only with one from the same millisecond and the
	// same 32 random bits; O_EXCL catches a receipt in progress and the
	// Stat a queued message (created first, so no rename slips between).
	for try := 0; ; try++ {
		id = s.newID(now)
		tmp = filepath.Join(s.dir, dirTmp, id)
		f, err = s.fs.create(tmp)
		if err == nil {
			if _, serr := os.Lstat(s.msgPath(id)); serr == nil {
				f.Close()
				_ = s.fs.remove(tmp)
				err = os.ErrExist
			}
		}
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || try == 3 {
			return nil, classify(fmt.Errorf("spool %s: create tmp/%s: %w", s.dir, id, err))
		}
	}
	r := &Receipt{
		s:       s,
		id:      id,
		arrival: e.Arrival,
		tmp:     tmp,
		f:       f,
		crc:     crc32New(),
		envLen:  int64(len(data)),
	}
	r.w = writers.Get().(*bufio.Writer)
	r.w.Reset(fileWriter{r})
	// The header is reserved as zeros (not a valid header) and written at
	// Commit, when the body length and CRC are known.
	var zero [headerLen]byte
	r.w.Write(zero[:])
	r.w.Write(data)
	r.crc.Write(data)
	if err := r.w.Flush(); err != nil { // surface a failing disk before DATA is read
		return nil, r.fail("write the envelope", err)
	}
	return r, nil
}

func crc32New() hash.Hash32 { return crc32.New(castagnoli) }

// writers are the receipts' write buffers, reused: a 64 KiB buffer per
// message was most of what intake allocated.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// release gives the write buffer back; r writes nothing after it.
func (r *Receipt) release() {
	if r.w != nil {
		r.w.Reset(nil)
		writers.Put(r.w)
		r.w = nil
	}
}

// fileWriter sends the buffered bytes through the spool's fsOps.
type fileWriter struct{ r *Receipt }

func (w fileWriter) Write(p []byte) (int, error) { return w.r.s.fs.write(w.r.f, p) }

// ID returns the queue ID, assigned at Create.
func (r *Receipt) ID() string { return r.id }

// Arrival returns the arrival time stored in the envelope.
func (r *Receipt) Arrival() time.Time { return r.arrival }

// Size returns the number of body bytes written so far.
func (r *Receipt) Size() int64 { return r.bodyLen }

// Write appends p to the body. After an error every Write and the Commit
// fail with it; the caller must still Commit or Abort.
func (r *Receipt) Write(p []byte) (int, error) {
	if r.done {
		return 0, fmt.Errorf("spool %s: write to %s after Commit or Abort", r.s.dir, r.id)
	}
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.w.Write(p)
	r.crc.Write(p[:n])
	r.bodyLen += int64(n)
	if err != nil {
		r.err = classify(fmt.Errorf("spool %s: write tmp/%s: %w", r.s.dir, r.id, err))
		return n, r.err
	}
	return n, nil
}

// Commit makes the message durable and queues it, returning its ID: it
// writes the header, fsyncs the file, renames it into msg/AB/ and waits
// for an fsync of msg/AB/ that began after the rename. Only a nil error
// allows the 250 reply. On any error nothing stays in tmp/ or msg/; the
// error wraps [ErrNoSpace] when the disk or quota is full. When ctx ends
// first the message is removed and ctx's error is returned (wrapped).
func (r *Receipt) Commit(ctx context.Context) (string, error) {
	if r.done {
		return "", fmt.Errorf("spool %s: %s committed or aborted already", r.s.dir, r.id)
	}
	if r.err != nil {
		return "", r.fail("", r.err)
	}
	if err := r.s.writable(); err != nil {
		return "", r.fail("", err)
	}
	if err := ctx.Err(); err != nil {
		return "", r.fail("", err)
	}
	if err := r.w.Flush(); err != nil {
		return "", r.fail("write", err)
	}
	r.release()
	h := formatHeader(r.envLen, r.bodyLen, r.crc.Sum32())
	if n, err := r.s.fs.pwrite(r.f, h, 0); err != nil || n != len(h) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return "", r.fail("write the header", err)
	}
	start := time.Now()
	err := r.s.fs.fsync(r.f)
	if r.s.onFsync != nil {
		r.s.onFsync("file", time.Since(start))
	}
	if err != nil {
		return "", r.fail("fsync", err)
	}
	err = r.f.Close()
	r.f = nil
	if err != nil {
		return "", r.fail("close", err)
	}
	if err := r.s.ensureSubdir(dirMsg, subdir(r.id)); err != nil {
		return "", r.fail("", err)
	}
	final := r.s.msgPath(r.id)
	if err := r.s.fs.rename(r.tmp, final); err != nil {
		return "", r.fail("rename into msg/", err)
	}
	// From here the file is in msg/; a failure must take it out again.
	r.tmp = final
	done, err := r.s.sync.request(filepath.Dir(final))
	if err != nil {
		return "", r.fail("", err)
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return "", r.fail("", err)
	}
	r.done = true
	return r.id, nil
}

// Abort discards the message: the temp file is closed and removed. It
// does nothing after Commit or a failed Commit.
func (r *Receipt) Abort() {
	if r.done {
		return
	}
	r.cleanup()
}

// cleanup closes and removes the file wherever it is (tmp/ or msg/).
func (r *Receipt) cleanup() {
	r.done = true
	r.release()
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	if r.tmp != "" {
		_ = r.s.fs.remove(r.tmp)
		r.tmp = ""
	}
}

// fail cleans up and returns err, wrapped with the spool, the ID and the
// step, and classified (ErrNoSpace).
func (r *Receipt) fail(step string, err error) error {
	r.cleanup()
	if r.err != nil && errors.Is(err, r.err) {
		return err // wrapped by Write already
	}
	if step != "" {
		step += ": "
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && !isNoSpace(err) {
		return fmt.Errorf("spool %s: queueing %s: %s%w (check the spool's disk, its permissions and the kernel log)", r.s.dir, r.id, step, err)
	}
	return classify(fmt.Errorf("spool %s: queueing %s: %s%w", r.s.dir, r.id, step, err))
}
