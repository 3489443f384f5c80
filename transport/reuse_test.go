package transport_test

// Connection reuse: the pool, RSET between transactions, limits and
// timeouts of reused connections.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/transport"
)

func TestConnectionReuse(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	p := planFor(s.Addr)
	setMPC(p, 3)
	for range 7 {
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	}
	if s.Conns() != 3 || len(s.Messages()) != 7 {
		t.Errorf("%d connections for %d messages, want 3 for 7", s.Conns(), len(s.Messages()))
	}
	if n := strings.Count(strings.Join(s.Commands(), "|"), "RSET"); n != 4 {
		t.Errorf("%d RSETs, want 4", n)
	}

	t.Run("after Close: still delivers, pools nothing", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := &transport.Client{}
		p := planFor(s.Addr)
		setMPC(p, 10)
		deliver(t, c, p, newMsg(body, "b@example.test"))
		_ = c.Close()
		deliver(t, c, p, newMsg(body, "b@example.test"))
		deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 3 || len(s.Messages()) != 3 {
			t.Errorf("%d conns, %d messages", s.Conns(), len(s.Messages()))
		}
	})
	t.Run("different EHLO name or source: new connection", func(t *testing.T) {
		s := newFakeServer(t, script{})
		p := planFor(s.Addr)
		setMPC(p, 10)
		deliver(t, c, p, newMsg(body, "b@example.test"))
		eachTarget(p, func(t *transport.Target) { t.EHLOName = "other.example.org" })
		deliver(t, c, p, newMsg(body, "b@example.test"))
		eachTarget(p, func(t *transport.Target) { t.Source = netip.MustParseAddr("127.0.0.9") })
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 3 || res[0].Source.Addr() != netip.MustParseAddr("127.0.0.9") {
			t.Errorf("%d conns, source %v", s.Conns(), res[0].Source)
		}
	})
	t.Run("protocol failure closes", func(t *testing.T) {
		s := newFakeServer(t, script{reply: map[string]string{"MAIL": "421 4.3.2 closing"}})
		p := planFor(s.Addr)
		setMPC(p, 10)
		deliver(t, c, p, newMsg(body, "b@example.test"))
		deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 2 {
			t.Errorf("%d conns, want 2", s.Conns())
		}
	})
	t.Run("stale pooled connection is replaced", func(t *testing.T) {
		s := newFakeServer(t, script{drop: map[string]bool{"RSET": true}})
		p := planFor(s.Addr)
		setMPC(p, 10)
		for range 3 {
			res := deliver(t, c, p, newMsg(body, "b@example.test"))
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		}
		if s.Conns() != 3 {
			t.Errorf("%d conns, want 3", s.Conns())
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := &transport.Client{IdleTimeout: 100 * time.Millisecond}
		defer c.Close()
		p := planFor(s.Addr)
		setMPC(p, 10)
		deliver(t, c, p, newMsg(body, "b@example.test"))
		// The pool QUITs the connection when it has been idle for
		// IdleTimeout; it takes it out of the pool before that.
		s.waitCommand(t, "QUIT")
		deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 2 {
			t.Errorf("%d conns", s.Conns())
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := newClient(t, nil)
		p := planFor(s.Addr)
		setMPC(p, 5)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					res := c.Deliver(context.Background(), p, newMsg(body, "a@example.test", "b@example.test"))
					if err := transport.CheckResults(newMsg("", "a@example.test", "b@example.test").Recipients, res); err != nil {
						t.Error(err)
					}
					for _, r := range res {
						if r.Status != transport.StatusDelivered {
							t.Errorf("%s", dump(res))
						}
					}
				}
			})
		}
		wg.Wait()
		if n := len(s.Messages()); n != 40 {
			t.Errorf("%d messages", n)
		}
		if n := s.Conns(); n > 16 {
			t.Errorf("%d connections for 40 messages at 5 per connection", n)
		}
	})
}

// A pooled connection takes the timeouts and the limit of the delivery
// that reuses it, not those of the one that opened it.
func TestReusedConnectionTakesNewSettings(t *testing.T) {
	for _, tt := range []struct {
		verb, phase string
		set         func(*transport.Timeouts, time.Duration)
	}{
		{"RCPT", "RCPT TO", func(to *transport.Timeouts, d time.Duration) { to.RcptTo = d }},
		{"DATA", "DATA", func(to *transport.Timeouts, d time.Duration) { to.Data = d }},
		{".", "end of data", func(to *transport.Timeouts, d time.Duration) { to.Data = d }},
	} {
		for _, pipelining := range []bool{true, false} {
			t.Run(fmt.Sprintf("timeout %s/pipelining=%v", tt.phase, pipelining), func(t *testing.T) {
				// The second transaction's verb is never answered (until the
				// client gives up).
				sc := script{hangAt: map[string]int{tt.verb: 2}}
				if !pipelining {
					sc.ext = withoutPipelining(nil)
				}
				s := newFakeServer(t, sc)
				c := newClient(t, nil)
				p := planFor(s.Addr)
				setMPC(p, 10)
				eachTarget(p, func(t *transport.Target) { tt.set(&t.Timeouts, time.Hour) }) // longer than deliver's 20s context
				wantAll(t, deliver(t, c, p, newMsg(body, "a@example.test")), transport.StatusDelivered, transport.ClassNone)

				p = planFor(s.Addr)
				setMPC(p, 10)
				eachTarget(p, func(t *transport.Target) { tt.set(&t.Timeouts, 300*time.Millisecond) })
				res := deliver(t, c, p, newMsg(body, "b@example.test"))
				wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
				// With the first delivery's timeout, the context would have
				// ended the wait: "delivery interrupted", wrapping it.
				if r := res[0]; r.Text != "timeout during "+tt.phase || r.Err.Phase != tt.phase || errors.Is(r.Err, context.DeadlineExceeded) {
					t.Errorf("want the %s timeout to fire:%s", tt.phase, dump(res))
				}
				if s.Conns() != 1 {
					t.Errorf("%d connections: the second message did not reuse the first one's", s.Conns())
				}
			})
		}
	}
	t.Run("higher limit", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := newClient(t, nil)
		p := planFor(s.Addr)
		setMPC(p, 2)
		deliver(t, c, p, newMsg(body, "b@example.test"))
		setMPC(p, 3)
		for range 2 {
			wantAll(t, deliver(t, c, p, newMsg(body, "b@example.test")), transport.StatusDelivered, transport.ClassNone)
		}
		// Three transactions on the first connection, then QUIT (the
		// limit of 3 is reached).
		if s.Conns() != 1 || len(s.Messages()) != 3 {
			t.Errorf("%d connections for %d messages, want 1 for 3", s.Conns(), len(s.Messages()))
		}
		if got := strings.Join(s.Commands(), "|"); !strings.HasSuffix(got, "|QUIT") {
			t.Errorf("commands %s", got)
		}
	})
	t.Run("lower limit", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := newClient(t, nil)
		p := planFor(s.Addr)
		setMPC(p, 10)
		deliver(t, c, p, newMsg(body, "b@example.test"))
		// One transaction per connection now: the pooled connection,
		// which already carried one, is closed instead of reused.
		setMPC(p, 1)
		wantAll(t, deliver(t, c, p, newMsg(body, "b@example.test")), transport.StatusDelivered, transport.ClassNone)
		m := s.Messages()
		if s.Conns() != 2 || len(m) != 2 || m[0].ConnNo != 1 || m[1].ConnNo != 2 {
			t.Errorf("%d connections, messages %+v", s.Conns(), m)
		}
		if got := strings.Join(s.Commands(), "|"); strings.Contains(got, "RSET") || strings.Count(got, "QUIT") != 2 {
			t.Errorf("commands %s", got)
		}
	})
}

// On a pooled connection with PIPELINING, RSET goes out with MAIL FROM,
// RCPT TO and DATA (no round trip of its own). When it fails, the
// connection went stale while idle: another one carries the message, and
// nothing was taken on the stale one. Without PIPELINING, RSET is asked
// on its own first.
func TestPipelinedRSET(t *testing.T) {
	for _, tt := range []struct {
		name  string
		sc    script
		conns int // for three messages
	}{
		{"pipelined, accepted", script{}, 1},
		{"pipelined, refused 421: replaced", script{reply: map[string]string{"RSET": "421 4.3.2 closing"}}, 3},
		{"pipelined, connection dropped: replaced", script{drop: map[string]bool{"RSET": true}}, 3},
		{"without PIPELINING, accepted", script{ext: withoutPipelining(nil)}, 1},
		{"without PIPELINING, refused: replaced", script{ext: withoutPipelining(nil), reply: map[string]string{"RSET": "421 4.3.2 closing"}}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, tt.sc)
			c := newClient(t, nil)
			p := planFor(s.Addr)
			setMPC(p, 10)
			for range 3 {
				res := deliver(t, c, p, newMsg(body, "b@example.test"))
				wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
				if len(res[0].Attempts) != 1 {
					t.Errorf("%d attempts, want 1 (a stale connection is not an attempt)", len(res[0].Attempts))
				}
			}
			if s.Conns() != tt.conns || len(s.Messages()) != 3 {
				t.Errorf("%d connections and %d messages, want %d and 3", s.Conns(), len(s.Messages()), tt.conns)
			}
			cmds := strings.Join(s.Commands(), "|")
			if n := strings.Count(cmds, "RSET"); n != 2 {
				t.Errorf("%d RSETs, want 2 (one per reuse): %s", n, cmds)
			}
			if tt.conns == 1 && !strings.Contains(cmds, "RSET|MAIL FROM") {
				t.Errorf("commands %s: want RSET right before MAIL FROM", cmds)
			}
			// With PIPELINING, MAIL FROM and the rest came with RSET
			// (no round trip of its own); without, RSET came alone.
			pipelined := tt.sc.ext == nil
			for i, with := range s.RSETPipelined() {
				if with != pipelined {
					t.Errorf("RSET %d: commands arrived with it = %v, want %v", i+1, with, pipelined)
				}
			}
		})
	}
}
