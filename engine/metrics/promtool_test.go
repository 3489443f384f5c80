package metrics_test

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/internal/testbed"
)

// TestPromtool: Prometheus' own linter, `promtool check metrics`, finds
// no problem in the exposition (names, suffixes, units, help texts), with
// and without domain labels.
func TestPromtool(t *testing.T) {
	promtool := testbed.Require(t, "promtool")
	for _, domains := range []bool{false, true} {
		m, reg := newMetrics(t, metrics.Options{DomainLabels: domains})
		recordAll(m)
		text := expose(t, reg)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(text)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("DomainLabels %v: promtool check metrics: %v\n%s\nexposition:\n%s", domains, err, out, text)
		}
	}
}
