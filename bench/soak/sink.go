package main

import (
	"context"
	"errors"
	"os/exec"

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

// startSinks starts k smtp-sinks on free loopback ports; on error the
// ones started are stopped.
func startSinks(ctx context.Context, bin, dir string, k int) ([]*sinkproc.Sink, error) {
	var ss []*sinkproc.Sink
	for range k {
		s, err := sinkproc.Start(ctx, sinkproc.SmtpSink(bin), dir)
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
