// Package suggest finds the known word a mistyped one was meant to be,
// for "did you mean" hints.
package suggest

// Closest returns the word of the lists closest to w, when it is close
// enough to be a typo (fewer edits than a third of w's length, and at
// least one); "" otherwise. Earlier words win ties.
func Closest(w string, lists ...[]string) string {
	best, bestD := "", max(2, len(w)/3+1)
	for _, list := range lists {
		for _, k := range list {
			if d := Distance(w, k); d < bestD {
				best, bestD = k, d
			}
		}
	}
	return best
}

// Distance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of neighbours
// ("prot" is one edit from "port").
func Distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+c)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
