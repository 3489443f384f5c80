package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroups makes cgroup v2 directories (the unified hierarchy,
// Documentation/admin-guide/cgroup-v2.rst) under this process's own: a
// process started in one (clone3 CLONE_INTO_CGROUP) and everything it
// forks are counted there, exited processes included, so the CPU time of a
// Postfix instance is exact whatever its processes do.
type cgroups struct{ parent string }

// newCgroups finds the cgroup v2 mount and this process's cgroup in it.
func newCgroups() (*cgroups, error) {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	root := ""
	for l := range strings.SplitSeq(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "cgroup2" {
			root = f[1]
			break
		}
	}
	if root == "" {
		return nil, errors.New("no cgroup2 file system mounted")
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	for l := range strings.SplitSeq(string(own), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return &cgroups{parent: filepath.Join(root, p)}, nil
		}
	}
	return nil, errors.New("this process has no cgroup v2 entry in /proc/self/cgroup")
}

// cgroup is one directory made by cgroups.make.
type cgroup struct {
	dir string
	fd  int
}

// make creates a cgroup for one instance; nil cgroups make none.
func (c *cgroups) make(name string) (*cgroup, error) {
	if c == nil {
		return nil, nil
	}
	dir := filepath.Join(c.parent, fmt.Sprintf("postern-bench-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return &cgroup{dir: dir, fd: fd}, nil
}

// FD is the directory's descriptor for SysProcAttr.CgroupFD (0: none).
func (g *cgroup) FD() int {
	if g == nil {
		return 0
	}
	return g.fd
}

// usage is the CPU time of every process that ran in the cgroup, from
// cpu.stat's user_usec and system_usec.
func (g *cgroup) usage() (cpuTime, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return cpuTime{}, err
	}
	var c cpuTime
	found := 0
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(l, " ")
		dst := map[string]*time.Duration{"user_usec": &c.user, "system_usec": &c.sys}[k]
		if dst == nil {
			continue
		}
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return c, fmt.Errorf("%s/cpu.stat: %w", g.dir, err)
		}
		*dst = time.Duration(us) * time.Microsecond
		found++
	}
	if found != 2 {
		return c, fmt.Errorf("%s/cpu.stat: no user_usec and system_usec", g.dir)
	}
	return c, nil
}

// cpuTime is user and system CPU time.
type cpuTime struct{ user, sys time.Duration }

func (c cpuTime) total() time.Duration { return c.user + c.sys }

func (c cpuTime) sub(d cpuTime) cpuTime { return cpuTime{c.user - d.user, c.sys - d.sys} }

func (c cpuTime) String() string {
	return fmt.Sprintf("%.2fs (user %.2f, sys %.2f)", c.total().Seconds(), c.user.Seconds(), c.sys.Seconds())
}

// remove removes the cgroup once its processes are gone (a cgroup with
// processes cannot be removed: it waits up to 10 s for them).
func (g *cgroup) remove() {
	if g == nil {
		return
	}
	_ = syscall.Close(g.fd)
	deadline := time.Now().Add(10 * time.Second)
	for os.Remove(g.dir) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// disk is the block device a directory is on.
type disk struct {
	name   string // sda, vda, nvme0n1 (the whole disk, not a partition)
	fstype string
	mount  string
}

// diskStat are two counters of /sys/block/DEV/stat
// (Documentation/block/stat.rst): write requests completed, and cache
// flush requests completed.
type diskStat struct{ writes, flushes int64 }

// diskOf finds the block device of dir, the whole disk when it is a
// partition (flushes are counted on the disk).
func diskOf(dir string) (*disk, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, err
	}
	major, minor := unix.Major(st.Dev), unix.Minor(st.Dev)
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return nil, fmt.Errorf("%s is on device %d:%d, which is not a block device", dir, major, minor)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
	}
	d := &disk{name: filepath.Base(sys)}
	if _, err := d.read(); err != nil {
		return nil, err
	}
	// The file system: the mount of the device with the longest prefix.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	sc := bufio.NewScanner(bytes.NewReader(mi))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[2] != fmt.Sprintf("%d:%d", major, minor) {
			continue
		}
		sep := 6
		for sep < len(f) && f[sep] != "-" {
			sep++
		}
		if sep+1 < len(f) && strings.HasPrefix(dir, f[4]) && len(f[4]) > len(d.mount) {
			d.mount, d.fstype = f[4], f[sep+1]
		}
	}
	return d, nil
}

// read reads the device's counters.
func (d *disk) read() (diskStat, error) {
	b, err := os.ReadFile(filepath.Join("/sys/block", d.name, "stat"))
	if err != nil {
		return diskStat{}, err
	}
	f := strings.Fields(string(b))
	if len(f) < 17 {
		return diskStat{}, fmt.Errorf("/sys/block/%s/stat: %d fields, want 17 (flush counters: Linux 5.5 or later)", d.name, len(f))
	}
	w, err1 := strconv.ParseInt(f[4], 10, 64)
	fl, err2 := strconv.ParseInt(f[15], 10, 64)
	return diskStat{writes: w, flushes: fl}, errors.Join(err1, err2)
}

func (d *disk) String() string {
	s := d.name
	if d.fstype != "" {
		s += fmt.Sprintf(" (%s on %s", d.fstype, d.mount)
		if c, err := os.ReadFile(filepath.Join("/sys/block", d.name, "queue", "write_cache")); err == nil {
			s += ", write cache " + strings.TrimSpace(string(c))
		}
		s += ")"
	}
	return s
}

// sub is the difference of two readings.
func (a diskStat) sub(b diskStat) diskStat {
	return diskStat{writes: a.writes - b.writes, flushes: a.flushes - b.flushes}
}
