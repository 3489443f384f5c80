// Package postfixproc runs a throwaway Postfix instance for the
// benchmarks (bench/e2e, bench/relay): its own configuration directory,
// queue and maillog_file, smtpd (RFC 5321) on a free loopback port, and
// all mail relayed to one next hop (relayhost), never touching
// /etc/postfix beyond reading its master.cf. It also counts what the
// benchmarks time: the queue files, the "status=sent" lines of the log,
// and the memory and CPU of the master and its children.
package postfixproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postern-mta/postern/bench/internal/procstat"
	"github.com/postern-mta/postern/bench/internal/sinkproc"
)

// LookTool finds a Postfix program (postfix, postconf, postqueue,
// smtp-sink, smtp-source) in PATH or the usual sbin directories.
func LookTool(name string) (string, error) {
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/", "/sbin/"} {
		if p, err := exec.LookPath(dir + name); err == nil {
			return p, nil
		}
	}
	return "", errors.New(name + " not found")
}

// Options configure an instance.
type Options struct {
	// Dir holds everything (etc/, spool/, data/, maillog); its parent
	// directories must be searchable by the postfix user.
	Dir string
	// Relay is the next hop of all mail, "HOST:PORT" (IPv4).
	Relay string
	// Tools are the paths of postfix and postconf (LookTool).
	Tools map[string]string
	// Defer starts the instance with defer_transports = smtp: mail is
	// queued, and deferred rather than delivered, until the setting is
	// removed and the queue flushed.
	Defer bool
	// CAFile, when set, makes it deliver with smtp_tls_security_level =
	// encrypt (see Start).
	CAFile string
	// Wrap is put before the `postfix start-fg` command line (strace
	// -f ..., for instance); the instance is then its descendant.
	Wrap []string
	// CgroupFD, when above zero, is a cgroup v2 directory the instance
	// starts in (clone3 CLONE_INTO_CGROUP): every Postfix process is
	// counted there.
	CgroupFD int
}

// Instance is a running throwaway instance.
type Instance struct {
	// Addr is smtpd's address, "127.0.0.1:PORT".
	Addr            string
	dir, etc, spool string
	tools           map[string]string
	master          *exec.Cmd // postfix start-fg (or its wrapper)
	done            chan struct{}
	stopOnce        sync.Once
	logOffset       int64 // SentCount's position in the maillog
	sent            int
}

// Start starts an instance relaying to o.Relay and waits until smtpd
// accepts connections. With a CAFile it delivers with
// smtp_tls_security_level = encrypt (STARTTLS mandatory, the certificate
// not checked: that is "verify"), CAFile as smtp_tls_CAfile, a TLS
// session cache, and smtp_tls_connection_reuse: without it Postfix does
// not cache TLS connections at all, so every message would cost a
// connection and a handshake; with it, tlsproxy(8) holds the TLS sessions
// and the connection cache works as in plaintext.
func Start(ctx context.Context, o Options) (*Instance, error) {
	p := &Instance{dir: o.Dir, etc: filepath.Join(o.Dir, "etc"), spool: filepath.Join(o.Dir, "spool"), tools: o.Tools}
	data := filepath.Join(o.Dir, "data")
	for _, d := range []string{p.etc, p.spool, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	u, err := user.Lookup("postfix")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	if err := os.Chown(data, uid, -1); err != nil {
		return nil, err
	}
	port, err := sinkproc.FreePort()
	if err != nil {
		return nil, err
	}
	p.Addr = "127.0.0.1:" + strconv.Itoa(port)

	// master.cf: the system's services up to maildrop, smtpd on our port.
	sys, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		return nil, err
	}
	var master strings.Builder
	for l := range strings.SplitSeq(string(sys), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasPrefix(l, "maildrop") {
			break
		}
		if f := strings.Fields(l); len(f) > 1 && f[0] == "smtp" && f[1] == "inet" {
			l = p.Addr + " " + strings.TrimPrefix(strings.TrimPrefix(l, "smtp"), " ")
		}
		master.WriteString(l + "\n")
	}
	if o.CAFile != "" { // commented out in Debian's master.cf
		master.WriteString("tlsproxy unix - - n - 0 tlsproxy\n")
	}
	relayHost, relayPort, _ := strings.Cut(o.Relay, ":")
	tmpRoot := "/" + strings.Split(strings.TrimPrefix(o.Dir, "/"), "/")[0]
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %s
data_directory = %s
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.sender.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [%s]:%s
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = /var, /dev/stdout, %s
maillog_file = %s
`, p.spool, data, relayHost, relayPort, tmpRoot, filepath.Join(o.Dir, "maillog"))
	if o.Defer {
		main += "defer_transports = smtp\n"
	}
	if o.CAFile == "" {
		main += "smtp_tls_security_level = none\n"
	} else {
		main += "smtp_tls_security_level = encrypt\nsmtp_tls_CAfile = " + o.CAFile + "\n" +
			"smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache\n" +
			"smtp_tls_connection_reuse = yes\n"
	}
	if err := os.WriteFile(filepath.Join(p.etc, "master.cf"), []byte(master.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(p.etc, "main.cf"), []byte(main), 0o644); err != nil {
		return nil, err
	}
	if err := p.Postconf(ctx, "-F", "*/*/chroot = n"); err != nil {
		return nil, err
	}
	// The postfix command reports errors only to a terminal or syslog: run
	// it under script(1) so that failures are readable.
	if err := p.Cmd(ctx, "script", "-qec", o.Tools["postfix"]+" -c "+p.etc+" check", "/dev/null"); err != nil {
		return nil, err
	}
	// start-fg keeps the postfix command in the foreground until the
	// master ends; the master makes a session of its own, so Stop stops
	// it with "postfix stop", and kills it only after checking that it
	// descends from our start-fg.
	argv := append(append([]string{}, o.Wrap...), o.Tools["postfix"], "-c", p.etc, "start-fg")
	p.master = exec.Command(argv[0], argv[1:]...)
	p.master.SysProcAttr = childAttr()
	if o.CgroupFD > 0 {
		p.master.SysProcAttr.UseCgroupFD, p.master.SysProcAttr.CgroupFD = true, o.CgroupFD
	}
	var out sinkproc.Buffer
	p.master.Stdout, p.master.Stderr = &out, &out
	if err := p.master.Start(); err != nil {
		return nil, err
	}
	p.done = make(chan struct{})
	go func() { _ = p.master.Wait(); close(p.done) }()
	if err := sinkproc.WaitDial(ctx, p.Addr, p.done, 15*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("postfix: %w: %s", err, out.String())
	}
	return p, nil
}

// childAttr puts a child in its own process group and kills it if this
// program dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Etc is the configuration directory (postfix -c).
func (p *Instance) Etc() string { return p.etc }

// Spool is the queue directory.
func (p *Instance) Spool() string { return p.spool }

// Cmd runs a command and returns its output as the error when it fails.
func (p *Instance) Cmd(ctx context.Context, name string, args ...string) error {
	c := exec.CommandContext(ctx, name, args...)
	c.SysProcAttr = childAttr()
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Postconf runs postconf -c with the instance's configuration.
func (p *Instance) Postconf(ctx context.Context, args ...string) error {
	return p.Cmd(ctx, p.tools["postconf"], append([]string{"-c", p.etc}, args...)...)
}

// QueueCounts counts the queue files: deferred, and those still in the
// maildrop, incoming or active queues.
func (p *Instance) QueueCounts() (deferred, busy int) {
	count := func(q string) int {
		n := 0
		_ = filepath.WalkDir(filepath.Join(p.spool, q), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		return n
	}
	return count("deferred"), count("maildrop") + count("incoming") + count("active")
}

// SentCount counts "status=sent" in the maillog, reading only what was
// added since the last call (the log grows by megabytes during a run).
func (p *Instance) SentCount() (int, error) {
	f, err := os.Open(filepath.Join(p.dir, "maillog"))
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(p.logOffset, 0); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // a partial last line is read again next time
			break
		}
		p.logOffset += int64(len(line))
		if bytes.Contains(line, []byte(" status=sent ")) {
			p.sent++
		}
	}
	return p.sent, nil
}

// LogTail returns the last n lines of the maillog.
func (p *Instance) LogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// MasterPID is the master's pid from its pid file (0 when there is none).
func (p *Instance) MasterPID() int {
	b, err := os.ReadFile(filepath.Join(p.spool, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// PIDs lists the master and its children (every Postfix daemon is a child
// of the master).
func (p *Instance) PIDs() []int {
	m := p.MasterPID()
	if m <= 0 {
		return nil
	}
	return append(procstat.ChildrenOf(m), m)
}

// SampleMem samples the master and its children every interval
// (procstat.Sample).
func (p *Instance) SampleMem(interval time.Duration) *procstat.Sampler {
	return procstat.Sample(interval, p.PIDs)
}

// ours reports whether pid descends from our start-fg (or its wrapper),
// within a few generations.
func (p *Instance) ours(pid int) bool {
	for range 4 {
		if pid = procstat.ParentOf(pid); pid <= 1 {
			return false
		}
		if pid == p.master.Process.Pid {
			return true
		}
	}
	return false
}

// Done is closed when the start-fg command (or its wrapper) has exited.
func (p *Instance) Done() <-chan struct{} { return p.done }

// Stop stops the instance: postfix stop, then, if the master is still
// there, SIGKILL to it (after checking it descends from our start-fg)
// and to the start-fg process group.
func (p *Instance) Stop() {
	p.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		master := p.MasterPID()
		if master > 0 && !p.ours(master) {
			master = 0 // a stale pid file: not ours
		}
		_ = exec.CommandContext(ctx, p.tools["postfix"], "-c", p.etc, "stop").Run()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			if master > 0 && p.ours(master) {
				_ = syscall.Kill(master, syscall.SIGKILL)
			}
			_ = syscall.Kill(-p.master.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
}
