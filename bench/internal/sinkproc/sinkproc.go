// Package sinkproc runs the SMTP sinks of the benchmarks (bench/e2e,
// bench/soak): Postfix's smtp-sink, or any program that prints its
// counter lines (smtp-sink -c: "sess=N quit=N mesg=N", optionally
// followed by "full=N resumed=N" TLS handshakes), on a free loopback port,
// in a process group of its own; and the benchmark message.
package sinkproc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postern-mta/postern/internal/procgroup"
)

// Spec says how to start a sink listening on an address.
type Spec struct {
	Name string
	Argv func(addr string) []string
}

// SmtpSink is Postfix's smtp-sink at bin, counting (-c).
func SmtpSink(bin string) Spec {
	return Spec{"smtp-sink", func(addr string) []string {
		args := []string{bin}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "nobody") // smtp-sink refuses to run as root
		}
		return append(args, "-c", "inet:"+addr, "1024") // 1024: the listen backlog
	}}
}

// Counts is what a sink counted: sessions (connections) ended, messages,
// and TLS handshakes (sinks that print them), full and resumed.
type Counts struct {
	Sessions, Messages, Full, Resumed int
}

// Sink is a running sink.
type Sink struct {
	Addr     string
	cmd      *exec.Cmd
	out      *Buffer
	done     chan struct{}
	stopOnce sync.Once
}

// Start starts the sink on a free loopback port, in dir, and waits until
// it accepts connections and has counted the probe that said so.
func Start(ctx context.Context, spec Spec, dir string) (*Sink, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return StartOn(ctx, spec, dir, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// StartOn is Start on a given address, "127.0.0.1:PORT": for a sink that
// comes up where a client was told to deliver before it existed.
func StartOn(ctx context.Context, spec Spec, dir, addr string) (*Sink, error) {
	argv := spec.Argv(addr)
	s := &Sink{Addr: addr, cmd: exec.Command(argv[0], argv[1:]...), out: &Buffer{}, done: make(chan struct{})}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := WaitDial(ctx, addr, s.done, 5*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%s: %w: %s", spec.Name, err, s.out.String())
	}
	// The dial above was a session too; count from here.
	if _, err := s.WaitCounts(ctx, 1, 0, 2*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitDial waits until addr accepts a TCP connection, for at most
// timeout; exited closing first is an error.
func WaitDial(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
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

// countsRe matches a counters line, with or without the handshakes.
var countsRe = regexp.MustCompile(`sess=(\d+) quit=\d+ mesg=(\d+)(?: full=(\d+) resumed=(\d+))?`)

// Counts returns the last counts the sink printed, the readiness probe
// included. It reads the end of the output first, so that polling it
// during a long run stays cheap.
func (s *Sink) Counts() Counts {
	if m := countsRe.FindAllString(s.out.Tail(4096), -1); len(m) > 0 {
		return ParseCounts(m[len(m)-1])
	}
	return ParseCounts(s.out.String())
}

// ParseCounts reads the last counters line of a sink's output (smtp-sink
// ends them with carriage returns); no line is zero counts.
func ParseCounts(out string) Counts {
	m := countsRe.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return Counts{}
	}
	var c Counts
	for i, p := range []*int{&c.Sessions, &c.Messages, &c.Full, &c.Resumed} {
		*p, _ = strconv.Atoi(m[len(m)-1][i+1]) // an absent group is 0
	}
	return c
}

// WaitCounts waits until the sink counted at least sess sessions and mesg
// messages.
func (s *Sink) WaitCounts(ctx context.Context, sess, mesg int, timeout time.Duration) (Counts, error) {
	deadline := time.Now().Add(timeout)
	for {
		c := s.Counts()
		if c.Sessions >= sess && c.Messages >= mesg {
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("sink %s: %d sessions and %d messages after %v, want %d and %d", s.Addr, c.Sessions, c.Messages, timeout, sess, mesg)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Settle waits until the sinks together received n messages and their
// counters stopped moving (every client connection closed), and returns
// each one's counts less its readiness probe.
func Settle(ctx context.Context, sinks []*Sink, n int) ([]Counts, error) {
	counts := func() ([]Counts, int) {
		cs, sum := make([]Counts, len(sinks)), 0
		for i, s := range sinks {
			cs[i] = s.Counts()
			cs[i].Sessions-- // the readiness probe
			sum += cs[i].Messages
		}
		return cs, sum
	}
	deadline := time.Now().Add(15 * time.Second)
	cs, sum := counts()
	// The counters also move when a session ends: wait for 10 polls 50 ms
	// apart without a change, once all n arrived.
	for still := 0; still < 10; still++ {
		select {
		case <-ctx.Done():
			return cs, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		cs2, sum2 := counts()
		if fmt.Sprint(cs2) != fmt.Sprint(cs) || sum2 < n {
			cs, sum, still = cs2, sum2, -1
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if sum != n {
		return cs, fmt.Errorf("the sinks received %d messages, want %d", sum, n)
	}
	return cs, nil
}

// Settle is Settle of one sink.
func (s *Sink) Settle(ctx context.Context, n int) (Counts, error) {
	cs, err := Settle(ctx, []*Sink{s}, n)
	return cs[0], err
}

// Output is what the sink printed so far.
func (s *Sink) Output() string { return s.out.String() }

// Stop ends the sink and everything in its process group.
func (s *Sink) Stop() {
	s.stopOnce.Do(func() { procgroup.Stop(s.cmd.Process.Pid, s.done, 3*time.Second) })
}

// CPU stops the sink and returns the CPU time (user+system) it used.
func (s *Sink) CPU() time.Duration {
	s.Stop()
	return s.cmd.ProcessState.UserTime() + s.cmd.ProcessState.SystemTime()
}

// Buffer is a bytes.Buffer that a process's output goroutine writes while
// the benchmark reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Tail returns the last n bytes written (all when there are fewer).
func (l *Buffer) Tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	return string(b[max(0, len(b)-n):])
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Message is the benchmark message: a header with subject, then a payload
// of size bytes in lines of 76 characters, like smtp-source -l.
func Message(size int, subject string) string {
	var b strings.Builder
	b.WriteString("From: <bench@sender.test>\r\nTo: <rcpt@dest.test>\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <bench@sender.test>\r\n\r\n")
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:74] + "\r\n"
	for n := 0; n < size; n += len(line) {
		b.WriteString(line[:min(len(line), size-n)])
	}
	if !strings.HasSuffix(b.String(), "\r\n") {
		b.WriteString("\r\n")
	}
	return b.String()
}
