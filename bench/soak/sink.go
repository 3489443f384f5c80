package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/postern-mta/postern/internal/procgroup"
)

// sink is a running Postfix smtp-sink with its counters (-c) on stdout.
type sink struct {
	addr     string
	cmd      *exec.Cmd
	out      *lockedBuffer
	done     chan struct{}
	stopOnce sync.Once
}

// sinkCounts is what a sink counted: sessions (connections) and messages.
type sinkCounts struct{ sessions, messages int }

// lockedBuffer is a bytes.Buffer the sink's output goroutine writes while
// the benchmark reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// findSmtpSink finds Postfix's smtp-sink in PATH or the usual sbin
// directories.
func findSmtpSink() (string, error) {
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/", "/sbin/"} {
		if p, err := exec.LookPath(dir + "smtp-sink"); err == nil {
			return p, nil
		}
	}
	return "", errors.New("smtp-sink is not installed (apt-get install postfix)")
}

// startSinks starts k smtp-sinks on free loopback ports; on error the
// ones started are stopped.
func startSinks(ctx context.Context, bin, dir string, k int) ([]*sink, error) {
	var ss []*sink
	for range k {
		s, err := startSink(ctx, bin, dir)
		if err != nil {
			stopSinks(ss)
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, nil
}

func stopSinks(ss []*sink) {
	for _, s := range ss {
		s.stop()
	}
}

// startSink starts smtp-sink on a free port of 127.0.0.1 and waits until
// it accepts connections and has counted the probe that says so.
func startSink(ctx context.Context, bin, dir string) (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtp-sink: a free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"-c", "inet:" + addr, "1024"} // 1024: the listen backlog
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...) // smtp-sink refuses to run as root
	}
	s := &sink{addr: addr, cmd: exec.Command(bin, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("smtp-sink: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := s.waitListening(ctx, 5*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("smtp-sink on %s: %w: %s", addr, err, s.out.String())
	}
	if _, err := s.waitCounts(ctx, 1, 0, 2*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// waitListening dials until the sink accepts a connection.
func (s *sink) waitListening(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %v: %w", timeout, err)
		}
		select {
		case <-s.done:
			return errors.New("exited before listening")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// countsRe matches a counters line of smtp-sink -c.
var countsRe = regexp.MustCompile(`sess=(\d+) quit=\d+ mesg=(\d+)`)

// counts returns the last counters the sink printed (the readiness probe
// included).
func (s *sink) counts() sinkCounts {
	return lastCounts(s.out.String())
}

// lastCounts parses the last counters line of smtp-sink -c output, whose
// lines end in carriage returns.
func lastCounts(out string) sinkCounts {
	m := countsRe.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return sinkCounts{}
	}
	var c sinkCounts
	c.sessions, _ = strconv.Atoi(m[len(m)-1][1])
	c.messages, _ = strconv.Atoi(m[len(m)-1][2])
	return c
}

// waitCounts waits until the sink counted at least sess sessions and mesg
// messages.
func (s *sink) waitCounts(ctx context.Context, sess, mesg int, timeout time.Duration) (sinkCounts, error) {
	deadline := time.Now().Add(timeout)
	for {
		c := s.counts()
		if c.sessions >= sess && c.messages >= mesg {
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("smtp-sink %s: %d sessions and %d messages after %v, want %d and %d", s.addr, c.sessions, c.messages, timeout, sess, mesg)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settleSinks waits until the sinks together counted n messages and their
// counters stopped moving (every session ended), and returns each sink's
// counts less the readiness probe.
func settleSinks(ctx context.Context, ss []*sink, n int) ([]sinkCounts, error) {
	total := func() ([]sinkCounts, int) {
		var cs []sinkCounts
		sum := 0
		for _, s := range ss {
			c := s.counts()
			c.sessions-- // the readiness probe
			cs = append(cs, c)
			sum += c.messages
		}
		return cs, sum
	}
	deadline := time.Now().Add(15 * time.Second)
	cs, sum := total()
	for still := 0; still < 10; still++ { // 10 polls 50 ms apart without a change
		select {
		case <-ctx.Done():
			return cs, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		cs2, sum2 := total()
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

// stop ends the sink (its whole process group).
func (s *sink) stop() {
	s.stopOnce.Do(func() { procgroup.Stop(s.cmd.Process.Pid, s.done, 3*time.Second) })
}
