package blackbox_test

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// sinkPolicy is a relay policy delivering everything to one smarthost.
func sinkPolicy(sinkHost string, sinkPort int, extraQueue string) string {
	return fmt.Sprintf(`version: 1
hostname: relay.test
relay:
  listeners: [{name: mta, address: LISTEN}]
  queue: {startup-spread: 0s%s}
routing:
  route: sink
  routes:
    sink: {type: relay, address: %s, port: %d}
tls: {starttls: disable}
`, extraQueue, sinkHost, sinkPort)
}

// TestAckAfterFsync runs the relay under strace while several clients
// send 50 messages, and proves from the system calls, for every queue ID
// a client got in "250 2.0.0 Ok: queued as ID": the message file was
// fsynced, then renamed from tmp/ID to msg/AB/ID, then msg/AB was
// fsynced by a call that began after the rename, all before the 250 was
// written to the socket (the ack rule).
func TestAckAfterFsync(t *testing.T) {
	strace := testbed.Require(t, "strace")
	if out, err := exec.Command(strace, "-f", "-o", os.DevNull, "true").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("strace cannot trace here (ptrace not permitted?): %v: %s", err, out)
		if os.Getenv("POSTERN_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	trace := filepath.Join(t.TempDir(), "strace.out")
	wrap := []string{strace, "-f", "--seccomp-bpf", "-tt", "-s", "256",
		"-e", "trace=openat,close,fsync,fdatasync,rename,renameat,renameat2,write,sendto,sendmsg",
		"-o", trace, "--"}
	r := newRelay(t, relayOptions{Policy: sinkPolicy("127.0.0.1", int(sink.Addr.Port()), ""), Wrap: wrap})
	run := r.Start()

	const clients, each = 5, 10
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				o := sendMail(r.Addr, "alice@sender.test", "bob@dest.test", message(fmt.Sprintf("ack %d.%d", c, i), 2000))
				id := o.Accepted()
				if id == "" {
					t.Errorf("client %d message %d: %v", c, i, o)
					continue
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	r.WaitLog(30*time.Second, "every message delivered", func(recs []logRecord) bool {
		return len(find(recs, "removed")) >= len(ids)
	})

	// Stop the traced daemon (not strace), so that strace writes
	// everything and exits with it.
	pid := tracee(t, run.cmd.Process.Pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to the relay (pid %d): %v", pid, err)
	}
	select {
	case <-run.done:
	case <-time.After(30 * time.Second):
		t.Fatal("strace and the relay did not exit 30 s after SIGTERM")
	}

	calls, err := parseStrace(trace)
	if err != nil {
		t.Fatal(err)
	}
	spool, err := filepath.Abs(r.Spool)
	if err != nil {
		t.Fatal(err)
	}
	proved := 0
	for _, id := range ids {
		if err := checkAckOrder(calls, spool, id); err != nil {
			t.Errorf("queue ID %s: %v\nits system calls:\n%s", id, err, callsOf(calls, id))
			continue
		}
		proved++
	}
	t.Logf("%d messages, ack order proved from %d system calls for %d queue IDs", len(ids), len(calls), proved)
	if len(ids) != clients*each {
		t.Errorf("%d messages accepted, want %d", len(ids), clients*each)
	}
}

// tracee is the process strace (pid) started.
func tracee(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatalf("the children of strace: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("strace (pid %d) has children %q, want one", pid, f)
	}
	child, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return child
}

// syscallRec is one system call from strace -f output: Entry and Exit are
// the line numbers of its entry and of its result (the same line unless
// strace split it with <unfinished ...>). Because strace prints an entry
// before the tracee runs the call and the result after it returned, a
// call whose Exit line comes before another's Entry line finished before
// the other began.
type syscallRec struct {
	Pid         int
	Time        string
	Name        string
	Args        string
	Ret         string
	Entry, Exit int
	// Path is, for a call on a file descriptor (fsync, close, write),
	// the path that descriptor was opened with, when openat opened it.
	Path string
}

// RetInt is the return value as a number (-1 for an error or "?").
func (c *syscallRec) RetInt() int {
	f := strings.Fields(c.Ret)
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return -1
	}
	return n
}

// FD is the first argument as a file descriptor (-1 when it is not one).
func (c *syscallRec) FD() int {
	a, _, _ := strings.Cut(c.Args, ",")
	n, err := strconv.Atoi(strings.TrimSpace(a))
	if err != nil {
		return -1
	}
	return n
}

var (
	straceLine = regexp.MustCompile(`^(?:(\d+)\s+)?(\d\d:\d\d:\d\d\.\d+)\s+(.*)$`)
	resumed    = regexp.MustCompile(`^<\.\.\. (\w+) resumed>(.*)$`)
	quoted     = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

// Strings are the quoted arguments (paths, written data), still escaped
// as strace writes them.
func (c *syscallRec) Strings() []string {
	var out []string
	for _, m := range quoted.FindAllStringSubmatch(c.Args, -1) {
		out = append(out, m[1])
	}
	return out
}

// parseStrace reads the output of strace -f -tt: one record per system
// call, joining "<unfinished ...>" and "<... resumed>" halves by pid, and
// resolves the paths of file descriptors from openat and close (threads
// of one process share them).
func parseStrace(path string) ([]*syscallRec, error) {
	var (
		calls   []*syscallRec
		pending = map[int]*syscallRec{}
		lineNo  int
	)
	err := readLines(path, func(line string) {
		lineNo++
		m := straceLine.FindStringSubmatch(line)
		if m == nil {
			return
		}
		pid, _ := strconv.Atoi(m[1])
		rest := m[3]
		switch {
		case strings.HasPrefix(rest, "---"), strings.HasPrefix(rest, "+++"):
			return
		case strings.HasPrefix(rest, "<..."):
			rm := resumed.FindStringSubmatch(rest)
			c := pending[pid]
			if rm == nil || c == nil || c.Name != rm[1] {
				return
			}
			delete(pending, pid)
			finish(c, c.Args+rm[2])
			c.Exit = lineNo
			calls = append(calls, c)
		case strings.HasSuffix(rest, "<unfinished ...>"):
			name, args, ok := strings.Cut(strings.TrimSuffix(rest, "<unfinished ...>"), "(")
			if !ok {
				return
			}
			pending[pid] = &syscallRec{Pid: pid, Time: m[2], Name: name, Args: strings.TrimRight(args, " "), Entry: lineNo}
		default:
			name, tail, ok := strings.Cut(rest, "(")
			if !ok {
				return
			}
			c := &syscallRec{Pid: pid, Time: m[2], Name: name, Entry: lineNo, Exit: lineNo}
			finish(c, tail)
			calls = append(calls, c)
		}
	})
	if err != nil {
		return nil, err
	}
	// Descriptor paths: apply openat results when they returned, closes
	// when they began, and look a descriptor up when a call on it began.
	type ev struct {
		line  int
		c     *syscallRec
		entry bool
	}
	var evs []ev
	for _, c := range calls {
		evs = append(evs, ev{c.Entry, c, true}, ev{c.Exit, c, false})
	}
	slices.SortStableFunc(evs, func(a, b ev) int {
		if a.line != b.line {
			return cmp.Compare(a.line, b.line)
		}
		// A call on one line: its entry comes first.
		switch {
		case a.entry && !b.entry:
			return -1
		case !a.entry && b.entry:
			return 1
		}
		return 0
	})
	fds := map[int]string{}
	for _, e := range evs {
		c := e.c
		switch {
		case e.entry && (c.Name == "fsync" || c.Name == "fdatasync" || c.Name == "write"):
			c.Path = fds[c.FD()]
		case !e.entry && c.Name == "openat" && c.RetInt() >= 0:
			if s := c.Strings(); len(s) > 0 {
				fds[c.RetInt()] = s[0]
			}
		}
		if e.entry && c.Name == "close" {
			// The number is free once close has begun: another
			// thread's openat may get it before this close's result
			// is printed.
			delete(fds, c.FD())
		}
	}
	return calls, nil
}

// retSep ends the arguments of a call: ")", the padding strace adds to
// align results, "= ".
var retSep = regexp.MustCompile(`\) *= `)

// finish splits "ARGS) = RET". The last separator ends the arguments: a
// written string may hold the same characters, the result cannot.
func finish(c *syscallRec, tail string) {
	all := retSep.FindAllStringIndex(tail, -1)
	if len(all) == 0 {
		c.Args = tail
		return
	}
	last := all[len(all)-1]
	c.Args, c.Ret = tail[:last[0]], strings.TrimSpace(tail[last[1]:])
}

// checkAckOrder proves the ack rule for one queue ID from the calls.
func checkAckOrder(calls []*syscallRec, spool, id string) error {
	tmp := filepath.Join(spool, "tmp", id)
	msgDir := filepath.Join(spool, "msg")
	ack := "250 2.0.0 Ok: queued as " + id
	// The rename names the hashed directory: msg/AB/ID (which
	// characters of the ID make AB is the spool's business).
	var dir, final string

	var ackW, fsyncF, rename, dirSync *syscallRec
	for _, c := range calls {
		switch {
		case ackW == nil && (c.Name == "write" || c.Name == "sendto" || c.Name == "sendmsg") && strings.Contains(c.Args, ack):
			ackW = c
		case fsyncF == nil && (c.Name == "fsync" || c.Name == "fdatasync") && c.Path == tmp && c.RetInt() == 0:
			fsyncF = c
		case rename == nil && strings.HasPrefix(c.Name, "rename") && c.RetInt() == 0:
			if s := c.Strings(); len(s) == 2 && s[0] == tmp && filepath.Base(s[1]) == id &&
				filepath.Dir(filepath.Dir(s[1])) == msgDir {
				rename, final, dir = c, s[1], filepath.Dir(s[1])
			}
		}
	}
	switch {
	case ackW == nil:
		return fmt.Errorf("no write of %q in the trace", ack)
	case fsyncF == nil:
		return fmt.Errorf("no successful fsync of %s in the trace", tmp)
	case rename == nil:
		return fmt.Errorf("no successful rename %s -> %s in the trace", tmp, filepath.Join(msgDir, "*", id))
	}
	// The directory fsync that covers the rename: the first successful
	// fsync of msg/AB that began after the rename returned.
	for _, c := range calls {
		if (c.Name == "fsync" || c.Name == "fdatasync") && c.Path == dir && c.RetInt() == 0 && c.Entry > rename.Exit {
			if dirSync == nil || c.Entry < dirSync.Entry {
				dirSync = c
			}
		}
	}
	at := func(c *syscallRec) string {
		return fmt.Sprintf("%s(pid %d, %s, line %d-%d)", c.Name, c.Pid, c.Time, c.Entry, c.Exit)
	}
	switch {
	case dirSync == nil:
		return fmt.Errorf("no fsync of %s began after the rename to %s, %s", dir, final, at(rename))
	case fsyncF.Exit >= rename.Entry:
		return fmt.Errorf("the file fsync %s did not finish before the rename %s", at(fsyncF), at(rename))
	case fsyncF.Exit >= ackW.Entry:
		return fmt.Errorf("the file fsync %s did not finish before the 250 %s", at(fsyncF), at(ackW))
	case rename.Exit >= ackW.Entry:
		return fmt.Errorf("the rename %s did not finish before the 250 %s", at(rename), at(ackW))
	case dirSync.Exit >= ackW.Entry:
		return fmt.Errorf("the first fsync of %s after the rename, %s, did not finish before the 250 %s", dir, at(dirSync), at(ackW))
	}
	return nil
}

// callsOf lists the calls that name queue ID id, or its msg/AB
// directory once a rename named it, for a failure message.
func callsOf(calls []*syscallRec, id string) string {
	var b strings.Builder
	dir := "\x00" // none yet
	for _, c := range calls {
		if s := c.Strings(); strings.HasPrefix(c.Name, "rename") && len(s) == 2 && filepath.Base(s[1]) == id {
			dir = filepath.Dir(s[1])
		}
		if strings.Contains(c.Args, id) || strings.Contains(c.Path, id) || c.Path == dir || slices.Contains(c.Strings(), dir) {
			args := c.Args
			if len(args) > 160 {
				args = args[:160] + "..."
			}
			fmt.Fprintf(&b, "  lines %d-%d pid %d %s %s(%s) = %s  [fd path %s]\n", c.Entry, c.Exit, c.Pid, c.Time, c.Name, args, c.Ret, c.Path)
		}
	}
	return b.String()
}

// TestAckOrderChecker: the trace checker of TestAckAfterFsync accepts a
// correct order, also when strace splits calls of concurrent threads and
// a descriptor number is reused, and rejects a 250 written before the
// directory fsync, a directory fsync that began before the rename
// returned, an fsync of another directory, and a missing or failed file
// fsync.
func TestAckOrderChecker(t *testing.T) {
	const id = "06H3AEQ5RK67KBSQ"
	open := `10 00:00:00.000001 openat(AT_FDCWD, "/s/tmp/` + id + `", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 7` + "\n"
	fsyncFile := "10 00:00:00.000002 fsync(7 <unfinished ...>\n" +
		`11 00:00:00.000003 write(2, "{\"msg\":\"x) = 3\"}\n", 17) = 17` + "\n" +
		"10 00:00:00.000004 <... fsync resumed>)    = 0\n"
	closeFile := "10 00:00:00.000005 close(7)          = 0\n"
	rename := `10 00:00:00.000006 renameat(AT_FDCWD, "/s/tmp/` + id + `", AT_FDCWD, "/s/msg/SQ/` + id + `") = 0` + "\n"
	openDir := `12 00:00:00.000007 openat(AT_FDCWD, "/s/msg/SQ", O_RDONLY|O_CLOEXEC) = 7` + "\n"
	fsyncDir := "12 00:00:00.000008 fsync(7)          = 0\n"
	ack := `10 00:00:00.000009 write(9, "250 2.0.0 Ok: queued as ` + id + `\r\n", 42) = 42` + "\n"
	cases := []struct {
		name, trace string
		ok          bool
	}{
		{"in order", open + fsyncFile + closeFile + rename + openDir + fsyncDir + ack, true},
		{"descriptor reused while its close is unfinished",
			"13 00:00:00.000000 close(7 <unfinished ...>\n" + open +
				"13 00:00:00.000001 <... close resumed>) = 0\n" + fsyncFile + closeFile + rename + openDir + fsyncDir + ack, true},
		{"250 before the directory fsync", open + fsyncFile + closeFile + rename + openDir + ack + fsyncDir, false},
		{"directory fsync began before the rename returned", open + fsyncFile + closeFile +
			`10 00:00:00.000006 renameat(AT_FDCWD, "/s/tmp/` + id + `", AT_FDCWD, "/s/msg/SQ/` + id + `" <unfinished ...>` + "\n" +
			openDir + "12 00:00:00.000008 fsync(7 <unfinished ...>\n" + "10 00:00:00.000008 <... renameat resumed>) = 0\n" +
			"12 00:00:00.000008 <... fsync resumed>) = 0\n" + ack, false},
		{"another directory fsynced", open + fsyncFile + closeFile + rename +
			`12 00:00:00.000007 openat(AT_FDCWD, "/s/msg/ZZ", O_RDONLY|O_CLOEXEC) = 7` + "\n" + fsyncDir + ack, false},
		{"file never fsynced", open + closeFile + rename + openDir + fsyncDir + ack, false},
		{"file fsync failed", open + "10 00:00:00.000002 fsync(7) = -1 EIO (Input/output error)\n" + closeFile + rename + openDir + fsyncDir + ack, false},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "trace")
		if err := os.WriteFile(path, []byte(c.trace), 0o644); err != nil {
			t.Fatal(err)
		}
		calls, err := parseStrace(path)
		if err != nil {
			t.Fatal(err)
		}
		err = checkAckOrder(calls, "/s", id)
		if (err == nil) != c.ok {
			t.Errorf("%s: checkAckOrder = %v, want ok=%v\n%s", c.name, err, c.ok, callsOf(calls, id))
		}
	}
}
