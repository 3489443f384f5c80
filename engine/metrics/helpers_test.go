package metrics_test

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/postern-mta/postern/engine/metrics"
)

// newMetrics makes a Metrics on a registry of its own.
func newMetrics(t testing.TB, opts metrics.Options) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// expose gathers reg and writes the text exposition format, as a scrape
// of promhttp would.
func expose(t testing.TB, reg prometheus.Gatherer) []byte {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatalf("encoding %s: %v", f.GetName(), err)
		}
	}
	return buf.Bytes()
}

// family is a parsed metric family: its type, help and samples.
type family struct {
	typ     dto.MetricType
	help    string
	samples map[string]float64 // by series: name{label="value",...}, labels sorted
}

// parse reads an exposition back with expfmt's text parser, flattening
// histograms into their _bucket, _sum and _count series.
func parse(t testing.TB, text []byte) map[string]family {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, text)
	}
	out := map[string]family{}
	for name, f := range fams {
		fam := family{typ: f.GetType(), help: f.GetHelp(), samples: map[string]float64{}}
		add := func(series string, v float64) {
			if _, dup := fam.samples[series]; dup {
				t.Errorf("series %s twice in the exposition", series)
			}
			fam.samples[series] = v
		}
		for _, m := range f.GetMetric() {
			labels := labelMap(m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(series(name, labels), m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(series(name, labels), m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				add(series(name+"_count", labels), float64(h.GetSampleCount()))
				add(series(name+"_sum", labels), h.GetSampleSum())
				for _, b := range h.GetBucket() {
					add(series(name+"_bucket", with(labels, "le", le(b.GetUpperBound()))), float64(b.GetCumulativeCount()))
				}
			default:
				t.Errorf("%s: unexpected type %v", name, f.GetType())
			}
		}
		out[name] = fam
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// with returns a copy of labels with k=v added.
func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// series is name{k="v",...} with the labels sorted: one key per series.
func series(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

func le(bound float64) string {
	if math.IsInf(bound, 1) {
		return "+Inf"
	}
	return fmt.Sprint(bound)
}

// histogram adds to want the series of a histogram with buckets (the
// +Inf bucket added) that observed obs, in that order.
func histogram(want map[string]float64, name string, labels map[string]string, buckets, obs []float64) {
	sum := 0.0
	for _, o := range obs {
		sum += o
	}
	want[series(name+"_count", labels)] = float64(len(obs))
	want[series(name+"_sum", labels)] = sum
	for _, b := range append(slices.Clone(buckets), math.Inf(1)) {
		n := 0
		for _, o := range obs {
			if o <= b {
				n++
			}
		}
		want[series(name+"_bucket", with(labels, "le", le(b)))] = float64(n)
	}
}

// lbl makes a label map from pairs.
func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}
