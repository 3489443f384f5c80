package main

import (
	"bufio"
	"bytes"
	"context"
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

	"github.com/postern-mta/postern/bench/internal/sinkproc"
)

// measurePostfix relays cfg.n messages through a throwaway Postfix instance
// to a fresh sink (testbed.md section 1f, "delivery only"): the messages are
// injected with smtp-source while the smtp transport is deferred, then the
// transport is released and the queue flushed; the time from the release to
// the last "status=sent" line is the delivery time. With a caFile Postfix
// delivers with smtp_tls_security_level = encrypt (see newPostfix).
func measurePostfix(ctx context.Context, cfg config, tools map[string]string, tmp string, run int, sp sinkproc.Spec, caFile string) (sample, error) {
	sink, err := sinkproc.Start(ctx, sp, tmp)
	if err != nil {
		return sample{}, err
	}
	defer sink.Stop()
	dir := fmt.Sprintf("pf%d", run)
	if caFile != "" {
		dir += "-tls"
	}
	pf, err := newPostfix(ctx, tools, filepath.Join(tmp, dir), sink.Addr, caFile)
	if err != nil {
		return sample{}, err
	}
	defer pf.stop()

	// Injection (not timed in the result; printed for context).
	injStart := time.Now()
	src := exec.CommandContext(ctx, tools["smtp-source"], "-s", fmt.Sprint(cfg.parallel), "-m", fmt.Sprint(cfg.n),
		"-l", fmt.Sprint(cfg.size), "-M", "bench.sender.test", "-f", "bench@sender.test", "-t", "rcpt@dest.test", pf.addr)
	src.SysProcAttr = childAttr()
	if out, err := src.CombinedOutput(); err != nil {
		return sample{}, fmt.Errorf("smtp-source into Postfix: %w: %s", err, out)
	}
	// Wait until every message sits in the deferred queue.
	for {
		d, busy := pf.queueCounts()
		if d == cfg.n && busy == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return sample{}, fmt.Errorf("postfix queue: %d deferred, %d in incoming/active/maildrop: %w", d, busy, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	inject := time.Since(injStart)
	if c := sink.Counts(); c.Messages != 0 || c.Sessions != 1 {
		return sample{}, fmt.Errorf("the sink saw %d sessions and %d messages during injection", c.Sessions-1, c.Messages)
	}

	// Release the transport (postfix reload takes seconds: not timed; the
	// deferred messages wait for their retry time or a flush), then time
	// from the flush to the last "status=sent".
	if err := pf.postconf(ctx, "-e", "defer_transports="); err != nil {
		return sample{}, err
	}
	if err := pf.cmd(ctx, tools["postfix"], "-c", pf.etc, "reload"); err != nil {
		return sample{}, err
	}
	time.Sleep(500 * time.Millisecond) // let the new qmgr settle
	if sent, err := pf.sentCount(); err != nil || sent != 0 {
		return sample{}, fmt.Errorf("postfix delivered %d messages before the flush (%v)", sent, err)
	}
	sampler := pf.sampleRSS()
	start := time.Now()
	if err := pf.cmd(ctx, tools["postqueue"], "-c", pf.etc, "-f"); err != nil {
		return sample{}, err
	}
	for {
		sent, err := pf.sentCount()
		if err != nil {
			return sample{}, err
		}
		if sent >= cfg.n {
			break
		}
		select {
		case <-ctx.Done():
			return sample{}, fmt.Errorf("postfix delivered %d of %d: %w\nlast lines of its log:\n%s", sent, cfg.n, ctx.Err(), pf.logTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
	mem := sampler.stop()
	s := sample{elapsed: time.Since(start), rssKB: mem.sumHWMKB, pssKB: mem.peakPSSKB, cpu: mem.cpu, extra: fmt.Sprintf("(injection %.2fs)", inject.Seconds())}

	// Stopping Postfix closes its cached connections, so that the sink
	// counts every session.
	pf.stop()
	s.Counts, err = sink.Settle(ctx, cfg.n)
	s.sinkCPU = sink.CPU()
	return s, err
}

// postfix is a running throwaway instance.
type postfix struct {
	dir, etc, spool string
	addr            string
	tools           map[string]string
	master          *exec.Cmd
	done            chan struct{}
	stopOnce        sync.Once
	logOffset       int64 // sentCount's position in the maillog
	sent            int
}

// newPostfix starts a throwaway instance relaying to relay. With a caFile
// it delivers with smtp_tls_security_level = encrypt (STARTTLS mandatory,
// the certificate not checked: that is "verify"), caFile as
// smtp_tls_CAfile, a TLS session cache, and smtp_tls_connection_reuse:
// without it Postfix does not cache TLS connections at all, so every
// message would cost a connection and a handshake; with it, tlsproxy(8)
// holds the TLS sessions and the connection cache works as in plaintext.
func newPostfix(ctx context.Context, tools map[string]string, dir, relay, caFile string) (*postfix, error) {
	p := &postfix{dir: dir, etc: filepath.Join(dir, "etc"), spool: filepath.Join(dir, "spool"), tools: tools}
	data := filepath.Join(dir, "data")
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
	p.addr = "127.0.0.1:" + strconv.Itoa(port)

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
			l = p.addr + " " + strings.TrimPrefix(strings.TrimPrefix(l, "smtp"), " ")
		}
		master.WriteString(l + "\n")
	}
	if caFile != "" { // commented out in Debian's master.cf
		master.WriteString("tlsproxy unix - - n - 0 tlsproxy\n")
	}
	tmpRoot := "/" + strings.Split(strings.TrimPrefix(dir, "/"), "/")[0]
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
defer_transports = smtp
`, p.spool, data, strings.Split(relay, ":")[0], strings.Split(relay, ":")[1], tmpRoot, filepath.Join(dir, "maillog"))
	if caFile == "" {
		main += "smtp_tls_security_level = none\n"
	} else {
		main += "smtp_tls_security_level = encrypt\nsmtp_tls_CAfile = " + caFile + "\n" +
			"smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache\n" +
			"smtp_tls_connection_reuse = yes\n"
	}
	if err := writeFile(p.etc, "master.cf", master.String()); err != nil {
		return nil, err
	}
	if err := writeFile(p.etc, "main.cf", main); err != nil {
		return nil, err
	}
	if err := p.postconf(ctx, "-F", "*/*/chroot = n"); err != nil {
		return nil, err
	}
	// The postfix command reports errors only to a terminal or syslog
	// (testbed.md 1f): run it under script(1) so that failures are readable.
	if err := p.cmd(ctx, "script", "-qec", tools["postfix"]+" -c "+p.etc+" check", "/dev/null"); err != nil {
		return nil, err
	}
	// start-fg keeps the postfix command in the foreground until the
	// master ends; the master makes a session of its own, so stop() stops
	// it with "postfix stop", and kills it only after checking that it is
	// the child of our start-fg.
	p.master = exec.Command(tools["postfix"], "-c", p.etc, "start-fg")
	p.master.SysProcAttr = childAttr()
	var out sinkproc.Buffer
	p.master.Stdout, p.master.Stderr = &out, &out
	if err := p.master.Start(); err != nil {
		return nil, err
	}
	p.done = make(chan struct{})
	go func() { _ = p.master.Wait(); close(p.done) }()
	if err := sinkproc.WaitDial(ctx, p.addr, p.done, 15*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("postfix: %w: %s", err, out.String())
	}
	return p, nil
}

// cmd runs a command and returns its output as the error when it fails.
func (p *postfix) cmd(ctx context.Context, name string, args ...string) error {
	c := exec.CommandContext(ctx, name, args...)
	c.SysProcAttr = childAttr()
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (p *postfix) postconf(ctx context.Context, args ...string) error {
	return p.cmd(ctx, p.tools["postconf"], append([]string{"-c", p.etc}, args...)...)
}

// queueCounts counts the queue files: deferred, and those still in the
// maildrop, incoming or active queues.
func (p *postfix) queueCounts() (deferred, busy int) {
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

// sentCount counts "status=sent" in the maillog, reading only what was
// added since the last call (the log grows by megabytes during a run).
func (p *postfix) sentCount() (int, error) {
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

// logTail returns the last n lines of the maillog.
func (p *postfix) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// memSampler polls the memory and CPU time of a set of processes.
type memSampler struct {
	stopc chan struct{}
	done  chan memPeak
}

// memPeak is what a memSampler saw: the sum over processes of each one's
// VmHWM (its own peak RSS; shared pages count once per process), the
// largest sum of PSS (shared pages divided among their users) at one
// sampling instant, and the CPU time (user+system) the processes used
// while sampled (a process that ended between two samples loses its last
// interval at most).
type memPeak struct {
	sumHWMKB, peakPSSKB int64
	cpu                 time.Duration
}

// sampleMem polls pids() every interval until stop. For Postfix's fifty
// processes the interval is long enough to cost them little (reading
// smaps_rollup walks page tables); VmHWM is a high-water mark anyway, and
// the processes live for the whole delivery.
func sampleMem(interval time.Duration, pids func() []int) *memSampler {
	s := &memSampler{stopc: make(chan struct{}), done: make(chan memPeak, 1)}
	go func() {
		hwm := map[int]int64{}
		first, last := map[int]int64{}, map[int]int64{} // CPU ticks
		var peak memPeak
		initial := true
		for {
			var pss int64
			for _, pid := range pids() {
				if kb := procStatusKB(pid, "VmHWM:"); kb > hwm[pid] {
					hwm[pid] = kb
				}
				pss += rollupPSS(pid)
				t := cpuTicks(pid)
				if _, seen := first[pid]; !seen {
					if initial {
						first[pid] = t // CPU used before the measurement does not count
					} else {
						first[pid] = 0
					}
				}
				last[pid] = max(last[pid], t)
			}
			initial = false
			peak.peakPSSKB = max(peak.peakPSSKB, pss)
			select {
			case <-s.stopc:
				var ticks int64
				for pid, v := range hwm {
					peak.sumHWMKB += v
					ticks += last[pid] - first[pid]
				}
				peak.cpu = time.Duration(ticks) * time.Second / 100 // USER_HZ
				s.done <- peak
				return
			case <-time.After(interval):
			}
		}
	}()
	return s
}

func (s *memSampler) stop() memPeak { close(s.stopc); return <-s.done }

// statFields returns the fields of /proc/PID/stat after the command name
// (state first), or nil when the process is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// cpuTicks returns utime+stime of a process in clock ticks.
func cpuTicks(pid int) int64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// sampleRSS samples the master and its children (every Postfix daemon is
// a child of master).
func (p *postfix) sampleRSS() *memSampler {
	return sampleMem(250*time.Millisecond, func() []int {
		m := p.masterPID()
		if m <= 0 {
			return nil
		}
		return append(childrenOf(m), m)
	})
}

func (p *postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.spool, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if c, err := strconv.Atoi(e.Name()); err == nil && parentOf(c) == pid {
			out = append(out, c)
		}
	}
	return out
}

// procStatusKB reads a "Key: N kB" line of /proc/PID/status.
func procStatusKB(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return kbField(string(b), key)
}

// rollupPSS reads the proportional set size of a process in KiB.
func rollupPSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	return kbField(string(b), "Pss:")
}

func kbField(text, key string) int64 {
	for l := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// stop stops the instance: postfix stop, then, if the master is still
// there, SIGKILL to it (after checking it is the child of our start-fg)
// and to the start-fg process group.
func (p *postfix) stop() {
	p.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		master := p.masterPID()
		if master > 0 && parentOf(master) != p.master.Process.Pid {
			master = 0 // a stale pid file: not ours
		}
		_ = exec.CommandContext(ctx, p.tools["postfix"], "-c", p.etc, "stop").Run()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			if master > 0 && parentOf(master) == p.master.Process.Pid {
				_ = syscall.Kill(master, syscall.SIGKILL)
			}
			_ = syscall.Kill(-p.master.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// parentOf returns the parent pid of pid (0 when it is gone).
func parentOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
