package sinkproc

import "testing"

// TestCountersReadsBothSinks: the counter lines of smtp-sink (no
// handshakes) and of the STARTTLS sink are both read, the last one wins.
func TestCountersReadsBothSinks(t *testing.T) {
	out := "sess=1 quit=0 mesg=0\rsess=21 quit=20 mesg=5000\r"
	if got, want := ParseCounts(out), (Counts{Sessions: 21, Messages: 5000}); got != want {
		t.Errorf("smtp-sink: %+v, want %+v", got, want)
	}
	out += "sess=21 quit=20 mesg=5000 full=4 resumed=16\n"
	if got, want := ParseCounts(out), (Counts{Sessions: 21, Messages: 5000, Full: 4, Resumed: 16}); got != want {
		t.Errorf("STARTTLS sink: %+v, want %+v", got, want)
	}
	if got := ParseCounts(""); got != (Counts{}) {
		t.Errorf("no counters line: %+v", got)
	}
}
