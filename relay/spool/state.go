package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Status is where one recipient of a queued message stands.
type Status string

// Recipient statuses. Any status but StatusPending is final: the
// recipient is not tried again.
const (
	StatusPending   Status = ""          // not yet delivered; retried when due
	StatusDelivered Status = "delivered" // the next hop accepted it
	StatusFailed    Status = "failed"    // permanent failure (DSN sent per NOTIFY)
	StatusExpired   Status = "expired"   // the schedule's expire time passed
	StatusDeleted   Status = "deleted"   // removed by an operator
)

// Final reports whether a recipient in this status is done.
func (st Status) Final() bool { return st != StatusPending }

// State is the mutable part of a queued message: per recipient (by index
// into Envelope.Recipients) the result of the attempts so far, and
// whether the message is held. A message without a state file has the
// zero State: every recipient pending, never tried.
type State struct {
	Hold bool `json:"hold,omitempty"`
	// Rcpt maps a recipient index to its state; a missing index is a
	// pending recipient never tried (the zero RcptState).
	Rcpt map[int]RcptState `json:"rcpt,omitempty"`
}

// RcptState is the delivery state of one recipient.
type RcptState struct {
	Status      Status    `json:"status,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// LastError is the last reply or error, e.g. "451 4.3.0 try later".
	LastError string `json:"last_error,omitempty"`
	// LastClass is the failure class of the last attempt (the policy's
	// last_error word: "connection", "tls", ...), "" when none.
	LastClass string `json:"last_class,omitempty"`
	NotifyNum int    `json:"notify_num,omitempty"` // delay DSNs sent so far
	// Relayed is set when the recipient was handed to a next hop without
	// DSN support and a "relayed" DSN is owed or was sent (RFC 3461 4.2).
	Relayed bool `json:"relayed,omitempty"`
}

// Get returns the state of recipient i (the zero RcptState when absent).
func (st *State) Get(i int) RcptState { return st.Rcpt[i] }

// Set records the state of recipient i.
func (st *State) Set(i int, r RcptState) {
	if st.Rcpt == nil {
		st.Rcpt = map[int]RcptState{}
	}
	st.Rcpt[i] = r
}

// Done reports whether all n recipients are final.
func (st *State) Done(n int) bool {
	for i := range n {
		if !st.Rcpt[i].Status.Final() {
			return false
		}
	}
	return true
}

// WriteState replaces the state of message id: it writes tmp/ID.state
// and renames it over state/AB/ID, without fsync (a process crash keeps
// it; [Spool.Sync] makes it survive a power cut). Callers serialise the
// reads and writes of one message's state.
func (s *Spool) WriteState(id string, st *State) error {
	if !ValidID(id) {
		return fmt.Errorf("spool %s: write state %q: %w", s.dir, id, ErrBadID)
	}
	if err := s.writable(); err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("spool %s: write state %s: encode: %w", s.dir, id, err)
	}
	if err := s.ensureSubdir(dirState, subdir(id)); err != nil {
		return classify(fmt.Errorf("spool %s: write state %s: %w", s.dir, id, err))
	}
	tmp := filepath.Join(s.dir, dirTmp, id+".state")
	err = os.WriteFile(tmp, data, 0o600)
	if err == nil {
		err = s.fs.rename(tmp, s.statePath(id))
	}
	if err != nil {
		_ = s.fs.remove(tmp)
		return classify(fmt.Errorf("spool %s: write state %s: %w", s.dir, id, err))
	}
	return nil
}

// ReadState returns the state of message id; a message without a state
// file gets a zero State (all pending, never tried) and no error. A state
// file that does not decode gives an error wrapping [ErrCorrupt]: after a
// power cut an unsynced state file may be empty or torn.
func (s *Spool) ReadState(id string) (*State, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("spool %s: read state %q: %w", s.dir, id, ErrBadID)
	}
	data, err := os.ReadFile(s.statePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool %s: read state %s: %w", s.dir, id, err)
	}
	st, err := decodeState(data)
	if err != nil {
		return nil, fmt.Errorf("spool %s: read state %s: %w", s.dir, id, err)
	}
	return st, nil
}

// decodeState decodes the JSON of a state file; the error wraps
// [ErrCorrupt].
func decodeState(data []byte) (*State, error) {
	st := new(State)
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return st, nil
}

// Remove deletes message id from the queue: its state file, then its
// message file, without fsync (a power cut may bring it back: a
// duplicate, never a loss). Removing a message that is not queued
// returns an error wrapping [os.ErrNotExist].
func (s *Spool) Remove(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("spool %s: remove %q: %w", s.dir, id, ErrBadID)
	}
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.fs.remove(s.statePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool %s: remove %s: %w", s.dir, id, err)
	}
	if err := s.fs.remove(s.msgPath(id)); err != nil {
		return fmt.Errorf("spool %s: remove %s: %w", s.dir, id, err)
	}
	return nil
}
