package relay

import (
	"time"

	"github.com/postern-mta/postern/relay/sched"
	"github.com/prometheus/client_golang/prometheus"
)

// relayMetrics are the queue's metrics (the listener registers its own,
// the engine its own, on the same registry). A nil *relayMetrics records
// nothing.
type relayMetrics struct {
	deliveries *prometheus.CounterVec
	delayHist  prometheus.Histogram
	dsns       *prometheus.CounterVec
	fsync      *prometheus.HistogramVec
	reloads    *prometheus.CounterVec
	policy     *prometheus.GaugeVec
}

// newMetrics registers the queue's metrics on reg; stats and free feed
// the gauges read at scrape time.
func newMetrics(reg *prometheus.Registry, stats func() sched.Stats, free func() (uint64, bool)) (*relayMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &relayMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_deliveries_total",
			Help: "Recipient results of the relay's delivery attempts, by status (sent, deferred, bounced, expired) and failure class."}, []string{"status", "class"}),
		delayHist: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "postern_relay_delivery_delay_seconds",
			Help:    "Time from arrival to a recipient's final result.",
			Buckets: []float64{0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 4 * 3600, 86400, 5 * 86400}}),
		dsns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_dsn_total",
			Help: "Delivery status notifications queued (failed, delayed, delivered) or not sent because the sender was null (dropped)."}, []string{"kind"}),
		fsync: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "postern_relay_spool_fsync_seconds",
			Help:    "Duration of the spool's fsync calls, for message files (file) and their directories (dir).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}, []string{"kind"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_reloads_total",
			Help: "Policy reloads, by result (ok, failed)."}, []string{"result"}),
		policy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "postern_relay_policy_info",
			Help: "1 for the hash of the policy in force."}, []string{"hash"}),
	}
	gauges := []prometheus.Collector{&queueCollector{stats: stats, free: free}}
	for _, c := range append([]prometheus.Collector{m.deliveries, m.delayHist, m.dsns, m.fsync, m.reloads, m.policy}, gauges...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *relayMetrics) delivery(status, class string) {
	if m == nil {
		return
	}
	if class == "" {
		class = "none"
	}
	m.deliveries.WithLabelValues(status, class).Inc()
}

func (m *relayMetrics) delay(d time.Duration) {
	if m != nil {
		m.delayHist.Observe(d.Seconds())
	}
}

func (m *relayMetrics) dsn(kind string) {
	if m != nil {
		m.dsns.WithLabelValues(kind).Inc()
	}
}

func (m *relayMetrics) observeFsync(kind string, d time.Duration) {
	if m != nil {
		m.fsync.WithLabelValues(kind).Observe(d.Seconds())
	}
}

func (m *relayMetrics) reload(ok bool, hash string) {
	if m == nil {
		return
	}
	if !ok {
		m.reloads.WithLabelValues("failed").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.policy.Reset()
	m.policy.WithLabelValues(hash).Set(1)
}

// queueCollector exports the scheduler's and the spool's gauges, taking
// one scheduler snapshot per scrape (Stats walks every destination).
type queueCollector struct {
	stats func() sched.Stats
	free  func() (uint64, bool)
}

var (
	descItems  = prometheus.NewDesc("postern_relay_queue_items", "Scheduled (message, destination) items not yet due or in flight.", nil, nil)
	descReady  = prometheus.NewDesc("postern_relay_queue_ready", "Items due and waiting for a worker.", nil, nil)
	descActive = prometheus.NewDesc("postern_relay_queue_active", "Deliveries in flight.", nil, nil)
	descDown   = prometheus.NewDesc("postern_relay_destinations_down", "Destinations marked down (probed once per interval).", nil, nil)
	descOldest = prometheus.NewDesc("postern_relay_queue_oldest_seconds", "Age of the earliest due item's due time (0 when the queue is empty).", nil, nil)
	descFree   = prometheus.NewDesc("postern_relay_spool_free_bytes", "Free bytes on the spool's file system.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descItems, descReady, descActive, descDown, descOldest, descFree} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	oldest := 0.0
	if !st.OldestDue.IsZero() {
		oldest = max(time.Since(st.OldestDue).Seconds(), 0)
	}
	free := 0.0
	if f, ok := c.free(); ok {
		free = float64(f)
	}
	for _, v := range []struct {
		d *prometheus.Desc
		x float64
	}{{descItems, float64(st.Scheduled)}, {descReady, float64(st.Ready)}, {descActive, float64(st.Active)},
		{descDown, float64(st.Down)}, {descOldest, oldest}, {descFree, free}} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.GaugeValue, v.x)
	}
}
