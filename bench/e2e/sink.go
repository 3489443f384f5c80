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
	"time"

	"github.com/postern-mta/postern/internal/procgroup"
)

// sink is a running sink, smtp-sink or the STARTTLS sink (gosink.go),
// with running counters (-c).
type sink struct {
	addr     string
	cmd      *exec.Cmd
	out      *syncBuffer
	done     chan struct{}
	stopOnce sync.Once
}

// sinkSpec says how to start a sink listening on an address.
type sinkSpec struct {
	name string
	argv func(addr string) []string
}

// smtpSinkSpec is Postfix's smtp-sink (no STARTTLS).
func smtpSinkSpec(bin string) sinkSpec {
	return sinkSpec{"smtp-sink", func(addr string) []string {
		args := []string{bin}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "nobody") // required as root (testbed.md 1a)
		}
		return append(args, "-c", "inet:"+addr, "1024")
	}}
}

// tlsSinkSpec is this program's STARTTLS sink (-worker sink), offering
// STARTTLS with the certificate in certFile and keyFile.
func tlsSinkSpec(self, certFile, keyFile string) sinkSpec {
	return sinkSpec{"STARTTLS sink", func(addr string) []string {
		return []string{self, "-worker", "sink", "-addr", addr, "-cert", certFile, "-key", keyFile}
	}}
}

// sinkCounts is what a sink counted: sessions (connections), messages,
// and TLS handshakes (the STARTTLS sink only), full and resumed.
type sinkCounts struct {
	sessions, messages, full, resumed int
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

// startSink starts a sink on a free loopback port and waits until it
// accepts connections.
func startSink(ctx context.Context, spec sinkSpec, dir string) (*sink, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	argv := spec.argv(addr)
	s := &sink{addr: addr, cmd: exec.Command(argv[0], argv[1:]...), out: &syncBuffer{}, done: make(chan struct{})}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = childAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.name, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := waitDial(ctx, addr, s.done, 5*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w: %s", spec.name, err, s.out.String())
	}
	// The dial above was a session too; count from here.
	if _, err := s.waitCounters(ctx, 1, 0, time.Second); err != nil {
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

// counterRe matches a counters line of smtp-sink -c, and of the STARTTLS
// sink, which adds the handshakes.
var counterRe = regexp.MustCompile(`sess=(\d+) quit=\d+ mesg=(\d+)(?: full=(\d+) resumed=(\d+))?`)

// counters returns the last counts the sink printed, the readiness probe
// included.
func (s *sink) counters() sinkCounts {
	m := counterRe.FindAllStringSubmatch(s.out.String(), -1)
	if len(m) == 0 {
		return sinkCounts{}
	}
	var c sinkCounts
	for i, p := range []*int{&c.sessions, &c.messages, &c.full, &c.resumed} {
		*p, _ = strconv.Atoi(m[len(m)-1][i+1]) // an absent group is 0
	}
	return c
}

// waitCounters waits until at least sess sessions ended and mesg messages
// arrived.
func (s *sink) waitCounters(ctx context.Context, sess, mesg int, timeout time.Duration) (sinkCounts, error) {
	deadline := time.Now().Add(timeout)
	for {
		c := s.counters()
		if c.sessions >= sess && c.messages >= mesg {
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("sink: %d sessions, %d messages after %v; want %d, %d", c.sessions, c.messages, timeout, sess, mesg)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settle waits until the sink received n messages and its session count
// stopped moving (every client connection closed), and returns the counts
// of the measurement (the readiness probe excluded).
func (s *sink) settle(ctx context.Context, n int) (sinkCounts, error) {
	probe := func(c sinkCounts) sinkCounts { c.sessions--; return c }
	c, err := s.waitCounters(ctx, 0, n, 10*time.Second)
	if err != nil {
		return probe(c), err
	}
	// The counters also move when a session ends: wait for them to rest.
	for still := 0; still < 10; {
		select {
		case <-ctx.Done():
			return probe(c), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if c2 := s.counters(); c2 != c {
			c, still = c2, 0
			continue
		}
		still++
	}
	if c.messages != n {
		return probe(c), fmt.Errorf("the sink received %d messages, want %d", c.messages, n)
	}
	return probe(c), nil
}

// stop ends the sink and everything in its process group.
func (s *sink) stop() {
	s.stopOnce.Do(func() { procgroup.Stop(s.cmd.Process.Pid, s.done, 3*time.Second) })
}

// cpu stops the sink and returns the CPU time (user+system) it used.
func (s *sink) cpu() time.Duration {
	s.stop()
	return s.cmd.ProcessState.UserTime() + s.cmd.ProcessState.SystemTime()
}
