// Package blackbox_test tests `postern relay` from the outside: the
// command is built once (TestMain) and run as a real process on a real
// spool, with real peers around it (Postfix, smtp-sink, smtp-source,
// strace, a loop-mounted file system, network namespaces). It checks the
// relay's promises to the mail it accepts: the ack rule (RFC 5321
// section 4.1.1.4: a 250 only once the message is on disk), no loss and
// bounded duplicates across kill -9 (RFC 1047), 452 4.3.1 on a full disk
// (RFC 3463), the open-relay guard, delivery faults and DSNs (RFC 3464),
// and a graceful stop.
//
// Most tests need root (mount, ip netns, Postfix); they skip when what
// they need is missing, or fail with POSTERN_REQUIRE_PEERS=1.
// POSTERN_BLACKBOX_LONG=1 runs bigger kill -9 and Postfix runs,
// POSTERN_BLACKBOX_SEED=N repeats the kill points of a kill -9 run, and
// POSTERN_BLACKBOX_RACE=1 builds the daemon with the race detector and
// fails a test whose daemon reported a data race.
package blackbox_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// posternBin is the postern command built once by TestMain.
var posternBin string

// TestMain builds the postern command from the module root once, so that
// every test runs the daemon as the real process an operator runs.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "postern-blackbox-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "blackbox:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" {
		fmt.Fprintf(os.Stderr, "blackbox: cannot find the module root (go env GOMOD): %v\n", err)
		return 1
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	posternBin = filepath.Join(dir, "postern")
	args := []string{"build", "-o", posternBin}
	if raceDaemon() {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/postern")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "blackbox: go build ./cmd/postern: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// raceDaemon reports whether the daemon is built with the race detector
// (POSTERN_BLACKBOX_RACE=1): slower, and every run's log is checked for
// data race reports.
func raceDaemon() bool { return os.Getenv("POSTERN_BLACKBOX_RACE") == "1" }

// relayOptions describe a postern relay process.
type relayOptions struct {
	// Policy is the policy text; "LISTEN" in it is replaced by the
	// listener address.
	Policy string
	// Spool is the spool directory; default a fresh one.
	Spool string
	// Listen is the listener address; default a free loopback port.
	Listen string
	// Metrics is --metrics; "" for none.
	Metrics string
	// Wrap is an argv prefix (strace, ip netns exec).
	Wrap []string
	// Text selects --log-format text; the default is json.
	Text bool
}

// relayProc is a postern relay daemon that may be started, killed and
// restarted on the same spool and port; every run logs to a file of its
// own.
type relayProc struct {
	t      testing.TB
	o      relayOptions
	policy string // the policy file
	Addr   string // the listener
	Spool  string

	mu   sync.Mutex
	runs []*relayRun
}

// relayRun is one process of a relayProc.
type relayRun struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// exited reports whether the process has ended.
func (r *relayRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// newRelay writes the policy and prepares a relay; Start runs it. The
// running process is stopped when the test ends, and its logs are shown
// if the test failed.
func newRelay(t testing.TB, o relayOptions) *relayProc {
	t.Helper()
	dir := t.TempDir()
	if o.Spool == "" {
		o.Spool = filepath.Join(dir, "spool")
	}
	if o.Listen == "" {
		o.Listen = testbed.Addr("127.0.0.1", testbed.FreePort(t, "127.0.0.1"))
	}
	p := &relayProc{t: t, o: o, policy: filepath.Join(dir, "policy.yaml"), Addr: o.Listen, Spool: o.Spool}
	p.SetPolicy(o.Policy)
	t.Cleanup(func() {
		p.Stop()
		if raceDaemon() && strings.Contains(p.Log(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in the relay")
		}
		if t.Failed() {
			t.Logf("relay log (last 150 lines):\n%s", tail(p.Log(), 150))
		}
	})
	return p
}

// SetPolicy replaces the policy file (for the next start, or a reload).
func (p *relayProc) SetPolicy(text string) {
	p.t.Helper()
	text = strings.ReplaceAll(text, "LISTEN", p.o.Listen)
	if err := os.WriteFile(p.policy, []byte(text), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// Start runs a new relay process and waits until it has logged its
// start-up line (its listeners are bound then).
func (p *relayProc) Start() *relayRun {
	p.t.Helper()
	p.mu.Lock()
	n := len(p.runs)
	p.mu.Unlock()
	logPath := filepath.Join(filepath.Dir(p.policy), fmt.Sprintf("relay-%d.log", n))
	lf, err := os.Create(logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	defer lf.Close()
	argv := append([]string{}, p.o.Wrap...)
	argv = append(argv, posternBin, "relay", "-c", p.policy, "--spool", p.Spool, "--listen", p.Addr)
	if p.o.Metrics != "" {
		argv = append(argv, "--metrics", p.o.Metrics)
	}
	if !p.o.Text {
		argv = append(argv, "--log-format", "json")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %v: %v", argv, err)
	}
	run := &relayRun{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(run.done) }()
	p.mu.Lock()
	p.runs = append(p.runs, run)
	p.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("postern relay started")) {
			return run
		}
		if run.exited() {
			p.t.Fatalf("postern relay exited at start (%v):\n%s", cmd.ProcessState, b)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("postern relay did not start in 30s:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// current is the last run, nil before the first.
func (p *relayProc) current() *relayRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.runs) == 0 {
		return nil
	}
	return p.runs[len(p.runs)-1]
}

// Kill9 kills the running process with SIGKILL and waits until it is
// gone.
func (p *relayProc) Kill9() {
	r := p.current()
	if r == nil || r.exited() {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// Stop stops the running process gracefully (SIGTERM to its process
// group, so that a wrapper and the daemon both get it), SIGKILL after
// 30 s.
func (p *relayProc) Stop() {
	r := p.current()
	if r == nil || r.exited() {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
}

// Log is the log of every run so far, in order.
func (p *relayProc) Log() string {
	p.mu.Lock()
	runs := append([]*relayRun(nil), p.runs...)
	p.mu.Unlock()
	var b strings.Builder
	for _, r := range runs {
		data, _ := os.ReadFile(r.logPath)
		b.Write(data)
	}
	return b.String()
}

// Records parses the log of every run (JSON or text lines).
func (p *relayProc) Records() []logRecord { return parseLog(p.Log()) }

// WaitLog polls the log until cond holds (at most timeout), failing the
// test with what is missing.
func (p *relayProc) WaitLog(timeout time.Duration, what string, cond func([]logRecord) bool) {
	p.t.Helper()
	if !p.PollLog(timeout, cond) {
		p.t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// PollLog polls the log every 20 ms until cond holds, and reports
// whether it did within timeout (false also when the relay exited).
func (p *relayProc) PollLog(timeout time.Duration, cond func([]logRecord) bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond(p.Records()) {
		if r := p.current(); r != nil && r.exited() || time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// logRecord is one log line as key/value pairs ("msg", "id", "status",
// ...).
type logRecord map[string]string

// parseLog reads JSON lines ({"msg":...}) or slog text lines
// (time=... msg=...); other lines are skipped.
func parseLog(s string) []logRecord {
	var out []logRecord
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "{"):
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			r := logRecord{}
			for k, v := range m {
				if s, ok := v.(string); ok {
					r[k] = s
				} else {
					r[k] = fmt.Sprint(v)
				}
			}
			out = append(out, r)
		case strings.HasPrefix(line, "time="):
			out = append(out, parseLogfmt(line))
		}
	}
	return out
}

// parseLogfmt splits an slog text line into its key=value pairs (values
// quoted when they hold spaces or quotes).
func parseLogfmt(line string) logRecord {
	r := logRecord{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			// Find the closing quote, skipping escaped ones.
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				end = len(rest) - 1
			}
			v, _ = strconv.Unquote(rest[:end+1])
			rest = rest[end+1:]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		r[k] = v
		line = rest
	}
	return r
}

// find returns the records with msg == msg whose fields include every
// key=value of kv.
func find(recs []logRecord, msg string, kv ...string) []logRecord {
	var out []logRecord
next:
	for _, r := range recs {
		if r["msg"] != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if r[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// msgFiles lists the queued message files of a spool by queue ID.
func msgFiles(t testing.TB, spool string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(spool, "msg", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[filepath.Base(f)] = f
	}
	return out
}

// reply is an SMTP reply.
type reply struct {
	Code int
	Text string // the text of every line, joined with "\n"
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

var queuedAs = regexp.MustCompile(`^2\.0\.0 Ok: queued as ([0-9A-Z]{16})$`)

// QueueID is the ID of a "250 2.0.0 Ok: queued as ID" reply, "" for any
// other reply.
func (r reply) QueueID() string {
	if r.Code != 250 {
		return ""
	}
	if m := queuedAs.FindStringSubmatch(r.Text); m != nil {
		return m[1]
	}
	return ""
}

// smtpClient is a minimal SMTP client (RFC 5321) that shows every reply,
// which net/smtp does not (it hides the queue ID of the final reply).
type smtpClient struct {
	conn net.Conn
	tp   *textproto.Conn
}

// newSMTPClient reads the greeting on conn.
func newSMTPClient(conn net.Conn) (*smtpClient, reply, error) {
	c := &smtpClient{conn: conn, tp: textproto.NewConn(conn)}
	r, err := c.read()
	return c, r, err
}

// dialSMTP connects to addr and reads the greeting.
func dialSMTP(addr string) (*smtpClient, reply, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, reply{}, err
	}
	c, r, err := newSMTPClient(conn)
	if err != nil {
		conn.Close()
		return nil, r, err
	}
	return c, r, nil
}

func (c *smtpClient) read() (reply, error) {
	_ = c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		var te *textproto.Error
		if !errors.As(err, &te) {
			return reply{}, err
		}
	}
	return reply{code, msg}, nil
}

// Cmd sends one command line and reads the reply.
func (c *smtpClient) Cmd(format string, args ...any) (reply, error) {
	_ = c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	if err := c.tp.PrintfLine(format, args...); err != nil {
		return reply{}, err
	}
	return c.read()
}

// Data sends DATA, the message (dot-stuffed) and the final dot. It
// returns the stage whose reply it returns: "DATA" when DATA was not
// answered 354, else "." and the final reply.
func (c *smtpClient) Data(body []byte) (string, reply, error) {
	r, err := c.Cmd("DATA")
	if err != nil || r.Code != 354 {
		return "DATA", r, err
	}
	w := c.tp.DotWriter()
	if _, err := w.Write(body); err != nil {
		return ".", reply{}, err
	}
	if err := w.Close(); err != nil {
		return ".", reply{}, err
	}
	r, err = c.read()
	return ".", r, err
}

// StartTLS upgrades the session (the caller sends EHLO again).
func (c *smtpClient) StartTLS(cfg *tls.Config) error {
	r, err := c.Cmd("STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return fmt.Errorf("STARTTLS: %v", r)
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.conn = tc
	c.tp = textproto.NewConn(tc)
	return nil
}

// Close sends QUIT (ignoring its fate) and closes the connection.
func (c *smtpClient) Close() {
	_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	_ = c.tp.PrintfLine("QUIT")
	_, _, _ = c.tp.ReadResponse(0)
	_ = c.conn.Close()
}

// outcome is the end of one transaction: the stage whose reply ended it
// (CONNECT, EHLO, MAIL, RCPT, DATA, "." for the final reply) and that
// reply; Err is set when the connection failed instead.
type outcome struct {
	Stage string
	Reply reply
	Err   error
}

func (o outcome) String() string {
	if o.Err != nil {
		return fmt.Sprintf("%s: %v", o.Stage, o.Err)
	}
	return fmt.Sprintf("%s: %v", o.Stage, o.Reply)
}

// Accepted is the queue ID when the final reply was "250 ... queued as
// ID".
func (o outcome) Accepted() string {
	if o.Err != nil || o.Stage != "." {
		return ""
	}
	return o.Reply.QueueID()
}

// sendMail runs one whole transaction on a new connection to addr.
func sendMail(addr, from, to string, body []byte) outcome {
	c, r, err := dialSMTP(addr)
	if err != nil || r.Code != 220 {
		return outcome{"CONNECT", r, err}
	}
	defer c.Close()
	return c.Transaction(from, to, body)
}

// Transaction runs EHLO (when not done), MAIL, RCPT and DATA.
func (c *smtpClient) Transaction(from, to string, body []byte) outcome {
	steps := []struct{ stage, line string }{
		{"EHLO", "EHLO client.test"},
		{"MAIL", "MAIL FROM:<" + from + ">"},
		{"RCPT", "RCPT TO:<" + to + ">"},
	}
	for _, s := range steps {
		r, err := c.Cmd("%s", s.line)
		if err != nil || r.Code/100 != 2 {
			return outcome{s.stage, r, err}
		}
	}
	stage, r, err := c.Data(body)
	return outcome{stage, r, err}
}

// message is a small test message with a Subject and a trailer line that
// shows the copy is complete.
func message(subject string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <alice@sender.test>\r\nTo: <bob@dest.test>\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n\r\n",
		subject, strings.ReplaceAll(subject, " ", "."))
	line := strings.Repeat("0123456789", 7) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	fmt.Fprintf(&b, "END %s\r\n", subject)
	return b.Bytes()
}

// readLines calls fn for each line of path.
func readLines(path string, fn func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		fn(sc.Text())
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
