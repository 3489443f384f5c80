package metrics_test

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postern-mta/postern/engine/metrics"
)

// An embedder makes a registry of its own, hands the engine the Metrics,
// and serves the registry.
func Example() {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{})
	if err != nil {
		panic(err)
	}
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	// What the engine does for one delivered recipient:
	m.Delivered("delivered", "none", "mx", "dane", "example.org")

	fams, _ := reg.Gather()
	for _, f := range fams {
		if f.GetName() == "postern_deliveries_total" {
			for _, s := range f.GetMetric() {
				fmt.Println(f.GetName(), labelMap(s), s.GetCounter().GetValue())
			}
		}
	}
	// Output:
	// postern_deliveries_total map[class:none outcome:delivered route:mx verify:dane] 1
}
