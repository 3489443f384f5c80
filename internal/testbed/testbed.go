// Package testbed starts real third-party servers (DNS servers, SMTP
// receivers) on loopback for tests, and stops them when the test ends.
//
// Tests that need a real peer call [Require] first: when the program is not
// installed the test is skipped, unless POSTERN_REQUIRE_PEERS=1 is set (as
// `make test` and CI do), in which case it fails, so a missing install step
// can never turn into a green run that tested nothing.
package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/procgroup"
)

// Require returns the absolute path of program, or skips (or, with
// POSTERN_REQUIRE_PEERS=1, fails) the test when it is not installed.
func Require(t testing.TB, program string) string {
	t.Helper()
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/", "/sbin/", "/usr/lib/postfix/sbin/"} {
		if p, err := exec.LookPath(dir + program); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (run scripts/install-test-deps.sh, or `make test`)", program)
	if os.Getenv("POSTERN_REQUIRE_PEERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a TCP port on host that was free a moment ago. The same
// number is usually free for UDP too; callers that need both check.
//
// It never returns a number it returned before in this process: the
// kernel may hand the same free port to two bind(0) calls in a row, and a
// test that asks for two ports (a listener's and a metrics endpoint's)
// would then start a server whose second bind fails.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("testbed: free port on %s: %v", host, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		givenMu.Lock()
		seen := given[port]
		given[port] = true
		givenMu.Unlock()
		if !seen {
			return port
		}
	}
	t.Fatalf("testbed: free port on %s: 100 tries gave only ports handed out before", host)
	return 0
}

// given are the ports FreePort has returned in this process.
var (
	givenMu sync.Mutex
	given   = map[int]bool{}
)

// ListenOn settles where a test server listens: host defaults to
// 127.0.0.1; port 0 means nsPort (the protocol's real port) for a server in
// a network namespace of its own, else a free port on host.
func ListenOn(t testing.TB, host string, port int, inNetns bool, nsPort int) (string, int) {
	t.Helper()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		if inNetns {
			port = nsPort
		} else {
			port = FreePort(t, host)
		}
	}
	return host, port
}

// Process is a server started by [Start]. Its output is kept for failure
// messages.
type Process struct {
	Name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

type lockedWriter struct{ p *Process }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start runs argv in dir (its own process group) and registers a cleanup
// that stops it (SIGTERM, then SIGKILL after 3s) when the test ends. If the
// test failed, the process output is logged.
func Start(t testing.TB, dir string, argv ...string) *Process {
	t.Helper()
	p := &Process{Name: argv[0], done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Dir = dir
	p.cmd.Stdout = lockedWriter{p}
	p.cmd.Stderr = lockedWriter{p}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("testbed: start %v: %v", argv, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		procgroup.Stop(p.cmd.Process.Pid, p.done, 3*time.Second)
		if t.Failed() {
			t.Logf("testbed: output of %s:\n%s", p.Name, p.Output())
		}
	})
	return p
}

// WaitFor polls ready every 20ms until it returns nil or timeout passes; on
// timeout (or if p exits first) the test fails with the last error and the
// process output.
func WaitFor(t testing.TB, p *Process, timeout time.Duration, ready func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err = ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if p != nil && p.Exited() {
			t.Fatalf("testbed: %s exited before it was ready (%v):\n%s", p.Name, err, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := ""
	if p != nil {
		out = p.Output()
	}
	t.Fatalf("testbed: not ready after %v: %v\n%s", timeout, err, out)
}

// DialReady is a ready function for [WaitFor] that succeeds once a TCP
// connection to addr is accepted.
func DialReady(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// Addr joins host and port.
func Addr(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// ClosedPort returns a loopback address nothing listens on (it was free a
// moment ago): a connection to it is refused.
func ClosedPort(t testing.TB) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().(*net.TCPAddr).AddrPort()
	_ = l.Close()
	return a
}

// Buffer is a bytes.Buffer that goroutines may write while a test reads
// it: a log destination.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
