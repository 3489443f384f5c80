// Package metrics records what an embedded Postern engine does as
// Prometheus metrics: deliveries by outcome, failure class, route and TLS
// verification; attempt and policy-evaluation latencies; SMTP connections
// open and pooled; throttle waits and deferrals; the DNS cache; MTA-STS
// policy fetches and cache (RFC 8461, failures named as in RFC 8460);
// DANE outcomes (RFC 7672); policy reloads.
//
// Nothing is global: [New] registers every metric on the
// prometheus.Registerer the embedder passes, and two engines use two
// registries (or one registry wrapped with prometheus.WrapRegistererWith
// to tell them apart). The label sets are bounded: words with a closed
// vocabulary (outcomes, classes, verification methods, results) are
// mapped onto it, anything else becoming [Other]; route and throttle
// names come from the policy. No metric has a recipient label, and a
// domain label exists only when the embedder opts in with
// [Options.DomainLabels], and then on postern_deliveries_total only.
//
// A nil *[Metrics] records nothing, so the engine calls its methods
// unconditionally. The methods are safe for concurrent use, and
// [Metrics.Delivered] and [Metrics.Attempt], called once per recipient and
// once per attempt, do not allocate once the label set has been seen.
//
// The metrics (name, type, labels):
//
//	postern_deliveries_total                              counter    outcome, class, route, verify [, domain]
//	postern_attempt_duration_seconds                      histogram  route, result (ok, failed)
//	postern_evaluation_duration_seconds                   histogram
//	postern_connections_open                              gauge
//	postern_connections_opened_total                      counter
//	postern_connections_pooled                            gauge      (read at scrape)
//	postern_throttle_wait_seconds                         histogram  throttle
//	postern_throttle_deferrals_total                      counter    throttle
//	postern_dns_cache_hits_total                          counter    (read at scrape)
//	postern_dns_cache_misses_total                        counter    (read at scrape)
//	postern_dns_cache_stale_answers_total                 counter    (read at scrape)
//	postern_dns_cache_collapsed_total                     counter    (read at scrape)
//	postern_dns_cache_prefetches_total                    counter    (read at scrape)
//	postern_dns_cache_entries                             gauge      (read at scrape)
//	postern_dns_upstream_queries_total                    counter    (read at scrape)
//	postern_dns_upstream_errors_total                     counter    (read at scrape)
//	postern_mta_sts_fetches_total                         counter    result
//	postern_mta_sts_cache_policies                        gauge      (read at scrape)
//	postern_dane_results_total                            counter    result
//	postern_policy_reloads_total                          counter    result (ok, failed)
//	postern_policy_last_reload_successful                 gauge      (after the first load)
//	postern_policy_last_reload_success_timestamp_seconds  gauge      (after the first good load)
package metrics
