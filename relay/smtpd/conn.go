package smtpd

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Close states of a conn.
const (
	open    = iota
	armed   // close after the next reply is written
	closing // that reply is out: reads see EOF, so go-smtp closes the connection
)

// shutdownWriteGrace bounds the writes of a connection interrupted by
// Shutdown's deadline (its last 421).
const shutdownWriteGrace = 2 * time.Second

// conn is an accepted connection as go-smtp sees it (under TLS when there
// is TLS): every read and write gets CommandTimeout, RemoteAddr is the
// client (PROXY protocol source when there was a header), and it can be
// told to close after the next reply, or to fail reads at Shutdown's
// deadline. It also carries the per-connection state that outlives
// go-smtp's sessions (STARTTLS starts a new session).
type conn struct {
	net.Conn
	r       io.Reader // Conn, or the reader that read the PROXY header
	remote  net.Addr
	ip      netip.Addr
	srv     *Server
	l       *listener
	timeout time.Duration

	mu           sync.Mutex
	interrupted  bool
	closeState   int
	authFailures int
	ptr          string
	ptrDone      bool
	holdsIP      bool // counted in the listener's per-IP caps
	inGauge      bool // counted in postern_relay_sessions

	closeOnce sync.Once
}

func newConn(s *Server, l *listener, raw net.Conn) *conn {
	c := &conn{Conn: raw, r: raw, remote: raw.RemoteAddr(), srv: s, l: l, timeout: s.cfg.CommandTimeout}
	if ta, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
		c.ip = ta.AddrPort().Addr().Unmap()
	}
	return c
}

// Read reads with a fresh deadline; after closeAfterReply's reply it
// returns io.EOF, after interrupt the server's 421 error.
func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	switch {
	case c.closeState == closing:
		c.mu.Unlock()
		return 0, io.EOF
	case c.interrupted:
		c.mu.Unlock()
		return 0, c.srv.interrupted
	}
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	c.mu.Unlock()
	n, err := c.r.Read(p)
	if err != nil {
		c.mu.Lock()
		if c.interrupted {
			err = c.srv.interrupted
		}
		c.mu.Unlock()
	}
	return n, err
}

// Write writes with a fresh deadline (none after interrupt: its grace
// stands).
func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.interrupted && c.timeout > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	st := c.closeState
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	if st == armed {
		c.mu.Lock()
		c.closeState = closing
		c.mu.Unlock()
	}
	return n, err
}

// RemoteAddr is the client's address (the PROXY header's source, when the
// listener takes PROXY headers).
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// closeAfterReply makes the connection close once the next reply is out
// (421 or 550 5.5.2 "and close"). go-smtp reads the next command, sees
// EOF and closes; commands the client pipelined behind it and go-smtp has
// already buffered are refused (the session refuses MAIL once closing).
func (c *conn) closeAfterReply() {
	c.mu.Lock()
	if c.closeState == open {
		c.closeState = armed
	}
	c.mu.Unlock()
}

// closingDown reports whether the connection is on its way out.
func (c *conn) closingDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeState != open || c.interrupted
}

func (c *conn) isInterrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

// interrupt is Shutdown's deadline: blocked and future reads fail with
// the server's 421 4.3.2 error (go-smtp answers it as is inside a
// transfer; between commands it answers its own 421 4.4.0), writes get a
// short grace, and the next reply closes the connection.
func (c *conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	if c.closeState == open {
		c.closeState = armed
	}
	_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	_ = c.Conn.SetWriteDeadline(time.Now().Add(shutdownWriteGrace))
}

// authFailed counts a failed AUTH and returns the count.
func (c *conn) authFailed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.authFailures++
	return c.authFailures
}

// client names the client as Postfix logs it: host[ip], host "unknown"
// without a PTR name.
func (c *conn) client() string {
	c.mu.Lock()
	ptr := c.ptr
	c.mu.Unlock()
	if ptr == "" {
		ptr = "unknown"
	}
	return ptr + "[" + c.ip.String() + "]"
}

// lookupPTR asks Config.LookupPTR once per connection.
func (c *conn) lookupPTR(ctx context.Context) string {
	c.mu.Lock()
	if c.ptrDone {
		defer c.mu.Unlock()
		return c.ptr
	}
	c.mu.Unlock()
	var name string
	if f := c.srv.cfg.LookupPTR; f != nil && c.ip.IsValid() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if n, err := f(ctx, c.ip); err == nil {
			name = traceText(n, "", false)
		}
		cancel()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ptr, c.ptrDone = name, true
	return name
}

// Close gives back the connection's slots, then closes it (in that order,
// so that a client that sees the close can connect again at once), once.
func (c *conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.srv.forget(c)
		err = c.Conn.Close()
	})
	return err
}
