package relay

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDownStore: set and clear keep the file in step (gone when nothing
// is down), a new store reads back the periods not yet ended and forgets
// the others, and an unreadable file is ignored.
func TestDownStore(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	log := slog.New(slog.DiscardHandler)
	s := newDownStore(dir, now, log)
	s.set("route:a", now.Add(2*time.Minute), "refused")
	s.set("b.example", now.Add(time.Minute), "timeout")
	s.clear("c.example") // not down: nothing happens

	later := newDownStore(dir, now.Add(90*time.Second), log)
	got := later.entries()
	if len(got) != 1 || !got["route:a"].Until.Equal(now.Add(2*time.Minute)) || got["route:a"].Reason != "refused" {
		t.Fatalf("read back at +90s: %+v, want route:a only (b.example's period has ended)", got)
	}
	if u := later.until("b.example"); !u.IsZero() {
		t.Errorf("until(b.example) = %v, want zero", u)
	}

	s.clear("route:a")
	s.clear("b.example")
	if _, err := os.Stat(filepath.Join(dir, downFile)); !os.IsNotExist(err) {
		t.Errorf("the file stays with nothing down: %v", err)
	}
	s.set("route:a", now.Add(time.Minute), "x")
	s.clearAll()
	if _, err := os.Stat(filepath.Join(dir, downFile)); !os.IsNotExist(err) {
		t.Errorf("the file stays after clearAll: %v", err)
	}

	if err := os.WriteFile(filepath.Join(dir, downFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := newDownStore(dir, now, log).entries(); len(got) != 0 {
		t.Errorf("an unreadable file gave %+v, want nothing down", got)
	}
}
