package metrics_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/postern-mta/postern/engine/metrics"
)

// reloadAt is the time of the good reload recordAll records: a quarter
// second past, exactly representable as a float64 Unix time.
var reloadAt = time.Date(2026, 1, 2, 3, 4, 5, 250_000_000, time.UTC)

// The sources recordAll sets.
var (
	dnsStats = metrics.DNSStats{Hits: 10, Misses: 4, Upstream: 5, Collapsed: 1, Errors: 2, Stale: 3, Prefetches: 6, Entries: 7}
	pooled   = 4
	policies = 9
)

// throttleWaitBuckets are postern_throttle_wait_seconds' buckets.
var throttleWaitBuckets = []float64{.1, 1, 5, 15, 30, 60, 300, 900, 3600}

// recordAll records a known set of events, words outside the closed lists
// and upper-case domains included.
func recordAll(m *metrics.Metrics) {
	m.Delivered("delivered", "", "mx", "pkix", "Example.ORG.")
	m.Delivered("delivered", "none", "mx", "pkix", "example.org")
	m.Delivered("temporary", "dns", "mx", "", "example.org")
	m.Delivered("permanent", "unexpected-reply", "relay", "dane", "example.net")
	m.Delivered("local", "none", "local", "none", "example.com")
	m.Delivered("temporary", "policy", "", "none", "example.com") // routing failed
	m.Delivered("unknown", "no-such-class", "mx", "sideways", "example.com")
	m.Delivered("delivered", "none", "bad\xffroute", "mta-sts", "bad\xffdomain")

	m.Attempt("mx", 0.2, true)
	m.Attempt("mx", 3, false)
	m.Attempt("mx", 700, false) // past the last bucket
	m.Attempt("relay", 0.004, true)

	m.Evaluation(0.0003)
	m.Evaluation(0.02)

	m.ConnOpened()
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.PoolSize(func() int { return pooled })

	m.ThrottleWait("per-domain", 30)
	m.ThrottleWait("per-domain", 2)
	m.ThrottleWait("per-site", 0.05)
	m.ThrottleDeferred("per-domain")
	m.ThrottleDeferred("per-domain")
	m.ThrottleDeferred("per-domain")

	m.DNSCache(func() metrics.DNSStats { return dnsStats })

	m.MTASTSFetch(metrics.FetchOK)
	m.MTASTSFetch(metrics.FetchOK)
	m.MTASTSFetch("sts-webpki-invalid")
	m.MTASTSFetch("nonsense")
	m.MTASTSCache(func() int { return policies })

	m.DANE(metrics.DANEActive)
	m.DANE(metrics.DANEActive)
	m.DANE(metrics.DANEInsecure)
	m.DANE(metrics.DANEVerifyFailed)
	m.DANE("whatever")

	m.Reload(true, reloadAt)
	m.Reload(false, reloadAt.Add(time.Hour))
}

// expected is every series recordAll leaves, by family.
func expected(domains bool) map[string]map[string]float64 {
	d := func(outcome, class, route, verify, domain string) string {
		l := lbl("outcome", outcome, "class", class, "route", route, "verify", verify)
		if domains {
			l["domain"] = domain
		}
		return series("postern_deliveries_total", l)
	}
	deliveries := map[string]float64{}
	add := func(k string) { deliveries[k]++ }
	add(d("delivered", "none", "mx", "pkix", "example.org"))
	add(d("delivered", "none", "mx", "pkix", "example.org"))
	add(d("temporary", "dns", "mx", "none", "example.org"))
	add(d("permanent", "unexpected-reply", "relay", "dane", "example.net"))
	add(d("local", "none", "local", "none", "example.com"))
	add(d("temporary", "policy", "", "none", "example.com"))
	add(d("other", "other", "mx", "other", "example.com"))
	add(d("delivered", "none", "other", "mta-sts", "other"))

	attempts := map[string]float64{}
	histogram(attempts, "postern_attempt_duration_seconds", lbl("route", "mx", "result", "ok"), metrics.DefaultAttemptBuckets, []float64{0.2})
	histogram(attempts, "postern_attempt_duration_seconds", lbl("route", "mx", "result", "failed"), metrics.DefaultAttemptBuckets, []float64{3, 700})
	histogram(attempts, "postern_attempt_duration_seconds", lbl("route", "relay", "result", "ok"), metrics.DefaultAttemptBuckets, []float64{0.004})
	evaluation := map[string]float64{}
	histogram(evaluation, "postern_evaluation_duration_seconds", nil, metrics.DefaultEvaluationBuckets, []float64{0.0003, 0.02})
	waits := map[string]float64{}
	histogram(waits, "postern_throttle_wait_seconds", lbl("throttle", "per-domain"), throttleWaitBuckets, []float64{30, 2})
	histogram(waits, "postern_throttle_wait_seconds", lbl("throttle", "per-site"), throttleWaitBuckets, []float64{0.05})

	one := func(name string, v float64) map[string]float64 { return map[string]float64{series(name, nil): v} }
	by := func(name, label string, values map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for k, v := range values {
			out[series(name, lbl(label, k))] = v
		}
		return out
	}
	return map[string]map[string]float64{
		"postern_deliveries_total":              deliveries,
		"postern_attempt_duration_seconds":      attempts,
		"postern_evaluation_duration_seconds":   evaluation,
		"postern_connections_open":              one("postern_connections_open", 2),
		"postern_connections_opened_total":      one("postern_connections_opened_total", 3),
		"postern_connections_pooled":            one("postern_connections_pooled", 4),
		"postern_throttle_wait_seconds":         waits,
		"postern_throttle_deferrals_total":      by("postern_throttle_deferrals_total", "throttle", map[string]float64{"per-domain": 3}),
		"postern_dns_cache_hits_total":          one("postern_dns_cache_hits_total", 10),
		"postern_dns_cache_misses_total":        one("postern_dns_cache_misses_total", 4),
		"postern_dns_upstream_queries_total":    one("postern_dns_upstream_queries_total", 5),
		"postern_dns_cache_collapsed_total":     one("postern_dns_cache_collapsed_total", 1),
		"postern_dns_upstream_errors_total":     one("postern_dns_upstream_errors_total", 2),
		"postern_dns_cache_stale_answers_total": one("postern_dns_cache_stale_answers_total", 3),
		"postern_dns_cache_prefetches_total":    one("postern_dns_cache_prefetches_total", 6),
		"postern_dns_cache_entries":             one("postern_dns_cache_entries", 7),
		"postern_mta_sts_fetches_total": by("postern_mta_sts_fetches_total", "result", map[string]float64{
			"ok": 2, "sts-webpki-invalid": 1, "sts-policy-invalid": 0, "sts-policy-fetch-error": 0, "other": 1}),
		"postern_mta_sts_cache_policies": one("postern_mta_sts_cache_policies", 9),
		"postern_dane_results_total": by("postern_dane_results_total", "result", map[string]float64{
			"active": 2, "disabled": 0, "insecure": 1, "no-records": 0, "unusable": 0, "lookup-failed": 0,
			"verify-failed": 1, "other": 1}),
		"postern_policy_reloads_total":          by("postern_policy_reloads_total", "result", map[string]float64{"ok": 1, "failed": 1}),
		"postern_policy_last_reload_successful": one("postern_policy_last_reload_successful", 0),
		"postern_policy_last_reload_success_timestamp_seconds": one("postern_policy_last_reload_success_timestamp_seconds",
			float64(reloadAt.Unix())+0.25),
	}
}

// types are the metric types, by family.
var types = map[string]dto.MetricType{
	"postern_deliveries_total":                             dto.MetricType_COUNTER,
	"postern_attempt_duration_seconds":                     dto.MetricType_HISTOGRAM,
	"postern_evaluation_duration_seconds":                  dto.MetricType_HISTOGRAM,
	"postern_connections_open":                             dto.MetricType_GAUGE,
	"postern_connections_opened_total":                     dto.MetricType_COUNTER,
	"postern_connections_pooled":                           dto.MetricType_GAUGE,
	"postern_throttle_wait_seconds":                        dto.MetricType_HISTOGRAM,
	"postern_throttle_deferrals_total":                     dto.MetricType_COUNTER,
	"postern_dns_cache_hits_total":                         dto.MetricType_COUNTER,
	"postern_dns_cache_misses_total":                       dto.MetricType_COUNTER,
	"postern_dns_upstream_queries_total":                   dto.MetricType_COUNTER,
	"postern_dns_cache_collapsed_total":                    dto.MetricType_COUNTER,
	"postern_dns_upstream_errors_total":                    dto.MetricType_COUNTER,
	"postern_dns_cache_stale_answers_total":                dto.MetricType_COUNTER,
	"postern_dns_cache_prefetches_total":                   dto.MetricType_COUNTER,
	"postern_dns_cache_entries":                            dto.MetricType_GAUGE,
	"postern_mta_sts_fetches_total":                        dto.MetricType_COUNTER,
	"postern_mta_sts_cache_policies":                       dto.MetricType_GAUGE,
	"postern_dane_results_total":                           dto.MetricType_COUNTER,
	"postern_policy_reloads_total":                         dto.MetricType_COUNTER,
	"postern_policy_last_reload_successful":                dto.MetricType_GAUGE,
	"postern_policy_last_reload_success_timestamp_seconds": dto.MetricType_GAUGE,
}

// TestExposition records a known set of events, writes the exposition
// and parses it back: every family has its type and help text, and holds
// exactly the series and values the events make, nothing else.
func TestExposition(t *testing.T) {
	for _, domains := range []bool{false, true} {
		t.Run(map[bool]string{false: "domains-off", true: "domains-on"}[domains], func(t *testing.T) {
			m, reg := newMetrics(t, metrics.Options{DomainLabels: domains})
			recordAll(m)
			got := parse(t, expose(t, reg))
			want := expected(domains)
			if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
				t.Fatalf("families:\n got %v\nwant %v", g, w)
			}
			for name, fam := range got {
				if fam.typ != types[name] {
					t.Errorf("%s: type %v, want %v", name, fam.typ, types[name])
				}
				if len(fam.help) < 20 {
					t.Errorf("%s: help text %q", name, fam.help)
				}
				for s, v := range want[name] {
					if g, ok := fam.samples[s]; !ok {
						t.Errorf("missing %s (want %g)", s, v)
					} else if g != v {
						t.Errorf("%s = %g, want %g", s, g, v)
					}
				}
				for s, v := range fam.samples {
					if _, ok := want[name][s]; !ok {
						t.Errorf("unexpected %s = %g", s, v)
					}
				}
			}
		})
	}
}

// TestDomainLabels: without the option no series has a domain label,
// whatever domain the engine passes; with it, postern_deliveries_total
// has one (lower case, without the trailing dot) and no other metric
// does.
func TestDomainLabels(t *testing.T) {
	for _, on := range []bool{false, true} {
		m, reg := newMetrics(t, metrics.Options{DomainLabels: on})
		recordAll(m)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		seen := false
		for _, f := range fams {
			for _, s := range f.GetMetric() {
				d, has := labelMap(s)["domain"]
				switch {
				case has && (!on || f.GetName() != "postern_deliveries_total"):
					t.Errorf("DomainLabels %v: %s has a domain label (%q)", on, f.GetName(), d)
				case !has && on && f.GetName() == "postern_deliveries_total":
					t.Errorf("DomainLabels on: a delivery series without a domain label: %v", labelMap(s))
				case has && d == "example.org":
					seen = true
				}
			}
		}
		if on && !seen {
			t.Error(`DomainLabels on: no series with domain="example.org" (from "Example.ORG.")`)
		}
	}
}

// TestNilMetrics: every method of a nil *Metrics is a no-op.
func TestNilMetrics(t *testing.T) {
	var m *metrics.Metrics
	recordAll(m) // panics if a method dereferences m
}

// TestTwoRegistries: two Metrics on two registries count apart.
func TestTwoRegistries(t *testing.T) {
	m1, r1 := newMetrics(t, metrics.Options{})
	m2, r2 := newMetrics(t, metrics.Options{})
	m1.Delivered("delivered", "none", "mx", "pkix", "")
	m1.Delivered("delivered", "none", "mx", "pkix", "")
	m2.Delivered("delivered", "none", "mx", "pkix", "")
	m2.ConnOpened()
	key := series("postern_deliveries_total", lbl("outcome", "delivered", "class", "none", "route", "mx", "verify", "pkix"))
	g1, g2 := parse(t, expose(t, r1)), parse(t, expose(t, r2))
	if v := g1["postern_deliveries_total"].samples[key]; v != 2 {
		t.Errorf("registry 1: %s = %g, want 2", key, v)
	}
	if v := g2["postern_deliveries_total"].samples[key]; v != 1 {
		t.Errorf("registry 2: %s = %g, want 1", key, v)
	}
	if v := g1["postern_connections_open"].samples["postern_connections_open{}"]; v != 0 {
		t.Errorf("registry 1: connections open %g, want 0 (only m2 opened one)", v)
	}
}

// TestNewTwice: a second New on one registry fails with an error saying
// so, with the same options (prometheus.AlreadyRegisteredError) or not
// (the label names differ), and leaves the first Metrics working and
// alone on the registry.
func TestNewTwice(t *testing.T) {
	m, reg := newMetrics(t, metrics.Options{})
	for _, opts := range []metrics.Options{{}, {DomainLabels: true}} {
		m2, err := metrics.New(reg, opts)
		if err == nil || m2 != nil {
			t.Fatalf("second New(%+v) on one registry: %v, %v; want an error", opts, m2, err)
		}
		if !strings.Contains(err.Error(), "metrics: registering the postern_ metrics (is New called twice") {
			t.Errorf("New(%+v): error %q does not say what failed", opts, err)
		}
		var are prometheus.AlreadyRegisteredError
		if same := !opts.DomainLabels; errors.As(err, &are) != same {
			t.Errorf("New(%+v): error %q: AlreadyRegisteredError %v, want %v", opts, err, !same, same)
		}
	}
	m.Delivered("delivered", "none", "mx", "pkix", "example.org")
	got := parse(t, expose(t, reg))["postern_deliveries_total"].samples
	key := series("postern_deliveries_total", lbl("outcome", "delivered", "class", "none", "route", "mx", "verify", "pkix"))
	if len(got) != 1 || got[key] != 1 {
		t.Errorf("after the failed New: %v; want only %s = 1", got, key)
	}
}

// TestNewErrors: New refuses a nil registerer and bucket lists that are
// empty or not strictly increasing, registering nothing.
func TestNewErrors(t *testing.T) {
	if _, err := metrics.New(nil, metrics.Options{}); err == nil {
		t.Error("New(nil): no error")
	}
	for _, opts := range []metrics.Options{
		{AttemptBuckets: []float64{}},
		{AttemptBuckets: []float64{1, 1}},
		{EvaluationBuckets: []float64{0.1, 0.01}},
	} {
		reg := prometheus.NewRegistry()
		if _, err := metrics.New(reg, opts); err == nil || !strings.Contains(err.Error(), "Buckets") {
			t.Errorf("New(%+v): error %v, want one naming the bucket option", opts, err)
		}
		if fams, _ := reg.Gather(); len(fams) != 0 {
			t.Errorf("New(%+v) failed but registered %d families", opts, len(fams))
		}
	}
}

// TestBuckets: custom buckets are used as given.
func TestBuckets(t *testing.T) {
	m, reg := newMetrics(t, metrics.Options{AttemptBuckets: []float64{1, 10}, EvaluationBuckets: []float64{0.5}})
	m.Attempt("mx", 5, true)
	m.Evaluation(0.1)
	got := parse(t, expose(t, reg))
	want := map[string]float64{}
	histogram(want, "postern_attempt_duration_seconds", lbl("route", "mx", "result", "ok"), []float64{1, 10}, []float64{5})
	if !maps.Equal(got["postern_attempt_duration_seconds"].samples, want) {
		t.Errorf("attempts: %v, want %v", got["postern_attempt_duration_seconds"].samples, want)
	}
	want = map[string]float64{}
	histogram(want, "postern_evaluation_duration_seconds", nil, []float64{0.5}, []float64{0.1})
	if !maps.Equal(got["postern_evaluation_duration_seconds"].samples, want) {
		t.Errorf("evaluation: %v, want %v", got["postern_evaluation_duration_seconds"].samples, want)
	}
}

// TestScrapeSources: the sources are read at each scrape (not copied when
// set), nil removes one, and the reload gauges are absent until the
// first load.
func TestScrapeSources(t *testing.T) {
	m, reg := newMetrics(t, metrics.Options{})
	absent := []string{"postern_connections_pooled", "postern_mta_sts_cache_policies", "postern_dns_cache_hits_total",
		"postern_policy_last_reload_successful", "postern_policy_last_reload_success_timestamp_seconds"}
	got := parse(t, expose(t, reg))
	for _, name := range absent {
		if _, ok := got[name]; ok {
			t.Errorf("%s present before its source is set", name)
		}
	}
	n := 1
	m.PoolSize(func() int { return n })
	m.DNSCache(func() metrics.DNSStats { return metrics.DNSStats{Hits: uint64(n)} })
	n = 5
	got = parse(t, expose(t, reg))
	if v := got["postern_connections_pooled"].samples["postern_connections_pooled{}"]; v != 5 {
		t.Errorf("pooled = %g, want 5 (the value at scrape time)", v)
	}
	if v := got["postern_dns_cache_hits_total"].samples["postern_dns_cache_hits_total{}"]; v != 5 {
		t.Errorf("dns hits = %g, want 5", v)
	}
	m.Reload(false, reloadAt)
	m.PoolSize(nil)
	got = parse(t, expose(t, reg))
	if _, ok := got["postern_connections_pooled"]; ok {
		t.Error("pooled present after PoolSize(nil)")
	}
	if v, ok := got["postern_policy_last_reload_successful"].samples["postern_policy_last_reload_successful{}"]; !ok || v != 0 {
		t.Errorf("last reload successful = %g (present %v) after a failed first load, want 0", v, ok)
	}
	if _, ok := got["postern_policy_last_reload_success_timestamp_seconds"]; ok {
		t.Error("success timestamp present with no successful load")
	}
	m.Reload(true, reloadAt)
	got = parse(t, expose(t, reg))
	if v := got["postern_policy_last_reload_successful"].samples["postern_policy_last_reload_successful{}"]; v != 1 {
		t.Errorf("last reload successful = %g after a good load, want 1", v)
	}
}

// TestConcurrent: recordings from many goroutines, on new and seen label
// sets at once, all count.
func TestConcurrent(t *testing.T) {
	m, reg := newMetrics(t, metrics.Options{})
	const goroutines, each = 8, 200
	routes := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for i := range each {
				r := routes[i%len(routes)]
				m.Delivered("delivered", "none", r, "pkix", "")
				m.Attempt(r, 0.1, true)
				m.ThrottleDeferred(r)
			}
		})
	}
	wg.Wait()
	got := parse(t, expose(t, reg))
	total := map[string]float64{}
	for _, name := range []string{"postern_deliveries_total", "postern_attempt_duration_seconds", "postern_throttle_deferrals_total"} {
		for s, v := range got[name].samples {
			if !strings.Contains(s, "_bucket") && !strings.Contains(s, "_sum") {
				total[name] += v
			}
		}
	}
	for name, v := range total {
		if v != goroutines*each {
			t.Errorf("%s: %g counted, want %d", name, v, goroutines*each)
		}
	}
	if len(total) != 3 {
		t.Errorf("families counted: %v", total)
	}
}

// TestHotPathAllocs: Delivered and Attempt on a label set already seen
// do not allocate.
func TestHotPathAllocs(t *testing.T) {
	m, _ := newMetrics(t, metrics.Options{DomainLabels: true})
	m.Delivered("delivered", "none", "mx", "pkix", "example.org")
	m.Attempt("mx", 0.5, true)
	if n := testing.AllocsPerRun(1000, func() { m.Delivered("delivered", "none", "mx", "pkix", "example.org") }); n != 0 {
		t.Errorf("Delivered: %g allocations per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.Attempt("mx", 0.5, true) }); n != 0 {
		t.Errorf("Attempt: %g allocations per call, want 0", n)
	}
}
