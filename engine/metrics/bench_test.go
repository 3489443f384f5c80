package metrics_test

import (
	"testing"

	"github.com/postern-mta/postern/engine/metrics"
)

// BenchmarkDelivered is the per-recipient cost on a label set already
// seen (0 allocs/op).
func BenchmarkDelivered(b *testing.B) {
	m, _ := newMetrics(b, metrics.Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.Delivered("delivered", "none", "mx", "pkix", "example.org")
	}
}

// BenchmarkDeliveredDomains is Delivered with domain labels on.
func BenchmarkDeliveredDomains(b *testing.B) {
	m, _ := newMetrics(b, metrics.Options{DomainLabels: true})
	b.ReportAllocs()
	for b.Loop() {
		m.Delivered("temporary", "connection", "mx", "none", "example.org")
	}
}

// BenchmarkDeliveredParallel is Delivered from every CPU at once, over a
// few routes (the read lock shared).
func BenchmarkDeliveredParallel(b *testing.B) {
	m, _ := newMetrics(b, metrics.Options{})
	routes := []string{"mx", "relay", "smarthost", "bulk"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Delivered("delivered", "none", routes[i%len(routes)], "pkix", "")
			i++
		}
	})
}

// BenchmarkAttempt is the per-attempt cost (0 allocs/op).
func BenchmarkAttempt(b *testing.B) {
	m, _ := newMetrics(b, metrics.Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.Attempt("mx", 0.25, true)
	}
}

// BenchmarkNil is the cost of a call on a nil *Metrics.
func BenchmarkNil(b *testing.B) {
	var m *metrics.Metrics
	b.ReportAllocs()
	for b.Loop() {
		m.Delivered("delivered", "none", "mx", "pkix", "example.org")
		m.Attempt("mx", 0.25, true)
	}
}
