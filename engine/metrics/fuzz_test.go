package metrics_test

import (
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/postern-mta/postern/engine/metrics"
)

// The closed lists, as the exposition must show them.
var closed = map[string][]string{
	"outcome": {"delivered", "temporary", "permanent", "local", "other"},
	"class": {"none", "dns", "connection", "tls", "dane", "mta-sts", "unexpected-reply", "rate", "concurrency",
		"io", "loop", "policy", "store", "expired", "other"},
	"verify": {"none", "pkix", "dane", "mta-sts", "opportunistic", "other"},
	"result": {"ok", "failed", "sts-webpki-invalid", "sts-policy-invalid", "sts-policy-fetch-error", "active",
		"disabled", "insecure", "no-records", "unusable", "lookup-failed", "verify-failed", "other"},
}

// FuzzLabels: whatever strings the engine passes, recording does not
// panic (Prometheus panics on invalid UTF-8 in a label), the registry
// gathers, every label value is valid UTF-8, and closed labels keep to
// their lists.
func FuzzLabels(f *testing.F) {
	f.Add("delivered", "none", "mx", "pkix", "Example.org.", "per-domain", "ok")
	f.Add("", "", "", "", "", "", "")
	f.Add("x\xff", "\xc0", "r\xfe", "\x00", "d\xff.", "\xff", "sts-policy-invalid")
	f.Fuzz(func(t *testing.T, outcome, class, route, verify, domain, throttle, result string) {
		m, reg := newMetrics(t, metrics.Options{DomainLabels: true})
		m.Delivered(outcome, class, route, verify, domain)
		m.Attempt(route, 1, outcome == "")
		m.ThrottleWait(throttle, 1)
		m.ThrottleDeferred(throttle)
		m.MTASTSFetch(result)
		m.DANE(result)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatalf("Gather: %v", err)
		}
		for _, fam := range fams {
			for _, s := range fam.GetMetric() {
				for k, v := range labelMap(s) {
					if !utf8.ValidString(v) {
						t.Errorf("%s: label %s=%q is not UTF-8", fam.GetName(), k, v)
					}
					if list, ok := closed[k]; ok && !slices.Contains(list, v) {
						t.Errorf("%s: label %s=%q is outside its list", fam.GetName(), k, v)
					}
				}
			}
		}
	})
}
