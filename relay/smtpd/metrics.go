package smtpd

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values, fixed so that the series are bounded.
var (
	receivedResults = []string{"queued", "rejected", "tempfail"}
	rejectReasons   = []string{"relay_denied", "auth", "size", "hops", "bare_newline", "queue_full", "disk", "recipients", "syntax"}
)

type metrics struct {
	sessions *prometheus.GaugeVec
	received *prometheus.CounterVec
	rejects  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, listeners []Listener) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postern_relay_sessions",
			Help: "SMTP connections open, by listener.",
		}, []string{"listener"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_relay_messages_received_total",
			Help: "Messages whose content was received (DATA or BDAT LAST), by listener and result: queued (250 after the spool commit), rejected (5xx), tempfail (4xx).",
		}, []string{"listener", "result"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_relay_rejects_total",
			Help: "Commands or messages refused, by listener and reason (relay_denied, auth, size, hops, bare_newline, queue_full, disk, recipients, syntax).",
		}, []string{"listener", "reason"}),
	}
	for _, l := range listeners {
		m.sessions.WithLabelValues(l.Name)
		for _, r := range receivedResults {
			m.received.WithLabelValues(l.Name, r)
		}
		for _, r := range rejectReasons {
			m.rejects.WithLabelValues(l.Name, r)
		}
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.sessions, m.received, m.rejects} {
		if err := reg.Register(c); err != nil {
			for _, d := range done { // all or nothing
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("smtpd: registering the postern_relay_ listener metrics (New called twice on one registry?): %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// reject counts a refusal when reason is one of the known ones.
func (m *metrics) reject(listener, reason string) {
	if reason != "" {
		m.rejects.WithLabelValues(listener, reason).Inc()
	}
}
