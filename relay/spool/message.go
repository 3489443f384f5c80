package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Message is a queued message opened for delivery. Body reads the stored
// body bytes, exactly as they are to be sent; Close releases the file.
type Message struct {
	ID       string
	Envelope *Envelope
	Body     *io.SectionReader
	Size     int64 // body bytes
	f        *os.File
}

// Close closes the message file.
func (m *Message) Close() error { return m.f.Close() }

// header is the parsed first line of a message file.
type header struct {
	envLen, bodyLen int64
	crc             uint32
}

// parseHeader checks and decodes the fixed-width header.
func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerLen {
		return h, fmt.Errorf("file shorter than its %d-byte header", headerLen)
	}
	b = b[:headerLen]
	if !bytes.HasPrefix(b, []byte(headerMagic)) || b[18] != ' ' || b[35] != ' ' || b[44] != '\n' {
		return h, fmt.Errorf("bad header %q", b)
	}
	e, bl, c := b[8:18], b[19:35], b[36:44]
	if !allIn(e, "0123456789") || !allIn(bl, "0123456789") || !allIn(c, "0123456789abcdef") {
		return h, fmt.Errorf("bad header %q", b)
	}
	h.envLen, _ = strconv.ParseInt(string(e), 10, 64)
	h.bodyLen, _ = strconv.ParseInt(string(bl), 10, 64)
	crc, _ := strconv.ParseUint(string(c), 16, 32)
	h.crc = uint32(crc)
	if h.envLen == 0 || h.envLen > maxEnvelope {
		return h, fmt.Errorf("envelope length %d out of range", h.envLen)
	}
	return h, nil
}

// allIn reports whether every byte of b is one of set.
func allIn(b []byte, set string) bool {
	for _, c := range b {
		if strings.IndexByte(set, c) < 0 {
			return false
		}
	}
	return true
}

// readHead reads and checks the header and the envelope of an open
// message file of the given size, with buf as scratch space; it does not
// read the body.
func readHead(f io.ReaderAt, size int64, buf []byte) (header, *Envelope, error) {
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return header{}, nil, err
	}
	h, herr := parseHeader(buf[:n])
	if herr != nil {
		return h, nil, fmt.Errorf("%w: %v", ErrCorrupt, herr)
	}
	if want := headerLen + h.envLen + h.bodyLen; size != want {
		return h, nil, fmt.Errorf("%w: file is %d bytes, its header says %d", ErrCorrupt, size, want)
	}
	envEnd := headerLen + h.envLen
	var raw []byte
	if envEnd <= int64(n) {
		raw = buf[headerLen:envEnd]
	} else {
		raw = make([]byte, h.envLen)
		if _, err := f.ReadAt(raw, headerLen); err != nil {
			return h, nil, err
		}
	}
	env, err := decodeEnvelope(raw)
	if err != nil {
		return h, nil, fmt.Errorf("%w: envelope: %v", ErrCorrupt, err)
	}
	return h, env, nil
}

// Head reads the envelope of the queued message id and the size of its
// body, without reading the body: for work that needs no body, such as
// deferring a message whose destination is down. It checks the header,
// the size and the envelope, not the CRC (Load does, before the body is
// used); a message that fails is moved to corrupt/ as Load does, and the
// errors are Load's.
func (s *Spool) Head(id string) (*Envelope, int64, error) {
	m, err := s.open(id, false)
	if err != nil {
		return nil, 0, err
	}
	m.Close()
	return m.Envelope, m.Size, nil
}

// Load opens the queued message id for delivery. It checks the header,
// the size, the envelope and the CRC-32C of envelope and body; a message
// that fails is moved to corrupt/ (unless read-only), logged at error
// level, and the error wraps [ErrCorrupt]. A message that is not queued
// gives an error wrapping [os.ErrNotExist]; an invalid ID one wrapping
// [ErrBadID]. The caller closes the Message.
func (s *Spool) Load(id string) (*Message, error) { return s.open(id, true) }

// open is Load, and Head when crc is false (the body is not read).
func (s *Spool) open(id string, crc bool) (*Message, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("spool %s: load %q: %w", s.dir, id, ErrBadID)
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("spool %s: %w", s.dir, ErrClosed)
	}
	f, err := os.Open(s.msgPath(id))
	if err != nil {
		return nil, fmt.Errorf("spool %s: load %s: %w", s.dir, id, err)
	}
	m, err := s.load(id, f, crc)
	if err != nil {
		f.Close()
		if errors.Is(err, ErrCorrupt) {
			s.quarantine(id, err)
		}
		return nil, fmt.Errorf("spool %s: load %s: %w", s.dir, id, err)
	}
	return m, nil
}

// copyBufs are Load's read buffers, reused: a 32 KiB buffer per delivery
// was most of what delivery allocated.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// load checks the open message file f of id: its header, size and
// envelope, and with crc the CRC-32C of envelope and body.
func (s *Spool) load(id string, f *os.File, crc bool) (*Message, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h, env, err := readHead(f, fi.Size(), make([]byte, 4096))
	if err != nil {
		return nil, err
	}
	if crc {
		sum := crc32New()
		bp := copyBufs.Get().(*[]byte)
		_, err = io.CopyBuffer(sum, io.NewSectionReader(f, headerLen, h.envLen+h.bodyLen), *bp)
		copyBufs.Put(bp)
		if err != nil {
			return nil, err
		}
		if got := sum.Sum32(); got != h.crc {
			return nil, fmt.Errorf("%w: CRC-32C %08x, header says %08x", ErrCorrupt, got, h.crc)
		}
	}
	return &Message{
		ID:       id,
		Envelope: env,
		Body:     io.NewSectionReader(f, headerLen+h.envLen, h.bodyLen),
		Size:     h.bodyLen,
		f:        f,
	}, nil
}

// quarantine moves a damaged message file, and its state file if any, to
// corrupt/ and logs it at error level. A read-only spool only logs.
func (s *Spool) quarantine(id string, why error) {
	if s.readOnly {
		s.log.Error("spool: damaged message file (left in place: spool open read-only)",
			"id", id, "path", s.msgPath(id), "err", why)
		return
	}
	dst := filepath.Join(s.dir, dirCorrupt, id)
	s.quarantinePath(s.msgPath(id), dst, why, "id", id)
	if _, err := os.Lstat(s.statePath(id)); err == nil {
		if err := os.Rename(s.statePath(id), dst+".state"); err != nil {
			s.log.Error("spool: cannot move the state of a damaged message to corrupt/", "id", id, "err", err)
		}
	}
}

// quarantinePath moves path to dst in corrupt/ and logs why.
func (s *Spool) quarantinePath(path, dst string, why error, attrs ...any) {
	attrs = append(attrs, "path", path, "err", why)
	if err := os.Rename(path, dst); err != nil {
		s.log.Error("spool: damaged file; moving it to corrupt/ failed", append(attrs, "move_err", err)...)
		return
	}
	s.log.Error("spool: damaged file moved to corrupt/", append(attrs, "moved_to", dst)...)
}
