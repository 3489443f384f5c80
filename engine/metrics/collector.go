package metrics

import "github.com/prometheus/client_golang/prometheus"

// DNSStats are the DNS cache's counters since it was created: the fields
// of transport/dns.Stats, which the engine copies (this package does not
// import the resolver).
type DNSStats struct {
	Hits       uint64 // answered from a fresh entry
	Misses     uint64 // no fresh entry
	Upstream   uint64 // questions sent upstream, prefetches included
	Collapsed  uint64 // misses that joined a question already in flight
	Errors     uint64 // upstream failures (NXDOMAIN and NODATA are answers)
	Stale      uint64 // positive answers served stale
	Prefetches uint64 // background refreshes started
	Entries    int    // entries held now, stale ones included
}

// The metrics read at scrape time from the sources the engine sets.
var (
	poolDesc = prometheus.NewDesc("postern_connections_pooled",
		"Idle connections kept in the pool for reuse.", nil, nil)
	mtastsCacheDesc = prometheus.NewDesc("postern_mta_sts_cache_policies",
		"MTA-STS policies in the cache, expired ones included.", nil, nil)
	reloadOKDesc = prometheus.NewDesc("postern_policy_last_reload_successful",
		"1 when the last policy load or reload succeeded, else 0 (absent before the first).", nil, nil)
	reloadTimeDesc = prometheus.NewDesc("postern_policy_last_reload_success_timestamp_seconds",
		"Unix time of the last successful policy load or reload (absent before the first).", nil, nil)
	dnsHitsDesc = prometheus.NewDesc("postern_dns_cache_hits_total",
		"DNS questions answered from a fresh cache entry.", nil, nil)
	dnsMissesDesc = prometheus.NewDesc("postern_dns_cache_misses_total",
		"DNS questions without a fresh cache entry.", nil, nil)
	dnsStaleDesc = prometheus.NewDesc("postern_dns_cache_stale_answers_total",
		"Positive DNS answers served from an expired cache entry because the upstream failed.", nil, nil)
	dnsCollapsedDesc = prometheus.NewDesc("postern_dns_cache_collapsed_total",
		"DNS cache misses that joined a question already in flight instead of asking again.", nil, nil)
	dnsPrefetchesDesc = prometheus.NewDesc("postern_dns_cache_prefetches_total",
		"Background refreshes of DNS cache entries near their expiry.", nil, nil)
	dnsEntriesDesc = prometheus.NewDesc("postern_dns_cache_entries",
		"Entries in the DNS cache, stale ones included.", nil, nil)
	dnsUpstreamDesc = prometheus.NewDesc("postern_dns_upstream_queries_total",
		"DNS questions sent to the upstream resolvers, prefetches included.", nil, nil)
	dnsErrorsDesc = prometheus.NewDesc("postern_dns_upstream_errors_total",
		"Upstream DNS failures (SERVFAIL, timeout, bogus); NXDOMAIN and NODATA are answers, not errors.", nil, nil)
)

// PoolSize sets the source of postern_connections_pooled, the number of
// idle pooled connections, read at each scrape. nil removes it (the
// metric is absent until a source is set). The engine sums its transport
// clients' pools.
func (m *Metrics) PoolSize(f func() int) {
	if m != nil {
		m.poolSize.Store(&f)
	}
}

// MTASTSCache sets the source of postern_mta_sts_cache_policies, the
// number of policies in the MTA-STS cache, read at each scrape; nil
// removes it.
func (m *Metrics) MTASTSCache(f func() int) {
	if m != nil {
		m.mtastsCache.Store(&f)
	}
}

// DNSCache sets the source of the postern_dns_* metrics, read once per
// scrape (so they agree with each other): typically a function copying
// the resolver cache's Stats(). nil removes it. Setting it again, after a
// reload that made a new cache, replaces the source; the counters then
// restart from the new cache's, which Prometheus' rate() reads as a
// counter reset.
func (m *Metrics) DNSCache(f func() DNSStats) {
	if m != nil {
		m.dnsStats.Store(&f)
	}
}

// collector is the prometheus.Collector of a Metrics, registered once by
// New so that registration is all or nothing.
type collector Metrics

// Describe sends the descriptors of every metric, those read at scrape
// time included (the registry checks Collect against them).
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range c.vectors() {
		v.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{poolDesc, mtastsCacheDesc, reloadOKDesc, reloadTimeDesc, dnsHitsDesc,
		dnsMissesDesc, dnsStaleDesc, dnsCollapsedDesc, dnsPrefetchesDesc, dnsEntriesDesc, dnsUpstreamDesc, dnsErrorsDesc} {
		ch <- d
	}
}

// Collect sends the recorded metrics, then reads the sources set.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.vectors() {
		v.Collect(ch)
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	if f := c.poolSize.Load(); f != nil && *f != nil {
		gauge(poolDesc, float64((*f)()))
	}
	if f := c.mtastsCache.Load(); f != nil && *f != nil {
		gauge(mtastsCacheDesc, float64((*f)()))
	}
	if f := c.dnsStats.Load(); f != nil && *f != nil {
		s := (*f)()
		counter(dnsHitsDesc, s.Hits)
		counter(dnsMissesDesc, s.Misses)
		counter(dnsStaleDesc, s.Stale)
		counter(dnsCollapsedDesc, s.Collapsed)
		counter(dnsPrefetchesDesc, s.Prefetches)
		counter(dnsUpstreamDesc, s.Upstream)
		counter(dnsErrorsDesc, s.Errors)
		gauge(dnsEntriesDesc, float64(s.Entries))
	}
	c.reload.mu.Lock()
	loaded, ok, succeeded, last := c.reload.loaded, c.reload.ok, c.reload.succeeded, c.reload.lastSuccess
	c.reload.mu.Unlock()
	if loaded {
		v := 0.0
		if ok {
			v = 1
		}
		gauge(reloadOKDesc, v)
	}
	if succeeded {
		gauge(reloadTimeDesc, float64(last.Unix())+float64(last.Nanosecond())/1e9)
	}
}

// vectors are the recorded metrics.
func (c *collector) vectors() []prometheus.Collector {
	return []prometheus.Collector{c.deliveries, c.attempts, c.evaluation, c.connsOpen, c.connsOpened,
		c.throttleWait, c.throttleDeferrals, c.mtastsFetches, c.dane, c.reloads}
}
