package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
)

// config is what an mta is built from.
type config struct {
	policy   string // the policy file
	queueDir string
	hostname string // this MTA's name: the policy's default hostname, the DSNs' Reporting-MTA; "" is the machine's
	logOut   io.Writer
	// clock is the time for the engine and the queue alike; nil means
	// time.Now. Tests move it forward instead of waiting.
	clock func() time.Time
	// onReload is called after each load of the policy by serve (nil:
	// the engine's log line is enough).
	onReload func(path string, err error)
}

// mta is the outbound core of a mail server: the queue, the engine that
// delivers from it, the metrics registry and the log.
type mta struct {
	cfg config
	q   *queue
	eng *engine.Engine
	reg *prometheus.Registry
	log *slog.Logger
	now func() time.Time
}

// newMTA loads the policy and wires the engine to a JSON log, a
// Prometheus registry and the queue's clock. Close the engine when done.
func newMTA(cfg config) (*mta, error) {
	m := &mta{cfg: cfg, now: cfg.clock, reg: prometheus.NewRegistry(),
		log: slog.New(slog.NewJSONHandler(cfg.logOut, nil))}
	if m.now == nil {
		m.now = time.Now
	}
	if err := os.MkdirAll(cfg.queueDir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	m.q = &queue{dir: cfg.queueDir, now: m.now}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met, err := metrics.New(m.reg, metrics.Options{})
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m.eng, err = engine.LoadFile(cfg.policy, engine.Options{Logger: m.log, Clock: m.now, Metrics: met, Hostname: cfg.hostname})
	if err != nil {
		return nil, err // a policies.ErrorList prints every problem with its position
	}
	return m, nil
}

// metricsHandler serves GET /metrics: the engine's metrics and the
// process's.
func (m *mta) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

// runOnce attempts every message that is due. A message that cannot be
// attempted is logged and left for the next pass; the others go on. The
// error is about envelope files that did not load.
func (m *mta) runOnce(ctx context.Context) error {
	due, err := m.q.due()
	for _, env := range due {
		if ctx.Err() != nil {
			break // stopping: the rest waits in the queue
		}
		if err := m.attempt(ctx, env); err != nil {
			m.log.Error("attempt failed", "id", env.ID, "error", err)
		}
	}
	return err
}

// serve runs the MTA until ctx ends: /metrics on ln, the policy reloaded
// when its file changes and on SIGHUP, and a pass over the queue every
// interval. It returns early with an error when serving /metrics or
// watching the policy stops.
func (m *mta) serve(ctx context.Context, ln net.Listener, interval time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: m.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
	stopped := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		stopped <- m.eng.Watch(ctx, m.cfg.policy, engine.WatchOptions{Signals: []os.Signal{syscall.SIGHUP}, OnReload: m.cfg.onReload})
	})
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			stopped <- fmt.Errorf("serving /metrics: %w", err)
		}
	})
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var err error // nil from Watch: ctx ended
	for err == nil && ctx.Err() == nil {
		if perr := m.runOnce(ctx); perr != nil {
			m.log.Error("queue pass failed", "error", perr) // the next pass tries again
		}
		select {
		case <-ctx.Done():
		case err = <-stopped:
		case <-tick.C:
		}
	}
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = srv.Shutdown(shutdown) // a scrape still running after 5s is cut
	wg.Wait()
	return err
}
