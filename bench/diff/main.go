// Command diff benchmarks `postern diff` over a large corpus: it writes a
// static zone of many domains, two policies that differ in routes, TLS,
// source addresses and throttles, and a corpus of envelopes (JSON Lines),
// builds the postern binary, runs
//
//	postern diff --old old.yaml --new new.yaml --envelopes corpus.jsonl --format json
//
// and reports envelopes per second and the peak resident memory of the
// process (getrusage's ru_maxrss). `make bench-diff` runs it; figures are
// in bench/README.md.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 100_000, "envelopes in the corpus")
	domains := flag.Int("domains", 2000, "recipient domains in the zone")
	runs := flag.Int("runs", 3, "timed runs of each case (the edit; the policy against itself), each printed")
	keep := flag.String("dir", "", "write the files here and keep them (default: a temporary directory)")
	flag.Parse()
	if err := run(*n, *domains, *runs, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/diff:", err)
		os.Exit(1)
	}
}

func run(n, domains, runs int, dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "postern-bench-diff-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeInputs(dir, n, domains); err != nil {
		return err
	}
	bin := filepath.Join(dir, "postern")
	build := exec.Command("go", "build", "-o", bin, "./cmd/postern")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build (run from the module root): %w", err)
	}
	fmt.Printf("corpus: %d envelopes, %d domains, %d CPUs\n", n, domains, runtime.NumCPU())
	// The edit, then the policy against itself: nothing changes, the
	// common case of a corpus most of which an edit does not touch.
	for k := range 2 * runs {
		i, newer, what := k, "new.yaml", "edit"
		if k >= runs {
			i, newer, what = k-runs, "old.yaml", "no change"
		}
		cmd := exec.Command(bin, "diff", "--old", "old.yaml", "--new", newer, "--envelopes", "corpus.jsonl", "--format", "json")
		cmd.Dir = dir
		cmd.Stderr = os.Stderr
		// The report is streamed past, not kept: ru_maxrss of a child
		// starts from its parent's resident size at fork, so this process
		// must stay small for the figure to be the child's own.
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		rep, size, readErr := readSummary(stdout)
		err = cmd.Wait()
		elapsed := time.Since(start)
		if code := cmd.ProcessState.ExitCode(); err != nil && code != 4 {
			return fmt.Errorf("postern diff: exit %d: %w", code, err)
		}
		if readErr != nil {
			return fmt.Errorf("postern diff output: %w", readErr)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		fmt.Printf("%s, run %d: %d envelopes, %d recipients, %d changed (report %.1f MB) in %v: %.0f envelopes/s, peak RSS %.1f MiB, user %v sys %v\n",
			what, i+1, rep.Envelopes, rep.Recipients, rep.Changed, float64(size)/1e6, elapsed.Round(time.Millisecond),
			float64(rep.Envelopes)/elapsed.Seconds(), float64(ru.Maxrss)/1024,
			time.Duration(ru.Utime.Nano()).Round(time.Millisecond), time.Duration(ru.Stime.Nano()).Round(time.Millisecond))
	}
	return nil
}

// summary is the head of diff's JSON report.
type summary struct{ Envelopes, Recipients, Changed int }

// readSummary reads the counts at the start of the JSON report
// ({"envelopes":N,"recipients":M,"changed":K,"changes":[...) and discards
// the rest, returning its size.
func readSummary(r io.Reader) (summary, int64, error) {
	var s summary
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(256)
	if err != nil && !errors.Is(err, io.EOF) {
		return s, 0, err
	}
	i := bytes.Index(head, []byte(`,"changes":`))
	if i < 0 {
		return s, 0, fmt.Errorf("no summary at the start of %q", head)
	}
	if err := json.Unmarshal(append(head[:i:i], '}'), &s); err != nil {
		return s, 0, err
	}
	n, err := io.Copy(io.Discard, br)
	return s, n, err
}

// writeInputs writes zone.txt, old.yaml, new.yaml and corpus.jsonl.
func writeInputs(dir string, n, domains int) error {
	var zone strings.Builder
	zone.WriteString("$TTL 300\n$ORIGIN example.\n")
	for d := range domains {
		// Two MX hosts of equal preference (shuffled), IPv4 and IPv6.
		fmt.Fprintf(&zone, "d%d IN MX 10 mx1.d%d.example.\nd%d IN MX 10 mx2.d%d.example.\n", d, d, d, d)
		for h := 1; h <= 2; h++ {
			fmt.Fprintf(&zone, "mx%d.d%d IN A 192.0.2.%d\nmx%d.d%d IN AAAA 2001:db8::%x:%d\n", h, d, 1+d%250, h, d, d, h)
		}
	}
	zone.WriteString("relay IN A 198.51.100.25\n")
	const common = `version: 1
hostname: mta.example.org
dns:
  resolver: static
  zone-file: zone.txt
lists:
  relayed: [%s]
  %s
routing:
  route:
    - if: in_list("relayed", rcpt_domain)
      then: relay
    - else: mx
  routes:
    relay:
      type: relay
      address: relay.example
      port: 587
`
	relayed, partners := []string{}, []string{}
	for d := 0; d < domains; d += 10 {
		relayed = append(relayed, fmt.Sprintf("d%d.example", d))
	}
	for d := 5; d < domains; d += 20 {
		partners = append(partners, fmt.Sprintf("d%d.example", d))
	}
	partnerList := "partners: [" + strings.Join(partners, ", ") + "]"
	head := fmt.Sprintf(common, strings.Join(relayed, ", "), "# partners: none yet")
	old := head + `tls:
  starttls: optional
ip-strategy:
  source-ips: [192.0.2.200, 2001:db8::200]
limits:
  throttles:
    - name: per-domain
      key: [rcpt_domain]
      rate: 600/1m
`
	// The edit: partners need TLS, bulk senders leave from their own
	// address, a throttle for partners, and a third of the relayed
	// domains go direct again.
	newer := strings.Replace(fmt.Sprintf(common, strings.Join(relayed, ", "), partnerList), `    - if: in_list("relayed", rcpt_domain)`, `    - if: in_list("relayed", rcpt_domain) && !(rcpt_domain endsWith "0.example" && len(rcpt_domain) % 3 == 0)`, 1) + `tls:
  starttls:
    - if: in_list("partners", rcpt_domain)
      then: require
    - else: optional
ip-strategy:
  source-ips:
    - if: sender_domain == "bulk.example.org"
      then: [192.0.2.201, 2001:db8::201]
    - else: [192.0.2.200, 2001:db8::200]
limits:
  throttles:
    - name: per-domain
      key: [rcpt_domain]
      rate: 600/1m
    - name: partners
      match: in_list("partners", rcpt_domain)
      key: [rcpt_domain]
      concurrency: 5
`
	for name, content := range map[string]string{"zone.txt": zone.String(), "old.yaml": old, "new.yaml": newer} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(dir, "corpus.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	rng := rand.New(rand.NewPCG(1, 2))
	senders := []string{"alice@example.org", "bob@example.org", "news@bulk.example.org", ""}
	enc := json.NewEncoder(w)
	for i := range n {
		to := make([]string, 1+rng.IntN(3))
		for k := range to {
			to[k] = fmt.Sprintf("u%d@d%d.example", rng.IntN(1000), rng.IntN(domains))
		}
		env := map[string]any{"id": fmt.Sprintf("Q%06d", i), "from": senders[rng.IntN(len(senders))], "to": to}
		if err := enc.Encode(env); err != nil {
			return err
		}
	}
	return w.Flush()
}
