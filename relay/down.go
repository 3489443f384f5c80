package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/postern-mta/postern/internal/safefile"
)

// downFile is SPOOL/down.json: the destinations that were down, kept
// across restarts. A deferral to a down destination writes nothing per
// message, so without it a restart during an outage would find every
// waiting message due and defer each once more; with it, recovery marks
// those destinations down again and schedules their messages for the end
// of the down period, when one probe goes.
const downFile = "down.json"

// maxDownFile bounds what is read back (a few hundred bytes per
// destination).
const maxDownFile = 8 << 20

// downEntry is one down destination.
type downEntry struct {
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
}

// downStore keeps downFile in step with the scheduler's down
// destinations. It is written (tmp and rename, without fsync, as the
// state files) only when the set changes: a destination goes down, comes
// up, or starts a new down period. Losing it costs one deferral pass at
// the next start, never a message.
type downStore struct {
	path string
	log  *slog.Logger
	mu   sync.Mutex
	m    map[string]downEntry
}

// newDownStore reads the destinations down in dir's downFile at now
// (those whose period has ended are forgotten). A missing or unreadable
// file is an empty store; an unreadable one is logged and replaced.
func newDownStore(dir string, now time.Time, log *slog.Logger) *downStore {
	s := &downStore{path: filepath.Join(dir, downFile), log: log, m: map[string]downEntry{}}
	data, err := safefile.Read(s.path, maxDownFile)
	if errors.Is(err, os.ErrNotExist) {
		return s
	}
	var m map[string]downEntry
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		log.Warn("down destinations: unreadable file ignored", "path", s.path, "err", err)
		return s
	}
	for dest, e := range m {
		if e.Until.After(now) {
			s.m[dest] = e
		}
	}
	return s
}

// entries returns a copy of the down destinations.
func (s *downStore) entries() map[string]downEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m)
}

// until is the end of dest's down period; zero when it is not down.
func (s *downStore) until(dest string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[dest].Until
}

// set records dest down until until.
func (s *downStore) set(dest string, until time.Time, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[dest] = downEntry{Until: until, Reason: reason}
	s.save()
}

// clear records dest up; cheap when it was not down.
func (s *downStore) clear(dest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[dest]; !ok {
		return
	}
	delete(s.m, dest)
	s.save()
}

// clearAll records every destination up.
func (s *downStore) clearAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) == 0 {
		return
	}
	clear(s.m)
	s.save()
}

// save writes the file; s.mu is held. A failure is logged: the file is
// an optimisation.
func (s *downStore) save() {
	if err := s.write(); err != nil {
		s.log.Warn("down destinations: cannot write the file", "path", s.path, "err", err)
	}
}

func (s *downStore) write() error {
	if len(s.m) == 0 {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.Marshal(s.m)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return nil
}
