// Package procstat reads what the benchmarks (bench/e2e, bench/soak,
// bench/relay) measure of other processes from Linux's /proc (proc(5)):
// the CPU time and memory of a set of processes sampled while they run,
// a process's parent and children, and the machine line (CPU model, load
// average).
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sampler polls the memory and CPU time of a set of processes.
type Sampler struct {
	stopc chan struct{}
	done  chan Peak
	once  sync.Once
	peak  Peak
}

// Peak is what a Sampler saw: the sum over processes of each one's VmHWM
// (its own peak RSS; shared pages count once per process, and every
// process seen counts, also after it ended), the largest sums of RSS and
// of PSS (shared pages divided among their users) at one sampling
// instant, and the CPU time (user+system) the processes used while
// sampled (a process that ended between two samples loses its last
// interval at most).
type Peak struct {
	SumHWMKB, PeakRSSKB, PeakPSSKB int64
	CPU                            time.Duration
}

// Sample polls pids() every interval until Stop. For many processes (a
// Postfix instance has dozens) the interval should be long enough to cost
// them little (reading smaps_rollup walks page tables); VmHWM is a
// high-water mark anyway.
func Sample(interval time.Duration, pids func() []int) *Sampler {
	s := &Sampler{stopc: make(chan struct{}), done: make(chan Peak, 1)}
	go func() {
		hwm := map[int]int64{}
		first, last := map[int]int64{}, map[int]int64{} // CPU ticks
		var peak Peak
		initial := true
		for {
			var pss, rss int64
			for _, pid := range pids() {
				status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				if kb := kbField(string(status), "VmHWM:"); kb > hwm[pid] {
					hwm[pid] = kb
				}
				rss += kbField(string(status), "VmRSS:")
				pss += RollupPSS(pid)
				t := CPUTicks(pid)
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
			peak.PeakPSSKB = max(peak.PeakPSSKB, pss)
			peak.PeakRSSKB = max(peak.PeakRSSKB, rss)
			select {
			case <-s.stopc:
				var ticks int64
				for pid, v := range hwm {
					peak.SumHWMKB += v
					ticks += last[pid] - first[pid]
				}
				peak.CPU = time.Duration(ticks) * time.Second / 100 // USER_HZ
				s.done <- peak
				return
			case <-time.After(interval):
			}
		}
	}()
	return s
}

// Stop takes a last sample and returns what the Sampler saw; later calls
// return the same.
func (s *Sampler) Stop() Peak {
	s.once.Do(func() { close(s.stopc); s.peak = <-s.done })
	return s.peak
}

// StatFields returns the fields of /proc/PID/stat after the command name
// (state first), or nil when the process is gone.
func StatFields(pid int) []string {
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

// CPUTicks returns utime+stime of a process in clock ticks (USER_HZ,
// 100 per second on Linux).
func CPUTicks(pid int) int64 {
	f := StatFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// ChildrenOf lists the processes whose parent is pid.
func ChildrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if c, err := strconv.Atoi(e.Name()); err == nil && ParentOf(c) == pid {
			out = append(out, c)
		}
	}
	return out
}

// ParentOf returns the parent pid of pid (0 when it is gone).
func ParentOf(pid int) int {
	f := StatFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// StatusKB reads a "Key: N kB" line of /proc/PID/status (key with its
// colon, "VmHWM:"); 0 when the process is gone.
func StatusKB(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return kbField(string(b), key)
}

// RollupPSS reads the proportional set size of a process in KiB.
func RollupPSS(pid int) int64 {
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

// CPUModel is the first "model name" of /proc/cpuinfo.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// LoadAvg is the 1, 5 and 15 minute load averages of /proc/loadavg.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
