package engine_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/transport"
)

// metricsRows delivers rows of the DANE and MTA-STS matrix with metrics
// on: DANE decisions and verification failures, MTA-STS fetches over real
// HTTPS (nginx) and the policies cached are counted.
func (b *realTLSBed) metricsRows(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := b.engine(t, tlsOptional, engine.Options{Metrics: m})
	wantDelivered(t, send(t, e, "m01@d01.example.test", false), transport.VerifiedDANE)                      // DANE-EE matches
	wantStatus(t, send(t, e, "m02@d02.example.test", false), transport.StatusTemporary, transport.ClassDANE) // DANE-EE mismatch
	wantDelivered(t, send(t, e, "m14@s14.example.test", false), transport.VerifiedMTASTS)                    // MTA-STS enforce, fetched
	value := func(name, label, want string) float64 {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			var sum float64
			for _, mm := range f.GetMetric() {
				for _, l := range mm.GetLabel() {
					if label == "" || l.GetName() == label && l.GetValue() == want {
						sum += mm.GetCounter().GetValue() + mm.GetGauge().GetValue()
					}
				}
				if label == "" {
					sum += mm.GetGauge().GetValue()
				}
			}
			return sum
		}
		return -1
	}
	if n := value("postern_dane_results_total", "result", metrics.DANEActive); n != 2 {
		t.Errorf("DANE active counted %v times, want 2 (d01, d02)", n)
	}
	if n := value("postern_dane_results_total", "result", metrics.DANEVerifyFailed); n != 1 {
		t.Errorf("DANE verification failures counted %v, want 1 (d02)", n)
	}
	if n := value("postern_mta_sts_fetches_total", "result", metrics.FetchOK); n < 1 {
		t.Errorf("MTA-STS fetches ok %v, want at least 1 (s14)", n)
	}
}
