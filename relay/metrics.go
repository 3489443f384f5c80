package relay

import (
	"time"

	"github.com/postern-mta/postern/relay/sched"
	"github.com/postern-mta/postern/relay/spool"
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

// newMetrics registers the queue's metrics on reg; stats, census and free
// feed the gauges read at scrape time.
func newMetrics(reg *prometheus.Registry, stats func() sched.Stats, census func() queueCensus, free func() (uint64, bool)) (*relayMetrics, error) {
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
	gauges := []prometheus.Collector{&queueCollector{stats: stats, census: census, free: free}}
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

// Queue states of the postern_relay_queue_messages and _recipients
// gauges.
const (
	statePending  = "pending"  // due, waiting for a worker
	stateDeferred = "deferred" // waiting for its next attempt, or for a down destination
	stateHeld     = "held"     // held by the administrator
	stateActive   = "active"   // being delivered
)

var queueStates = []string{statePending, stateDeferred, stateHeld, stateActive}

// byRank orders the states of a scheduled item: a message is in the
// highest state of its items.
var byRank = [...]string{stateDeferred, statePending, stateActive}

// queueCensus counts the queued messages and their recipients not yet
// final by state, at one instant. A message counts once: active when one
// of its deliveries is in flight, else pending when one of its
// destinations is due, else deferred (or held).
type queueCensus struct {
	messages, recipients map[string]int
	oldest               time.Time // arrival of the oldest queued message; zero when none
}

// census takes the queue's census from the schedule and the held
// messages (once per scrape: it visits every queued message).
func (q *queue) census() queueCensus {
	c := queueCensus{messages: map[string]int{}, recipients: map[string]int{}}
	now := q.clock.Now()
	arrived := func(id string) {
		if t, err := spool.ParseID(id); err == nil && (c.oldest.IsZero() || t.Before(c.oldest)) {
			c.oldest = t
		}
	}
	q.sc.EachMessage(func(id string, items []sched.Item) {
		rank := 0 // the message's state: the highest of its items' in byRank
		for _, it := range items {
			r := 0
			switch {
			case it.Active:
				r = 2
			case !it.Down && !it.Due.After(now):
				r = 1
			}
			rank = max(rank, r)
			if pl, ok := it.Payload.(*item); ok {
				c.recipients[byRank[r]] += len(pl.rcpts)
			}
		}
		c.messages[byRank[rank]]++
		arrived(id)
	})
	q.eachHeld(func(id string, pending int) {
		c.messages[stateHeld]++
		c.recipients[stateHeld] += pending
		arrived(id)
	})
	return c
}

// queueCollector exports the scheduler's and the spool's gauges, taking
// one scheduler snapshot and one census per scrape.
type queueCollector struct {
	stats  func() sched.Stats
	census func() queueCensus
	free   func() (uint64, bool)
}

var (
	descMessages   = prometheus.NewDesc("postern_relay_queue_messages", "Queued messages by state: pending (due, waiting for a worker), deferred (waiting for the next attempt or a down destination), held, active (being delivered).", []string{"state"}, nil)
	descRecipients = prometheus.NewDesc("postern_relay_queue_recipients", "Recipients of the queued messages not yet final, by state (as postern_relay_queue_messages, per destination).", []string{"state"}, nil)
	descItems      = prometheus.NewDesc("postern_relay_queue_items", "Scheduled (message, destination) items not yet due or in flight.", nil, nil)
	descReady      = prometheus.NewDesc("postern_relay_queue_ready", "Items due and waiting for a worker.", nil, nil)
	descActive     = prometheus.NewDesc("postern_relay_queue_active", "Deliveries in flight.", nil, nil)
	descDown       = prometheus.NewDesc("postern_relay_destinations_down", "Destinations marked down (probed once per interval).", nil, nil)
	descOldest     = prometheus.NewDesc("postern_relay_queue_oldest_seconds", "Age of the oldest queued message, from its arrival (0 when the queue is empty).", nil, nil)
	descFree       = prometheus.NewDesc("postern_relay_spool_free_bytes", "Free bytes on the spool's file system.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descRecipients, descItems, descReady, descActive, descDown, descOldest, descFree} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	cen := c.census()
	for _, state := range queueStates {
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.GaugeValue, float64(cen.messages[state]), state)
		ch <- prometheus.MustNewConstMetric(descRecipients, prometheus.GaugeValue, float64(cen.recipients[state]), state)
	}
	oldest := 0.0
	if !cen.oldest.IsZero() {
		oldest = max(time.Since(cen.oldest).Seconds(), 0)
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
