// Package stats summarises the repeated runs of the benchmark programs:
// the median, and the median with the range as the tables print it.
package stats

import (
	"fmt"
	"slices"
)

// Median is the median of v (0 for none), v unchanged.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// RangeText is the median of v formatted with format, followed by
// " (min–max)" unless every value formats the same (one run, or no
// spread at that precision).
func RangeText(v []float64, format string) string {
	m := fmt.Sprintf(format, Median(v))
	if len(v) == 0 {
		return m
	}
	lo, hi := fmt.Sprintf(format, slices.Min(v)), fmt.Sprintf(format, slices.Max(v))
	if lo == hi {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, lo, hi)
}
