package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/postern-mta/postern/bench/internal/sinkproc"
)

// findSmtpSink finds Postfix's smtp-sink in PATH or the usual sbin
// directories.
func findSmtpSink() (string, error) {
	for _, dir := range []string{"", "/usr/sbin/", "/usr/bin/", "/sbin/"} {
		if p, err := exec.LookPath(dir + "smtp-sink"); err == nil {
			return p, nil
		}
	}
	return "", errors.New("smtp-sink is not installed (apt-get install postfix)")
}

// cpuSplit is -pin's split of the CPUs this process may use: the first
// for the engine process, the others for the sinks (taskset -c lists).
func cpuSplit() (engineCPU, sinkCPUs string, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", "", fmt.Errorf("-pin: sched_getaffinity: %w", err)
	}
	var cpus []string
	for i := range 1024 {
		if set.IsSet(i) {
			cpus = append(cpus, strconv.Itoa(i))
		}
	}
	if len(cpus) < 2 {
		return "", "", fmt.Errorf("-pin needs 2 CPUs, this process may use %d", len(cpus))
	}
	return cpus[0], strings.Join(cpus[1:], ","), nil
}

// startSinks starts k smtp-sinks on free loopback ports, on the CPUs
// given (a taskset -c list; "" for any); on error the ones started are
// stopped.
func startSinks(ctx context.Context, bin, dir string, k int, cpus string) ([]*sinkproc.Sink, error) {
	spec := sinkproc.SmtpSink(bin)
	if cpus != "" {
		argv := spec.Argv
		spec.Argv = func(addr string) []string {
			return append([]string{"taskset", "-c", cpus}, argv(addr)...)
		}
	}
	var ss []*sinkproc.Sink
	for range k {
		s, err := sinkproc.Start(ctx, spec, dir)
		if err != nil {
			stopSinks(ss)
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, nil
}

func stopSinks(ss []*sinkproc.Sink) {
	for _, s := range ss {
		s.Stop()
	}
}
