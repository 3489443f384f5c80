package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-mta/postern/bench/internal/sinkproc"
	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/transport"
)

// workerResult is what the engine worker prints (JSON) for its parent.
type workerResult struct {
	ElapsedNS  int64  `json:"elapsed_ns"`
	Delivered  int64  `json:"delivered"`
	Failed     int64  `json:"failed"`
	FirstError string `json:"first_error,omitempty"`
}

// engineWorker delivers cfg.n messages to the sink at addr through
// engine.Deliver from cfg.parallel goroutines, and prints a workerResult.
func engineWorker(addr string, cfg config) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine worker:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "postern-e2e-engine-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine worker:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	policy := fmt.Sprintf(`version: 1
hostname: bench.sender.test
routing:
  route: sink
  routes:
    sink:
      type: relay
      address: %s
      port: %d
limits:
  messages-per-connection: %d
dns:
  resolver: static
  zone-file: zone.txt
`, ap.Addr(), ap.Port(), cfg.mpc)
	if cfg.starttls != "" {
		policy += "tls:\n  starttls: " + cfg.starttls + "\n"
	}
	zone := "$TTL 300\n$ORIGIN dest.test.\n@ IN SOA ns1 hostmaster 1 3600 600 604800 300\n@ IN NS ns1\nns1 IN A 192.0.2.53\n"
	if err := writeFile(dir, "policy.yaml", policy); err != nil {
		fmt.Fprintln(os.Stderr, "engine worker:", err)
		return 1
	}
	if err := writeFile(dir, "zone.txt", zone); err != nil {
		fmt.Fprintln(os.Stderr, "engine worker:", err)
		return 1
	}
	var opts engine.Options
	if cfg.caFile != "" {
		if opts.RootCAs, err = loadPool(cfg.caFile); err != nil {
			fmt.Fprintln(os.Stderr, "engine worker:", err)
			return 1
		}
	}
	e, err := engine.LoadFile(dir+"/policy.yaml", opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine worker:", err)
		return 1
	}
	body := sinkproc.Message(cfg.size, "postern e2e benchmark")
	msg := engine.Message{From: "bench@sender.test", To: []string{"rcpt@dest.test"}}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()

	var (
		next, delivered, failed atomic.Int64
		firstErr                sync.Once
		res                     workerResult
		wg                      sync.WaitGroup
	)
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "engine worker:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "engine worker:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	for range cfg.parallel {
		wg.Go(func() {
			for next.Add(1) <= int64(cfg.n) {
				out, err := e.Deliver(ctx, msg, strings.NewReader(body))
				if err == nil && len(out) == 1 && out[0].Status == transport.StatusDelivered && tlsAsAsked(cfg.starttls, out[0].TLS) {
					delivered.Add(1)
					continue
				}
				failed.Add(1)
				firstErr.Do(func() {
					if err != nil {
						res.FirstError = err.Error()
					} else if len(out) > 0 {
						res.FirstError = fmt.Sprintf("%s %d %s (TLS: %s)", out[0].Status, out[0].Code, out[0].Text, out[0].TLS)
					}
				})
			}
		})
	}
	wg.Wait()
	res.ElapsedNS = int64(time.Since(start))
	_ = e.Close() // QUIT the pooled connections
	res.Delivered, res.Failed = delivered.Load(), failed.Load()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// tlsAsAsked reports whether a delivery used TLS as the policy asked, so
// that a run cannot pass while measuring the wrong thing: require means a
// certificate verified against the benchmark's CA (PKIX), disable means
// plaintext.
func tlsAsAsked(starttls string, t transport.TLSInfo) bool {
	switch starttls {
	case "require":
		return t.Enabled() && t.Verified == transport.VerifiedPKIX
	case "disable":
		return !t.Enabled()
	}
	return true
}
