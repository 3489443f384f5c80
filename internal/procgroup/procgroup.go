// Package procgroup stops a child process started in a process group of
// its own (Setpgid), with everything it started: SIGTERM to the group,
// then SIGKILL when it has not exited within a grace period. The test bed
// and the benchmarks start their servers that way.
package procgroup

import (
	"syscall"
	"time"
)

// Stop signals the process group of pid and waits on done, which must be
// closed when the process has been waited for.
func Stop(pid int, done <-chan struct{}, grace time.Duration) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}
