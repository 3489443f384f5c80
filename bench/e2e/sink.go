package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// sink is a running smtp-sink with running counters (-c).
type sink struct {
	addr string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startSink starts smtp-sink on a free loopback port and waits until it
// accepts connections.
func startSink(ctx context.Context, bin, dir string) (*sink, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var args []string
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // required as root (testbed.md 1a)
	}
	args = append(args, "-c", "inet:"+addr, "1024")
	s := &sink{addr: addr, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = childAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := waitDial(ctx, addr, s.done, 5*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("smtp-sink: %w: %s", err, s.out.String())
	}
	// The dial above was a session too; count from here.
	if _, _, err := s.waitCounters(ctx, 1, 0, time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// waitDial waits until addr accepts a TCP connection.
func waitDial(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not listening after %v: %w", addr, timeout, err)
		}
	}
}

var counterRe = regexp.MustCompile(`sess=(\d+) quit=\d+ mesg=(\d+)`)

// counters returns the last sessions and messages counts the sink printed.
func (s *sink) counters() (sessions, messages int) {
	m := counterRe.FindAllStringSubmatch(s.out.String(), -1)
	if len(m) == 0 {
		return 0, 0
	}
	last := m[len(m)-1]
	sessions, _ = strconv.Atoi(last[1])
	messages, _ = strconv.Atoi(last[2])
	return sessions, messages
}

// waitCounters waits until at least sess sessions ended and mesg messages
// arrived.
func (s *sink) waitCounters(ctx context.Context, sess, mesg int, timeout time.Duration) (int, int, error) {
	deadline := time.Now().Add(timeout)
	for {
		ss, mm := s.counters()
		if ss >= sess && mm >= mesg {
			return ss, mm, nil
		}
		if time.Now().After(deadline) {
			return ss, mm, fmt.Errorf("smtp-sink: %d sessions, %d messages after %v; want %d, %d", ss, mm, timeout, sess, mesg)
		}
		select {
		case <-ctx.Done():
			return ss, mm, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settle waits until the sink received n messages and its session count
// stopped moving (every client connection closed), and returns the
// sessions and messages of the measurement (the readiness probe excluded).
func (s *sink) settle(ctx context.Context, n int) (int, int, error) {
	ss, mm, err := s.waitCounters(ctx, 0, n+0, 10*time.Second)
	if err != nil {
		return ss - 1, mm, err
	}
	// The counters also move when a session ends: wait for them to rest.
	for still := 0; still < 10; {
		select {
		case <-ctx.Done():
			return ss - 1, mm, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		s2, m2 := s.counters()
		if s2 == ss && m2 == mm {
			still++
			continue
		}
		ss, mm, still = s2, m2, 0
	}
	if mm != n {
		return ss - 1, mm, fmt.Errorf("the sink received %d messages, want %d", mm, n)
	}
	return ss - 1, mm, nil
}

// stop ends the sink and everything in its process group.
func (s *sink) stop() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}
