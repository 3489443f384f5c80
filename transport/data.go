package transport

import (
	"bytes"
	"io"
	"strconv"
	"sync"
)

// dataWriter normalises a message for the wire: every line ends in CRLF
// (a bare LF becomes CRLF, and so does a bare CR), and, when stuff is set,
// a line that starts with "." gets a second one (RFC 5321 section 4.5.2).
// No bare CR or LF ever reaches the wire, which closes the door on SMTP
// smuggling ("\n.\n" or "\r.\r" read as end-of-data by one server and not by
// another).
//
// Close ends the last line with CRLF if needed and, when stuff is set, writes
// the terminating ".\r\n".
type dataWriter struct {
	w     io.Writer
	stuff bool // DATA (dot-stuffing, final dot) rather than BDAT
	bol   bool // at the beginning of a line
	cr    bool // the previous byte was a CR not yet written
	n     int64
}

func newDataWriter(w io.Writer, stuff bool) *dataWriter {
	return &dataWriter{w: w, stuff: stuff, bol: true}
}

var (
	crlf = []byte("\r\n")
	dot  = []byte{'.'}
)

func (d *dataWriter) out(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := d.w.Write(b)
	d.n += int64(n)
	return err
}

// Write normalises p. It returns len(p) on success.
func (d *dataWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if d.cr {
			// A CR ended the previous chunk: CRLF either way; swallow
			// the LF if it is one.
			d.cr = false
			if err := d.out(crlf); err != nil {
				return 0, err
			}
			d.bol = true
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		if d.bol && d.stuff && p[0] == '.' {
			if err := d.out(dot); err != nil {
				return 0, err
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			d.bol = false
			if err := d.out(p); err != nil {
				return 0, err
			}
			break
		}
		if i > 0 {
			d.bol = false
			if err := d.out(p[:i]); err != nil {
				return 0, err
			}
		}
		if p[i] == '\n' {
			p = p[i+1:]
		} else if i+1 < len(p) {
			if p[i+1] == '\n' {
				p = p[i+2:]
			} else {
				p = p[i+1:]
			}
		} else {
			d.cr = true
			return total, nil
		}
		if err := d.out(crlf); err != nil {
			return 0, err
		}
		d.bol = true
	}
	return total, nil
}

// Close terminates the data.
func (d *dataWriter) Close() error {
	if d.cr || !d.bol {
		d.cr = false
		d.bol = true
		if err := d.out(crlf); err != nil {
			return err
		}
	}
	if d.stuff {
		return d.out([]byte(".\r\n"))
	}
	return nil
}

// normalize returns the wire form of b (for tests and small bodies).
func normalize(b []byte, stuff bool) []byte {
	var buf bytes.Buffer
	d := newDataWriter(&buf, stuff)
	_, _ = d.Write(b)
	_ = d.Close()
	return buf.Bytes()
}

// has8bit reports whether the body has a byte above 127.
func has8bit(r io.ReaderAt, size int64) (bool, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var off int64
	for off < size {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		for _, c := range buf[:n] {
			if c >= 0x80 {
				return true, nil
			}
		}
		off += int64(n)
		if err != nil {
			if err == io.EOF {
				return false, nil
			}
			return false, err
		}
		if n == 0 {
			return false, io.ErrNoProgress
		}
	}
	return false, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// body returns a reader of the whole message.
func (d *delivery) body() io.Reader {
	if d.msg.Body == nil {
		return bytes.NewReader(nil)
	}
	return io.NewSectionReader(d.msg.Body, 0, d.msg.Size)
}

// sendDATA writes the dot-stuffed body and the final dot. For SMTP it
// returns the reply; for LMTP it returns nil and the caller reads one reply
// per recipient.
func (d *delivery) sendDATA(s *session) (*reply, error) {
	s.deadline(s.to.Data)
	w := newDataWriter(s.bw, true)
	bp := bufPool.Get().(*[]byte)
	_, err := io.CopyBuffer(w, d.body(), *bp)
	bufPool.Put(bp)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = s.bw.Flush()
	}
	if err != nil {
		return nil, err
	}
	if s.proto == LMTP {
		return nil, nil
	}
	return s.read(s.to.Data)
}

// maxChunk is the size of a BDAT chunk (RFC 3030).
const maxChunk = 1 << 20

// sendBDAT writes the body in BDAT chunks (no dot-stuffing, CRLF
// normalised). For SMTP it returns the reply to the last chunk or the first
// failed one; for LMTP it returns nil after a complete transfer (the caller
// reads the per-recipient replies), or the reply of a failed chunk.
func (d *delivery) sendBDAT(s *session) (*reply, error) {
	var chunk bytes.Buffer
	w := newDataWriter(&chunk, false)
	src := d.body()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	eof := false
	for !eof {
		for chunk.Len() < maxChunk && !eof {
			n, err := src.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
			}
			if err == io.EOF {
				eof = true
				_ = w.Close()
			} else if err != nil {
				return nil, err
			}
		}
		cmd := "BDAT " + strconv.Itoa(chunk.Len())
		if eof {
			cmd += " LAST"
		}
		s.deadline(s.to.Data)
		if err := s.writeLine(cmd); err != nil {
			return nil, err
		}
		if _, err := s.bw.Write(chunk.Bytes()); err != nil {
			return nil, err
		}
		if err := s.bw.Flush(); err != nil {
			return nil, err
		}
		chunk.Reset()
		if eof && s.proto == LMTP {
			return nil, nil
		}
		r, err := s.read(s.to.Data)
		if err != nil {
			return nil, err
		}
		if r.Code != 250 || eof {
			return r, nil
		}
	}
	return nil, nil // not reached
}
