package sched

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

const (
	benchItems = 100000
	benchDests = 1000
)

// fill queues benchItems items across benchDests destinations, due over
// the minute before now.
func fill(s *Scheduler, ids, dests []string) {
	for i := range benchItems {
		s.Add(ids[i], dests[i%benchDests], t0.Add(-time.Duration(i%60)*time.Second), nil)
	}
}

func names(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// BenchmarkAddNextDone is the steady state of a full queue: each op
// dispatches one of 100 000 due items spread over 1 000 destinations,
// re-adds it (a retry) and ends the dispatch.
func BenchmarkAddNextDone(b *testing.B) {
	ids, dests := names(benchItems, "%016d"), names(benchDests, "d%d.example")
	s, _ := newSched(100, 20)
	fill(s, ids, dests)
	b.ReportAllocs()
	for b.Loop() {
		dp, ok := s.TryNext()
		if !ok {
			b.Fatal("nothing dispatched")
		}
		s.Add(dp.ID, dp.Dest, t0, nil)
		s.Done(dp)
	}
}

// BenchmarkFill is the cost of queueing one item into a queue growing to
// 100 000 items over 1 000 destinations, and its memory.
func BenchmarkFill(b *testing.B) {
	ids, dests := names(benchItems, "%016d"), names(benchDests, "d%d.example")
	b.ReportAllocs()
	var perItem float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, _ := newSched(100, 20)
		fill(s, ids, dests)
		runtime.GC()
		runtime.ReadMemStats(&after)
		perItem = float64(after.HeapAlloc-before.HeapAlloc) / benchItems
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perItem, "B/item")
}

// TestMemoryPerItem holds the scheduler to its budget of a few hundred
// bytes per queued item (the strings themselves belong to the caller).
func TestMemoryPerItem(t *testing.T) {
	ids, dests := names(benchItems, "%016d"), names(benchDests, "d%d.example")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, _ := newSched(100, 20)
	fill(s, ids, dests)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	perItem := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / benchItems
	t.Logf("%.0f bytes per item", perItem)
	if perItem > 300 {
		t.Errorf("%.0f bytes per queued item, want at most 300", perItem)
	}
}
