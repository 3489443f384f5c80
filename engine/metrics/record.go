package metrics

import "time"

// Delivered counts one recipient's final result of a Deliver call, on
// postern_deliveries_total:
//
//   - outcome is engine.Result.StatusText(): delivered, temporary,
//     permanent or local;
//   - class is the result's failure class (string(Result.Class), one of
//     engine.Classes; "" counts as none);
//   - route is Result.Route ("" when routing failed);
//   - verify is how the server's certificate was checked:
//     string(Result.TLS.Verified), none, pkix, dane or mta-sts ("" counts
//     as none), or opportunistic;
//   - domain is the recipient's domain, used only with
//     Options.DomainLabels.
//
// Words outside these lists count as [Other].
func (m *Metrics) Delivered(outcome, class, route, verify, domain string) {
	if m == nil {
		return
	}
	k := deliveryKey{outcome: pick(outcomeWords, outcome), class: orNone(classWords, class),
		route: name(route), verify: orNone(verifyWords, verify)}
	if m.domains {
		k.domain = domainLabel(domain)
	}
	c, ok := m.deliveryChildren.get(k)
	if !ok {
		if m.domains {
			c = m.deliveries.WithLabelValues(k.outcome, k.class, k.route, k.verify, k.domain)
		} else {
			c = m.deliveries.WithLabelValues(k.outcome, k.class, k.route, k.verify)
		}
		c = m.deliveryChildren.put(k, c)
	}
	c.Inc()
}

// Attempt observes one delivery attempt of a group of recipients on
// route (the transport's Deliver call, every host and connection it
// tried included) on postern_attempt_duration_seconds. ok is true when
// the message was accepted for at least one recipient.
func (m *Metrics) Attempt(route string, seconds float64, ok bool) {
	if m == nil {
		return
	}
	k := attemptKey{route: name(route), ok: ok}
	o, found := m.attemptChildren.get(k)
	if !found {
		result := resultFailed
		if ok {
			result = resultOK
		}
		o = m.attemptChildren.put(k, m.attempts.WithLabelValues(k.route, result))
	}
	o.Observe(seconds)
}

// Evaluation observes the policy evaluation of one message on
// postern_evaluation_duration_seconds.
func (m *Metrics) Evaluation(seconds float64) {
	if m == nil {
		return
	}
	m.evaluation.Observe(seconds)
}

// ConnOpened counts an SMTP or LMTP connection opened: it adds one to
// postern_connections_opened_total and to postern_connections_open.
// Every ConnOpened must be followed, when the connection is closed, by
// one [Metrics.ConnClosed].
func (m *Metrics) ConnOpened() {
	if m == nil {
		return
	}
	m.connsOpened.Inc()
	m.connsOpen.Inc()
}

// ConnClosed takes a closed connection off postern_connections_open.
func (m *Metrics) ConnClosed() {
	if m == nil {
		return
	}
	m.connsOpen.Dec()
}

// ThrottleWait observes, on postern_throttle_wait_seconds, the wait a
// throttle (named as in the policy) asked for when it was full: the retry
// delay of the recipients it held back, once per full acquire.
func (m *Metrics) ThrottleWait(throttle string, seconds float64) {
	if m == nil {
		return
	}
	k := name(throttle)
	o, ok := m.waitChildren.get(k)
	if !ok {
		o = m.waitChildren.put(k, m.throttleWait.WithLabelValues(k))
	}
	o.Observe(seconds)
}

// ThrottleDeferred counts, on postern_throttle_deferrals_total, one
// recipient deferred because a throttle (named as in the policy) was full.
func (m *Metrics) ThrottleDeferred(throttle string) {
	if m == nil {
		return
	}
	k := name(throttle)
	c, ok := m.deferralChildren.get(k)
	if !ok {
		c = m.deferralChildren.put(k, m.throttleDeferrals.WithLabelValues(k))
	}
	c.Inc()
}

// MTASTSFetch counts one MTA-STS policy fetch on
// postern_mta_sts_fetches_total: result is [FetchOK], or the failure's
// RFC 8460 type (mtasts.FetchError.Type).
func (m *Metrics) MTASTSFetch(result string) {
	if m == nil {
		return
	}
	m.fetchChildren[pick(fetchWords, result)].Inc()
}

// DANE counts one DANE outcome on postern_dane_results_total: the
// decision for one host of a delivery plan ([DANEActive], or the reason it
// is not active), or a verification failure ([DANEVerifyFailed]).
func (m *Metrics) DANE(result string) {
	if m == nil {
		return
	}
	m.daneChildren[pick(daneWords, result)].Inc()
}

// Reload records a policy load or reload, the first one included, that
// finished at at: postern_policy_reloads_total counts it,
// postern_policy_last_reload_successful says whether it worked, and a good
// one sets postern_policy_last_reload_success_timestamp_seconds.
func (m *Metrics) Reload(ok bool, at time.Time) {
	if m == nil {
		return
	}
	result := resultFailed
	if ok {
		result = resultOK
	}
	m.reloadChildren[result].Inc()
	m.reload.mu.Lock()
	defer m.reload.mu.Unlock()
	m.reload.loaded, m.reload.ok = true, ok
	if ok {
		m.reload.succeeded, m.reload.lastSuccess = true, at
	}
}
