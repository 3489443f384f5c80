package sinkproc

import (
	"fmt"
	"strings"
	"testing"
)

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

// TestCountsReadsTheLastLineOfALongOutput: Counts reads the tail of the
// output, and finds the counters further back when the tail has none.
func TestCountsReadsTheLastLineOfALongOutput(t *testing.T) {
	s := &Sink{out: &Buffer{}}
	for i := range 20000 {
		fmt.Fprintf(s.out, "sess=%d quit=%d mesg=%d\r", i/1000+1, i/1000, i)
	}
	if got, want := s.Counts(), (Counts{Sessions: 20, Messages: 19999}); got != want {
		t.Errorf("long output: %+v, want %+v", got, want)
	}
	fmt.Fprint(s.out, strings.Repeat("smtp-sink: warning: something else\n", 200))
	if got, want := s.Counts(), (Counts{Sessions: 20, Messages: 19999}); got != want {
		t.Errorf("counters before 7 KB of other output: %+v, want %+v", got, want)
	}
	if got, want := s.out.Tail(8), "ng else\n"; got != want {
		t.Errorf("Tail(8) = %q, want %q", got, want)
	}
	if got, want := (&Buffer{}).Tail(8), ""; got != want {
		t.Errorf("Tail(8) of nothing = %q, want %q", got, want)
	}
}
