// Package postfixbed starts a throwaway Postfix instance for tests: its own
// configuration directory, queue and log file, smtpd on a free loopback
// port, all mail relayed to a sink the test started (relayhost), and
// stopped and removed when the test ends. It never reads or writes
// /etc/postfix: every Postfix command is given -c with the instance's
// configuration directory.
//
// The log is Postfix's own maillog_file (Postfix 3.4 and later), written
// by the postlogd(8) service, so tests read exactly what an operator's
// mail.log holds without a syslog daemon.
package postfixbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// Config is a throwaway instance's configuration, for [Config.Write]. It
// needs no testing.T, so programs other than tests can write one too.
type Config struct {
	// Dir holds everything: etc/ (main.cf, master.cf), spool/ (the
	// queue), data/ and the log file. Its parent directories must be
	// searchable by the postfix user (t.TempDir's are not).
	Dir string
	// SMTPD is where smtpd listens, "127.0.0.1:PORT".
	SMTPD string
	// Relay is where all mail goes (relayhost = [host]:port), "HOST:PORT".
	Relay string
	// Main are more main.cf settings, "name = value" each, written after
	// the defaults (a later setting of a name wins).
	Main []string
}

// Etc is the configuration directory (postfix -c).
func (c Config) Etc() string { return filepath.Join(c.Dir, "etc") }

// Spool is the queue directory.
func (c Config) Spool() string { return filepath.Join(c.Dir, "spool") }

// LogFile is the maillog_file.
func (c Config) LogFile() string { return filepath.Join(c.Dir, "maillog") }

// masterCF runs every service unchrooted (the chroot would need copies of
// /etc files in the queue directory) and postlogd, which writes
// maillog_file. Pipe-based services (maildrop, uucp, ...) are left out:
// nothing here delivers through them.
const masterCF = `SMTPD inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
`

// Write makes the instance's directories and writes main.cf and
// master.cf. Run as root: the data directory is given to the postfix
// user, as Postfix requires.
func (c Config) Write() error {
	relayHost, relayPort, ok := strings.Cut(c.Relay, ":")
	if !ok || strings.Contains(relayPort, ":") {
		return fmt.Errorf("postfixbed: relay %q: write HOST:PORT (IPv4 or a name)", c.Relay)
	}
	data := filepath.Join(c.Dir, "data")
	for _, d := range []string{c.Etc(), c.Spool(), data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("postfixbed: %w", err)
		}
	}
	u, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("postfixbed: the postfix user: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("postfixbed: the postfix user's uid %q: %w", u.Uid, err)
	}
	if err := os.Chown(data, uid, -1); err != nil {
		return fmt.Errorf("postfixbed: %w", err)
	}
	// maillog_file must start with one of maillog_file_prefixes: the
	// instance's own directory is the only one allowed here.
	main := []string{
		"compatibility_level = 3.6",
		"queue_directory = " + c.Spool(),
		"data_directory = " + data,
		"mail_owner = postfix",
		"setgid_group = postdrop",
		"myhostname = pf.postfixbed.test",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"mydestination =",
		"local_recipient_maps =",
		"alias_maps =",
		"alias_database =",
		"relayhost = [" + relayHost + "]:" + relayPort,
		"mynetworks = 127.0.0.0/8",
		"smtpd_relay_restrictions = permit_mynetworks, reject",
		"smtp_tls_security_level = none",
		"maillog_file_prefixes = " + c.Dir,
		"maillog_file = " + c.LogFile(),
	}
	main = append(main, c.Main...)
	if err := os.WriteFile(filepath.Join(c.Etc(), "main.cf"), []byte(strings.Join(main, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("postfixbed: %w", err)
	}
	master := strings.Replace(masterCF, "SMTPD", c.SMTPD, 1)
	if err := os.WriteFile(filepath.Join(c.Etc(), "master.cf"), []byte(master), 0o644); err != nil {
		return fmt.Errorf("postfixbed: %w", err)
	}
	return nil
}

// Options configure [Start].
type Options struct {
	// Relay is where all mail goes, "HOST:PORT": a sink the test started
	// (smtpbed.StartSink, smtpbed.StartAIOSink).
	Relay string
	// Main are more main.cf settings, "name = value" each, e.g.
	// "transport_maps = inline:{soft.test=smtp:[127.0.0.1]:2526}".
	Main []string
}

// Postfix is a running instance.
type Postfix struct {
	Config
	// Proc is `postfix start-fg`, which lives as long as the master.
	Proc *testbed.Process
	// Sbin is the directory of the postfix command (postqueue, postsuper
	// and postconf are there too).
	Sbin string
}

// Start configures and starts an instance relaying to o.Relay, and waits
// until smtpd accepts connections. It is stopped (postfix stop) and its
// directory removed when the test ends. The test is skipped when Postfix
// is not installed or the test does not run as root (Postfix starts as
// root and drops to the postfix user); with POSTERN_REQUIRE_PEERS=1 it
// fails instead.
func Start(t testing.TB, o Options) *Postfix {
	t.Helper()
	bin := testbed.Require(t, "postfix")
	if os.Geteuid() != 0 {
		if os.Getenv("POSTERN_REQUIRE_PEERS") == "1" {
			t.Fatal("postfixbed: Postfix must be started as root")
		}
		t.Skip("postfixbed: Postfix must be started as root")
	}
	// t.TempDir is inside a directory only root may enter; the queue must
	// be reachable by the postfix user.
	dir, err := os.MkdirTemp("", "postern-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Postfix{Sbin: filepath.Dir(bin), Config: Config{
		Dir:   dir,
		SMTPD: testbed.Addr("127.0.0.1", testbed.FreePort(t, "127.0.0.1")),
		Relay: o.Relay,
		Main:  o.Main,
	}}
	if err := p.Config.Write(); err != nil {
		t.Fatal(err)
	}
	// start-fg keeps the postfix command in the foreground while the
	// master runs. The postfix command reports its errors (a bad
	// configuration) only to a terminal or the log: script(1) gives it
	// one, so they reach the process output shown when the test fails.
	// The master makes a session of its own, so the process group signal
	// of testbed.Start's cleanup does not reach it: "postfix stop" stops
	// it first (cleanups run last-registered first).
	script := testbed.Require(t, "script")
	p.Proc = testbed.Start(t, dir, script, "-qec", bin+" -c "+p.Etc()+" start-fg", "/dev/null")
	t.Cleanup(func() { p.stop(t) })
	testbed.WaitFor(t, p.Proc, 30*time.Second, testbed.DialReady(p.SMTPD))
	return p
}

// stop runs "postfix stop" and waits until start-fg ends (the master
// waits for its children). If it does not, the master is killed, once its
// working directory shows it is this instance's (a master chdirs to its
// queue directory), so a stale pid file can never kill another process.
func (p *Postfix) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	master := p.masterPID()
	if out, err := exec.CommandContext(ctx, filepath.Join(p.Sbin, "postfix"), "-c", p.Etc(), "stop").CombinedOutput(); err != nil && !p.Proc.Exited() {
		t.Logf("postfixbed: postfix stop: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.Proc.Exited() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if master > 0 {
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", master)); err == nil && cwd == p.Spool() {
			_ = syscall.Kill(master, syscall.SIGKILL)
		}
	}
}

// masterPID reads the master's pid file (0 when there is none).
func (p *Postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.Spool(), "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Command runs a Postfix command of the instance (postqueue, postsuper,
// postconf, ...: "-c ETC" is added before args) and returns its output;
// the test fails when it fails.
func (p *Postfix) Command(t testing.TB, name string, args ...string) string {
	t.Helper()
	argv := append([]string{"-c", p.Etc()}, args...)
	out, err := exec.Command(filepath.Join(p.Sbin, name), argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("postfixbed: %s %s: %v\n%s", name, strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// Log returns the log file as written so far ("" before the first line).
func (p *Postfix) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(p.LogFile())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// WaitLog waits until cond accepts the log (returns nil), failing the test
// with cond's last error and the log after timeout.
func (p *Postfix) WaitLog(t testing.TB, timeout time.Duration, cond func(log string) error) {
	t.Helper()
	var last error
	ok := false
	defer func() {
		if !ok && t.Failed() {
			t.Logf("postfixbed: waited for the log: %v\n%s", last, p.Log(t))
		}
	}()
	testbed.WaitFor(t, p.Proc, timeout, func(context.Context) error {
		last = cond(p.Log(t))
		return last
	})
	ok = true
}
