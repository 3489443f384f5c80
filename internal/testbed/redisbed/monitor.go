package redisbed

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern-mta/postern/internal/testbed"
)

// Monitor watches the commands a server runs, with MONITOR (through
// redis-cli), so that a test can count a client's round trips.
type Monitor struct {
	s    *Server
	c    *redis.Client // sends the markers, over one connection
	proc *testbed.Process
	seen int // lines of output already returned
}

// Command is one command MONITOR reported.
type Command struct {
	// Client is the client's address, or "lua" for a command run by a
	// script (those are not round trips).
	Client string
	// Name is the command's name in lower case, e.g. "evalsha".
	Name string
}

var marks atomic.Int64

// Monitor starts watching; it stops when the test ends.
func (s *Server) Monitor(t testing.TB) *Monitor {
	t.Helper()
	if s.opts.TLSCertFile != "" {
		t.Fatal("redisbed: Monitor of a TLS server is not supported")
	}
	host, port, _ := strings.Cut(s.Addr, ":")
	argv := []string{testbed.Require(t, "redis-cli"), "-h", host, "-p", port}
	if s.opts.Password != "" {
		argv = append(argv, "-a", s.opts.Password, "--no-auth-warning")
	}
	m := &Monitor{s: s, c: s.Client(t), proc: testbed.Start(t, t.TempDir(), append(argv, "monitor")...)}
	m.Next(t) // MONITOR answers OK first; the mark shows it is running
	return m
}

// Next returns the commands the server ran since the previous call (or
// since Monitor started), leaving out its own marker: it sends an ECHO
// and waits until MONITOR shows it, so nothing run before is missed.
// The markers' own client is connected once, by Monitor: later windows
// hold nothing of it.
func (m *Monitor) Next(t testing.TB) []Command {
	t.Helper()
	mark := fmt.Sprintf("redisbed-mark-%d", marks.Add(1))
	c := m.c
	var lines []string
	testbed.WaitFor(t, m.proc, 10*time.Second, func(ctx context.Context) error {
		if err := c.Echo(ctx, mark).Err(); err != nil {
			return err
		}
		out := strings.Split(m.proc.Output(), "\n")
		for i := m.seen; i < len(out); i++ {
			if strings.Contains(out[i], `"echo" "`+mark+`"`) {
				lines, m.seen = out[m.seen:i], i+1
				return nil
			}
		}
		return fmt.Errorf("MONITOR of %s has not shown %s yet", m.s.Addr, mark)
	})
	var cmds []Command
	for _, l := range lines {
		if cmd, ok := parseMonitor(l); ok && !strings.Contains(l, `"redisbed-mark-`) {
			cmds = append(cmds, cmd)
		}
	}
	return cmds
}

// parseMonitor reads a line such as
// 1700000000.123456 [0 127.0.0.1:5000] "evalsha" "abc" "4" ...
func parseMonitor(l string) (Command, bool) {
	_, rest, ok := strings.Cut(l, " [")
	if !ok {
		return Command{}, false
	}
	src, rest, ok := strings.Cut(rest, "] \"")
	if !ok {
		return Command{}, false
	}
	_, client, _ := strings.Cut(src, " ")
	name, _, _ := strings.Cut(rest, "\"")
	return Command{Client: client, Name: strings.ToLower(name)}, true
}
