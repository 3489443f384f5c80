package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/postern-mta/postern/bench/internal/postfixproc"
	"github.com/postern-mta/postern/bench/internal/procstat"
)

// bench is what every measurement of one invocation shares.
type bench struct {
	cfg     config
	out     io.Writer
	tools   map[string]string
	tmp     string // every spool, queue and sink directory; removed at the end
	postern string
	disk    *disk    // the block device of tmp; nil when not found
	cg      *cgroups // nil without cgroup v2
	seq     int      // numbers the directories
}

// setup finds the programs, makes the temporary directory and builds (or
// checks) the postern binary. close removes what setup made.
func setup(ctx context.Context, cfg config, out io.Writer, postfix bool) (b *bench, err error) {
	b = &bench{cfg: cfg, out: out, tools: map[string]string{}}
	names := []string{"smtp-sink", "smtp-source"}
	if postfix {
		names = append(names, "postfix", "postconf", "postqueue")
	}
	if cfg.straceN > 0 && cfg.queued == 0 {
		names = append(names, "strace")
	}
	for _, name := range names {
		p, err := postfixproc.LookTool(name)
		if err != nil {
			return nil, fmt.Errorf("%s is not installed (apt-get install postfix strace): %w", name, err)
		}
		b.tools[name] = p
	}
	if b.tmp, err = os.MkdirTemp(cfg.dir, "postern-bench-relay-"); err != nil {
		return nil, fmt.Errorf("the benchmark's directory (-dir): %w", err)
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	// smtp-sink and Postfix drop privileges; let them into the directory.
	if err := os.Chmod(b.tmp, 0o755); err != nil {
		return nil, err
	}
	if b.postern = cfg.postern; cfg.only == "postfix" {
		b.postern = ""
	} else if b.postern == "" {
		b.postern = filepath.Join(b.tmp, "postern")
		if err := buildPostern(ctx, b.postern); err != nil {
			return nil, err
		}
	} else if b.postern, err = filepath.Abs(b.postern); err != nil {
		return nil, err
	}
	b.disk, _ = diskOf(b.tmp)                // without it the columns say n/a
	if cg, err := newCgroups(); err == nil { // without one CPU is read from /proc
		if probe, err := cg.make("probe"); err == nil {
			probe.remove()
			b.cg = cg
		}
	}
	return b, nil
}

func (b *bench) close() {
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
}

// dirFor makes a fresh directory for one instance or sink.
func (b *bench) dirFor(name string) (string, error) {
	b.seq++
	d := filepath.Join(b.tmp, fmt.Sprintf("%02d-%s", b.seq, name))
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	return d, nil
}

// buildPostern builds cmd/postern of the module this program is in.
func buildPostern(ctx context.Context, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building cmd/postern: no go command in PATH (or give -postern): %w", err)
	}
	c := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/postern-mta/postern/cmd/postern")
	if o, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("go build cmd/postern (run from inside the module, or give -postern): %w: %s", err, o)
	}
	return nil
}

// machine is the machine line: CPUs, model, kernel, Go, Postfix, disk.
func (b *bench) machine(ctx context.Context) string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	s := fmt.Sprintf("machine: nproc=%d, CPU %q, kernel %s, %s %s/%s", runtime.NumCPU(), procstat.CPUModel(),
		strings.TrimSpace(string(kernel)), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if pc := b.tools["postconf"]; pc != "" {
		s += ", Postfix " + postfixVersion(ctx, pc, b.tmp)
	}
	if b.disk != nil {
		s += ", disk " + b.disk.String()
	} else {
		s += ", disk unknown (no block device under " + b.tmp + ")"
	}
	if b.cg == nil {
		s += "; no cgroup v2: CPU from /proc/PID/stat"
	}
	return s
}

// postfixVersion asks postconf for mail_version (it wants a main.cf, so
// it is given an empty one).
func postfixVersion(ctx context.Context, postconf, tmp string) string {
	d, err := os.MkdirTemp(tmp, "postconf-")
	if err != nil {
		return "unknown"
	}
	defer os.RemoveAll(d)
	if err := os.WriteFile(filepath.Join(d, "main.cf"), nil, 0o644); err != nil {
		return "unknown"
	}
	out, err := exec.CommandContext(ctx, postconf, "-c", d, "-d", "-h", "mail_version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
