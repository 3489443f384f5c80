package metrics_test

import (
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/mtasts"
)

// TestVocabulary: every word the engine and the transport can pass is
// in its label's closed list, so none is counted as "other": the status
// texts, engine.Classes, the verification methods and the MTA-STS fetch
// failure types. It fails when one of them gains a word this package
// does not know.
func TestVocabulary(t *testing.T) {
	m, reg := newMetrics(t, metrics.Options{})
	var outcomes []string
	for _, r := range []engine.Result{{Local: true}, {Result: transport.Result{Status: transport.StatusDelivered}},
		{Result: transport.Result{Status: transport.StatusTemporary}}, {Result: transport.Result{Status: transport.StatusPermanent}}} {
		outcomes = append(outcomes, r.StatusText())
	}
	verifies := []string{string(transport.VerifiedNone), string(transport.VerifiedPKIX), string(transport.VerifiedDANE),
		string(transport.VerifiedMTASTS), "opportunistic"}
	for _, o := range outcomes {
		m.Delivered(o, "none", "mx", "none", "")
	}
	for _, c := range engine.Classes {
		m.Delivered("temporary", string(c), "mx", "none", "")
	}
	for _, v := range verifies {
		m.Delivered("delivered", "none", "mx", v, "")
	}
	fetches := []string{metrics.FetchOK, mtasts.ResultWebPKIInvalid, mtasts.ResultPolicyInvalid, mtasts.ResultFetchError}
	for _, f := range fetches {
		m.MTASTSFetch(f)
	}
	got := parse(t, expose(t, reg))
	for s := range got["postern_deliveries_total"].samples {
		for _, label := range []string{`outcome="other"`, `class="other"`, `verify="other"`} {
			if strings.Contains(s, label) {
				t.Errorf("%s: a word of the engine counted as other", s)
			}
		}
	}
	// Distinct words make distinct series (none is folded into
	// another): the three loops' series, less the two they share
	// (temporary and delivered, class none, verify none).
	if n, want := len(got["postern_deliveries_total"].samples), len(outcomes)+len(engine.Classes)+len(verifies)-2; n != want {
		t.Errorf("%d delivery series, want %d", n, want)
	}
	for _, f := range fetches {
		if v := got["postern_mta_sts_fetches_total"].samples[series("postern_mta_sts_fetches_total", lbl("result", f))]; v != 1 {
			t.Errorf("fetch result %q counted %g times, want 1", f, v)
		}
	}
}
