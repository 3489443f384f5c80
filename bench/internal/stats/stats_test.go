package stats

import "testing"

func TestMedianAndRange(t *testing.T) {
	for _, c := range []struct {
		v      []float64
		median float64
		text   string
	}{
		{nil, 0, "0"},
		{[]float64{5}, 5, "5"},
		{[]float64{3, 1, 2}, 2, "2 (1–3)"},
		{[]float64{4, 1, 3, 2}, 2.5, "2 (1–4)"},
		{[]float64{7, 7}, 7, "7"},
	} {
		if got := Median(c.v); got != c.median {
			t.Errorf("Median(%v) = %v, want %v", c.v, got, c.median)
		}
		if got := RangeText(c.v, "%.0f"); got != c.text {
			t.Errorf("RangeText(%v) = %q, want %q", c.v, got, c.text)
		}
	}
}
