package transport

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// session is one SMTP/LMTP connection past its greeting and EHLO: ready
// for a transaction. It is used by one delivery at a time.
type session struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	key      poolKey
	host     string
	proto    Protocol
	remote   netip.AddrPort
	local    netip.AddrPort
	ext      extensions
	esmtp    bool
	tls      TLSInfo
	warnings []Warning // carried into every result made on this session
	to       Timeouts
	max      int // transactions allowed
	uses     int // transactions started
	broken   bool
	// rset: the connection was taken from the pool for a new transaction,
	// and, with PIPELINING, its RSET goes out with the transaction's
	// commands instead of costing a round trip of its own.
	rset  bool
	phase time.Duration // timeout of the current phase

	ctx     context.Context
	stopCtx func() bool
	idle    *time.Timer
}

func newSession(nc net.Conn) *session {
	return (&session{nc: nc}).init()
}

// init sets up the buffers. They read and write s.nc through s, so they
// follow the switch to TLS, and every write refreshes the deadline of the
// current phase (for the body: each write gets the data timeout, not the
// whole transfer).
func (s *session) init() *session {
	s.br = bufio.NewReaderSize(connReader{s}, maxReplyLine)
	s.bw = bufio.NewWriterSize(connWriter{s}, 16*1024)
	return s
}

type connReader struct{ s *session }

func (r connReader) Read(p []byte) (int, error) { return r.s.nc.Read(p) }

type connWriter struct{ s *session }

func (w connWriter) Write(p []byte) (int, error) {
	w.s.deadline(w.s.phase)
	return w.s.nc.Write(p)
}

// bind ties the session's I/O to ctx: cancelling ctx interrupts whatever
// read or write is blocked.
func (s *session) bind(ctx context.Context) {
	s.ctx = ctx
	nc := s.nc
	s.stopCtx = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
}

// unbind detaches the session from its delivery's context.
func (s *session) unbind() {
	if s.stopCtx != nil {
		s.stopCtx()
		s.stopCtx = nil
	}
	s.ctx = nil
	_ = s.nc.SetDeadline(time.Time{})
}

// deadline sets the I/O deadline to now+d, or earlier when the context ends
// earlier; a context already done gives a deadline in the past.
func (s *session) deadline(d time.Duration) {
	s.phase = d
	t := time.Now().Add(d)
	if s.ctx != nil {
		if cd, ok := s.ctx.Deadline(); ok && cd.Before(t) {
			t = cd
		}
	}
	_ = s.nc.SetDeadline(t)
	if s.ctx != nil && s.ctx.Err() != nil {
		_ = s.nc.SetDeadline(time.Unix(1, 0))
	}
}

// close ends the connection without QUIT.
func (s *session) close() {
	s.broken = true
	if s.stopCtx != nil {
		s.stopCtx()
		s.stopCtx = nil
	}
	_ = s.nc.Close()
}

// quit sends QUIT (not waiting long for the reply) and closes.
func (s *session) quit() {
	if !s.broken {
		_ = s.nc.SetDeadline(time.Now().Add(min(s.to.EHLO, 5*time.Second)))
		if s.writeLine("QUIT") == nil && s.bw.Flush() == nil {
			_, _ = readReply(s.br)
		}
	}
	s.close()
}

// writeLine buffers one command line. A line with CR or LF would let a
// crafted address inject commands; it never gets this far (addresses are
// checked first), but the check here is the last line of defence.
func (s *session) writeLine(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return fmt.Errorf("transport: refusing to send a command with CR or LF: %q", line)
	}
	if _, err := s.bw.WriteString(line); err != nil {
		return err
	}
	_, err := s.bw.WriteString("\r\n")
	return err
}

// cmd sends one command and reads its reply.
func (s *session) cmd(timeout time.Duration, line string) (*reply, error) {
	s.deadline(timeout)
	if err := s.writeLine(line); err != nil {
		return nil, err
	}
	if err := s.bw.Flush(); err != nil {
		return nil, err
	}
	return readReply(s.br)
}

// read reads one reply within timeout.
func (s *session) read(timeout time.Duration) (*reply, error) {
	s.deadline(timeout)
	return readReply(s.br)
}
