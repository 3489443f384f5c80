package metrics

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultAttemptBuckets are the upper bounds, in seconds, of
// postern_attempt_duration_seconds: from a pooled connection's quick
// transaction to SMTP's ten-minute timeouts (RFC 5321 section 4.5.3.2).
var DefaultAttemptBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// DefaultEvaluationBuckets are the upper bounds, in seconds, of
// postern_evaluation_duration_seconds: from a policy evaluated from
// cached answers (well under a millisecond) to one waiting on DNS and
// MTA-STS fetches.
var DefaultEvaluationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// throttleWaitBuckets are the upper bounds, in seconds, of
// postern_throttle_wait_seconds: rate limits ask for seconds to an hour.
var throttleWaitBuckets = []float64{.1, 1, 5, 15, 30, 60, 300, 900, 3600}

// Options configures [New]. The zero value is the usual choice.
type Options struct {
	// DomainLabels adds a domain label, the recipient's domain in lower
	// case, to postern_deliveries_total (and to no other metric). Off by
	// default: every domain mail goes to would add series, without bound.
	// Turn it on only when the engine delivers to a known, small set of
	// domains (a smarthost's few customers, say).
	DomainLabels bool
	// AttemptBuckets are the histogram buckets of
	// postern_attempt_duration_seconds, in seconds, increasing; nil means
	// DefaultAttemptBuckets.
	AttemptBuckets []float64
	// EvaluationBuckets are those of postern_evaluation_duration_seconds;
	// nil means DefaultEvaluationBuckets.
	EvaluationBuckets []float64
}

// Metrics records an engine's activity on the registry given to [New].
// A nil *Metrics records nothing. Its methods are safe for concurrent
// use.
type Metrics struct {
	domains bool

	deliveries        *prometheus.CounterVec
	attempts          *prometheus.HistogramVec
	evaluation        prometheus.Histogram
	connsOpen         prometheus.Gauge
	connsOpened       prometheus.Counter
	throttleWait      *prometheus.HistogramVec
	throttleDeferrals *prometheus.CounterVec
	mtastsFetches     *prometheus.CounterVec
	dane              *prometheus.CounterVec
	reloads           *prometheus.CounterVec

	// The children of the labelled metrics, by label values: looking one
	// up here costs no allocation, unlike the vectors' WithLabelValues.
	// The closed lists' children are made by New and only read after.
	deliveryChildren children[deliveryKey, prometheus.Counter]
	attemptChildren  children[attemptKey, prometheus.Observer]
	waitChildren     children[string, prometheus.Observer]
	deferralChildren children[string, prometheus.Counter]
	fetchChildren    map[string]prometheus.Counter
	daneChildren     map[string]prometheus.Counter
	reloadChildren   map[string]prometheus.Counter
	reload           reloadState

	// The sources read at scrape time; nil until set.
	poolSize    atomic.Pointer[func() int]
	mtastsCache atomic.Pointer[func() int]
	dnsStats    atomic.Pointer[func() DNSStats]
}

// reloadState is what the last reloads said, for the gauges read at
// scrape time: they appear only once there is something to say.
type reloadState struct {
	mu          sync.Mutex
	loaded      bool      // Reload was called
	ok          bool      // the last Reload was good
	succeeded   bool      // some Reload was good
	lastSuccess time.Time // when the last good one finished
}

type deliveryKey struct{ outcome, class, route, verify, domain string }

type attemptKey struct {
	route string
	ok    bool
}

// New makes the metrics and registers them on reg, all at once: on error
// nothing is registered. It fails when reg already holds metrics of the
// same names (New called twice on one registry), or when a bucket list is
// not strictly increasing.
func New(reg prometheus.Registerer, opts Options) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: New needs a prometheus.Registerer (nothing is registered globally)")
	}
	attemptBuckets, err := buckets("AttemptBuckets", opts.AttemptBuckets, DefaultAttemptBuckets)
	if err != nil {
		return nil, err
	}
	evalBuckets, err := buckets("EvaluationBuckets", opts.EvaluationBuckets, DefaultEvaluationBuckets)
	if err != nil {
		return nil, err
	}
	m := newMetrics(opts.DomainLabels, attemptBuckets, evalBuckets)
	m.fetchChildren = precreate(m.mtastsFetches, fetchWords)
	m.daneChildren = precreate(m.dane, daneWords)
	m.reloadChildren = precreate(m.reloads, reloadWords)
	if err := reg.Register((*collector)(m)); err != nil {
		return nil, fmt.Errorf("metrics: registering the postern_ metrics (is New called twice on one registry?): %w", err)
	}
	return m, nil
}

// newMetrics makes the metrics, unregistered.
func newMetrics(domains bool, attemptBuckets, evalBuckets []float64) *Metrics {
	deliveryLabels := []string{"outcome", "class", "route", "verify"}
	if domains {
		deliveryLabels = append(deliveryLabels, "domain")
	}
	return &Metrics{
		domains: domains,
		deliveries: counterVec("postern_deliveries_total",
			"Recipients given a final result, by outcome (delivered, temporary, permanent, local), failure class, route and TLS verification (none, pkix, dane, mta-sts, opportunistic).",
			deliveryLabels...),
		attempts: histogramVec("postern_attempt_duration_seconds",
			"Duration of one delivery attempt of a group of recipients (connections, TLS, SMTP transaction), by route and result (ok: the message was accepted for at least one recipient).",
			attemptBuckets, "route", "result"),
		evaluation: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "postern_evaluation_duration_seconds",
			Help:    "Duration of the policy evaluation of one message, its DNS, MTA-STS and throttle look-ups included.",
			Buckets: evalBuckets}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "postern_connections_open",
			Help: "SMTP and LMTP connections open now, idle pooled ones included."}),
		connsOpened: prometheus.NewCounter(prometheus.CounterOpts{Name: "postern_connections_opened_total",
			Help: "SMTP and LMTP connections opened."}),
		throttleWait: histogramVec("postern_throttle_wait_seconds",
			"Wait a full throttle asked for before the next try, by throttle.", throttleWaitBuckets, "throttle"),
		throttleDeferrals: counterVec("postern_throttle_deferrals_total",
			"Recipients deferred because a throttle was full, by throttle.", "throttle"),
		mtastsFetches: counterVec("postern_mta_sts_fetches_total",
			"MTA-STS policy fetches (RFC 8461), by result: ok, or the RFC 8460 failure type.", "result"),
		dane: counterVec("postern_dane_results_total",
			"DANE (RFC 7672) decisions for hosts (active, or why not) and verification failures, by result.", "result"),
		reloads: counterVec("postern_policy_reloads_total", "Policy loads and reloads, by result (ok, failed).", "result"),
	}
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}

// buckets checks a bucket list, or returns a copy of the default.
func buckets(field string, b, def []float64) ([]float64, error) {
	if b == nil {
		return append([]float64(nil), def...), nil
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("metrics: Options.%s is empty", field)
	}
	for i := 1; i < len(b); i++ {
		if !(b[i] > b[i-1]) {
			return nil, fmt.Errorf("metrics: Options.%s is not strictly increasing at index %d (%g after %g)", field, i, b[i], b[i-1])
		}
	}
	return append([]float64(nil), b...), nil
}

// precreate makes the child of every word, so that each series is there,
// at zero, from the first scrape.
func precreate(v *prometheus.CounterVec, words []string) map[string]prometheus.Counter {
	m := make(map[string]prometheus.Counter, len(words))
	for _, w := range words {
		m[w] = v.WithLabelValues(w)
	}
	return m
}

// children maps label values to a vector's children: a read-locked map
// look-up on the hot path, the vector's WithLabelValues on first use.
type children[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

// get returns the child of k, or false when it is not made yet.
func (c *children[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[k]
	return v, ok
}

// put keeps v as the child of k, unless another caller was first: it
// returns the child kept.
func (c *children[K, V]) put(k K, v V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok {
		return old
	}
	if c.m == nil {
		c.m = map[K]V{}
	}
	c.m[k] = v
	return v
}
