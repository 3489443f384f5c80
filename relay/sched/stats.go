package sched

import (
	"slices"
	"strings"
	"time"
)

// Stats is a snapshot of a [Scheduler], for metrics and `queue stats`.
type Stats struct {
	// Scheduled items wait for their due time; Ready ones are due and
	// wait for a slot; Active ones are being dispatched.
	Scheduled, Ready, Active int
	// Down is the number of destinations marked down.
	Down int
	// OldestDue is the earliest due time among Scheduled and Ready items
	// (zero when there are none): now minus it is how late the queue runs.
	OldestDue time.Time
	// Destinations has one entry per destination with items, active
	// dispatches or a down mark, sorted by Dest.
	Destinations []DestinationStats
}

// DestinationStats is the part of [Stats] for one destination.
type DestinationStats struct {
	Dest                     string
	Scheduled, Ready, Active int
	// OldestDue is the due time of its earliest waiting item (zero when
	// none).
	OldestDue time.Time
	// Down, Until and Reason are its down mark ([Scheduler.MarkDown]);
	// Until may have passed while it waits for its probe.
	Down   bool
	Until  time.Time
	Reason string
}

// Stats returns counts at the clock's current time. It walks the
// destinations and their due items: cheap enough for a scrape, not for
// every dispatch. It also forgets the down marks of destinations that
// have nothing queued and whose down period is over.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	st := Stats{Destinations: make([]DestinationStats, 0, len(s.dests))}
	for _, d := range s.dests {
		if s.gc(d, now); s.dests[d.name] != d {
			continue // an empty destination whose down period is over
		}
		ds := DestinationStats{
			Dest:   d.name,
			Ready:  d.items.countDue(0, key(now)),
			Active: d.active + d.deferring,
			Down:   d.down, Until: d.until, Reason: d.reason,
		}
		ds.Scheduled = len(d.items) - ds.Ready
		if len(d.items) > 0 {
			ds.OldestDue = d.head().it.due
			if st.OldestDue.IsZero() || ds.OldestDue.Before(st.OldestDue) {
				st.OldestDue = ds.OldestDue
			}
		}
		st.Scheduled += ds.Scheduled
		st.Ready += ds.Ready
		st.Active += ds.Active
		if d.down {
			st.Down++
		}
		st.Destinations = append(st.Destinations, ds)
	}
	slices.SortFunc(st.Destinations, func(a, b DestinationStats) int { return strings.Compare(a.Dest, b.Dest) })
	return st
}
