package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The states of a recipient in the queue.
const (
	statePending   = "pending"   // to be attempted (again)
	stateDelivered = "delivered" // accepted by the next hop
	stateBounced   = "bounced"   // failed for good: in a bounce, unless the sender is <>
	stateLocal     = "local"     // a local route: this program has no mailboxes
)

// queue is a toy mail queue: a directory with two files per message,
// ID.eml (the message as received) and ID.json (its envelope and delivery
// state). A message is queued once its .json exists: enqueue writes the
// .eml first and remove deletes the .json first, and every file is written
// under a temporary name, synced and renamed into place, so a crash leaves
// no half-written file under a queued name. One delivering process per
// directory: nothing here locks.
type queue struct {
	dir string
	now func() time.Time
}

// envelope is a queued message: ID.json.
type envelope struct {
	ID    string      `json:"id"`
	From  string      `json:"from"` // "" is the null sender: a notification
	Rcpts []recipient `json:"rcpts"`
	// Source is the policy's source variable: "dsn" for the notifications
	// this program queues.
	Source string `json:"source,omitempty"`
	Ret    string `json:"ret,omitempty"` // DSN RET: FULL or HDRS (RFC 3461)
	EnvID  string `json:"envid,omitempty"`
	// RetryNum counts the attempts made, NotifyNum the delay notifications
	// sent; LastError and LastStatus are the class and reply of the last
	// temporary failure.
	RetryNum    int       `json:"retry_num"`
	NotifyNum   int       `json:"notify_num"`
	LastError   string    `json:"last_error,omitempty"`
	LastStatus  string    `json:"last_status,omitempty"`
	QueuedAt    time.Time `json:"queued_at"`
	NextAttempt time.Time `json:"next_attempt"`
}

// recipient is one recipient of a queued message and the result of its
// last attempt.
type recipient struct {
	Addr   string `json:"addr"`
	Notify string `json:"notify,omitempty"` // DSN NOTIFY: "FAILURE,DELAY", "NEVER"...
	ORcpt  string `json:"orcpt,omitempty"`  // DSN ORCPT, the address only
	State  string `json:"state"`
	// Reply is the last result's reply ("550 5.1.1 no such user").
	Reply      string    `json:"reply,omitempty"`
	RetryAfter time.Time `json:"retry_after,omitzero"`
	RetryFrom  string    `json:"retry_from,omitempty"` // schedule, throttle, reply or queue
}

// enqueue gives env a new ID, queues it with the message body, due at
// once, and returns the ID.
func (q *queue) enqueue(env envelope, body []byte) (string, error) {
	env.ID = strings.ToLower(rand.Text()[:16]) // 80 random bits, file-name safe
	env.QueuedAt = q.now()
	env.NextAttempt = env.QueuedAt
	for i := range env.Rcpts {
		env.Rcpts[i].State = statePending
	}
	if err := writeFile(q.path(env.ID, ".eml"), body); err != nil {
		return "", err
	}
	return env.ID, q.save(&env)
}

// due returns the queued messages whose next attempt has come, the
// longest waiting first. An envelope that does not load is reported in
// the error and skipped: it does not hold up the others.
func (q *queue) due() ([]*envelope, error) {
	names, err := filepath.Glob(filepath.Join(q.dir, "*.json")) // temporary files start with a dot
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", q.dir, err)
	}
	var (
		out  []*envelope
		errs []error
	)
	for _, name := range names {
		env, err := q.load(name)
		if err != nil {
			errs = append(errs, err)
		} else if !env.NextAttempt.After(q.now()) {
			out = append(out, env)
		}
	}
	slices.SortFunc(out, func(a, b *envelope) int { return a.NextAttempt.Compare(b.NextAttempt) })
	return out, errors.Join(errs...)
}

// load reads one envelope file.
func (q *queue) load(name string) (*envelope, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	env := &envelope{}
	if err := json.Unmarshal(b, env); err != nil {
		return nil, fmt.Errorf("queue: %s: %w", name, err)
	}
	return env, nil
}

// body returns the message of a queued envelope.
func (q *queue) body(id string) ([]byte, error) {
	b, err := os.ReadFile(q.path(id, ".eml"))
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return b, nil
}

// settle records env after an attempt: it is removed when no recipient is
// pending, and otherwise due again at the earliest retry time of those
// that are.
func (q *queue) settle(env *envelope) error {
	var next time.Time
	for _, r := range env.Rcpts {
		if r.State == statePending && (next.IsZero() || r.RetryAfter.Before(next)) {
			next = r.RetryAfter
		}
	}
	if next.IsZero() {
		return q.remove(env.ID)
	}
	env.NextAttempt = next
	return q.save(env)
}

// save writes env's file.
func (q *queue) save(env *envelope) error {
	b, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return fmt.Errorf("queue: %s: %w", env.ID, err)
	}
	return writeFile(q.path(env.ID, ".json"), b)
}

// remove takes a message off the queue: the .json first, so that a crash
// in between leaves an .eml that is not queued rather than the reverse.
func (q *queue) remove(id string) error {
	if err := os.Remove(q.path(id, ".json")); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := os.Remove(q.path(id, ".eml")); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

func (q *queue) path(id, ext string) string { return filepath.Join(q.dir, id+ext) }

// writeFile writes data to path atomically: a temporary file in the same
// directory, synced, then renamed over path, and the directory synced so
// that the rename survives a crash too.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("queue: writing %s: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("queue: syncing %s: %w", filepath.Dir(path), err)
	}
	return nil
}
