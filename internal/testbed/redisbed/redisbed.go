// Package redisbed starts real Redis servers for tests: a single
// redis-server, or a Redis Cluster of several masters (with replicas when
// asked), built with `redis-cli --cluster create`.
//
// Every server listens on 127.0.0.1 on a free port (and a free cluster bus
// port), keeps its files in a temporary directory, persists nothing
// (save "" and appendonly no), and is stopped when the test that started
// it ends. Protected mode stays at Redis's default: it only refuses
// clients from outside loopback, and every client here is on loopback.
// Servers can be stopped, killed (SIGKILL, a crashed host) and restarted
// on the same address, for tests of what a client does meanwhile.
package redisbed

import (
	"context"
	"crypto/tls"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern-mta/postern/internal/testbed"
)

// Options configure one server.
type Options struct {
	// Password, when set, is required from clients (requirepass, the
	// password of the "default" user).
	Password string
	// TLSCertFile and TLSKeyFile, when set, make the server speak TLS
	// only (tls-port instead of port), without client certificates.
	TLSCertFile, TLSKeyFile string
	// ClientTLS is how [Server.Client] connects to a TLS server (with
	// the RootCAs of the test's CA); required with TLSCertFile.
	ClientTLS *tls.Config
}

// Server is a running redis-server.
type Server struct {
	// Addr is "127.0.0.1:PORT".
	Addr string
	// Dir is the server's working directory (nodes.conf of a cluster
	// node lives there).
	Dir string
	// Proc is the current process; Restart replaces it.
	Proc *testbed.Process

	bin    string
	argv   []string
	opts   Options
	paused int // the pid Pause stopped
}

// Start starts a single redis-server and waits until it answers PING.
// The test is skipped when redis-server is not installed (failed with
// POSTERN_REQUIRE_PEERS=1).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	return start(t, o, nil)
}

// start runs a server with extra arguments (the cluster's).
func start(t testing.TB, o Options, extra []string) *Server {
	t.Helper()
	s := &Server{bin: testbed.Require(t, "redis-server"), Dir: t.TempDir(), opts: o}
	if o.TLSCertFile != "" && o.ClientTLS == nil {
		t.Fatal("redisbed: a TLS server needs Options.ClientTLS")
	}
	port := testbed.FreePort(t, "127.0.0.1")
	s.Addr = testbed.Addr("127.0.0.1", port)
	portArgs := []string{"--port", strconv.Itoa(port)}
	if o.TLSCertFile != "" {
		portArgs = []string{"--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", o.TLSCertFile, "--tls-key-file", o.TLSKeyFile, "--tls-auth-clients", "no"}
	}
	s.argv = append([]string{s.bin, "--bind", "127.0.0.1", "--dir", s.Dir, "--daemonize", "no",
		"--save", "", "--appendonly", "no", "--logfile", ""}, portArgs...)
	if o.Password != "" {
		s.argv = append(s.argv, "--requirepass", o.Password)
	}
	s.argv = append(s.argv, extra...)
	s.run(t)
	return s
}

// run starts the process and waits until it answers.
func (s *Server) run(t testing.TB) {
	t.Helper()
	s.Proc = testbed.Start(t, s.Dir, s.argv...)
	// Listening first, so that the client below logs no refused dial.
	testbed.WaitFor(t, s.Proc, 15*time.Second, testbed.DialReady(s.Addr))
	c := s.Client(t)
	testbed.WaitFor(t, s.Proc, 15*time.Second, func(ctx context.Context) error {
		return c.Ping(ctx).Err()
	})
}

// Client returns a plain client of this one server (not cluster-aware),
// for a test to look at what the server holds. It is closed when the test
// ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: s.Addr, Password: s.opts.Password, DisableIdentity: true,
		MaxRetries: -1, DialerRetries: 1, PoolSize: 2}
	if s.opts.TLSCertFile != "" {
		o.TLSConfig = s.opts.ClientTLS
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// PID asks the server for its process id.
func (s *Server) PID(t testing.TB) int {
	t.Helper()
	v, _ := InfoField(s.infoSection(t, "server"), "process_id")
	pid, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("redisbed: %s: process_id %q: %v", s.Addr, v, err)
	}
	return pid
}

// infoSection returns the text of one INFO section.
func (s *Server) infoSection(t testing.TB, section string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := s.Client(t).Info(ctx, section).Result()
	if err != nil {
		t.Fatalf("redisbed: INFO %s on %s: %v", section, s.Addr, err)
	}
	return out
}

// InfoField finds "field:value" in the text of INFO.
func InfoField(info, field string) (string, bool) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, true
		}
	}
	return "", false
}

// Stop shuts the server down cleanly (SHUTDOWN NOSAVE) and waits until
// the process has exited.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// SHUTDOWN answers nothing: the connection just closes.
	_ = s.Client(t).ShutdownNoSave(ctx).Err()
	s.waitExit(t)
}

// Kill ends the server with SIGKILL, as a crash would, and waits until the
// process has exited.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(s.PID(t), syscall.SIGKILL); err != nil {
		t.Fatalf("redisbed: kill %s: %v", s.Addr, err)
	}
	s.waitExit(t)
}

// Pause freezes the server (SIGSTOP): connections stay open and nothing
// answers, as with a hung host. Resume, or the end of the test, thaws it.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	pid := s.PID(t)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("redisbed: pause %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	s.paused = pid
}

// Resume thaws a server frozen by Pause.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(s.paused, syscall.SIGCONT); err != nil {
		t.Fatalf("redisbed: resume %s: %v", s.Addr, err)
	}
}

func (s *Server) waitExit(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Proc.Exited() {
		if time.Now().After(deadline) {
			t.Fatalf("redisbed: %s did not exit", s.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Restart starts the server again, on the same address with the same
// arguments and directory, after Stop or Kill.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if !s.Proc.Exited() {
		t.Fatalf("redisbed: restart of %s, which is still running", s.Addr)
	}
	s.run(t)
}
