package testbed

import "testing"

// TestFreePortNeverRepeats: a thousand calls give a thousand numbers (the
// kernel alone repeats one within a few hundred bind(0) calls).
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 1000 {
		p := FreePort(t, "127.0.0.1")
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
	}
}
