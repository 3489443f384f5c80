package control

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"time"
)

// Recipient statuses ([RecipientInfo.Status]): the spool's statuses by
// name. Every status but pending is final.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
	StatusExpired   = "expired"
	StatusDeleted   = "deleted"
)

// States counted by [Stats.ByState]: a pending recipient is "held" when
// its message is held, "active" while a delivery to it is in flight (the
// daemon only), "deferred" when it was tried before, and "pending" when
// never tried; a final recipient counts under its status.
const (
	StatePending  = "pending"
	StateDeferred = "deferred"
	StateHeld     = "held"
	StateActive   = "active"
)

// RecipientInfo is one recipient of a queued message.
type RecipientInfo struct {
	Addr string `json:"addr"`
	// Status is pending, delivered, failed, expired or deleted.
	Status string `json:"status"`
	// Dest is the destination key the recipient is queued under (the
	// route name or the recipient domain); "" when not known (offline).
	Dest        string    `json:"dest,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // the last reply or error, e.g. "451 4.3.0 try later"
}

// Deferred reports whether r is pending and was tried before.
func (r RecipientInfo) Deferred() bool {
	return r.Status == StatusPending && (r.Attempts > 0 || !r.NextAttempt.IsZero())
}

// MessageInfo is one queued message as the admin API shows it.
type MessageInfo struct {
	ID      string    `json:"id"`
	From    string    `json:"from"` // the reverse path; "" is the null sender
	Arrival time.Time `json:"arrival"`
	Size    int64     `json:"size"` // bytes of the stored message
	Held    bool      `json:"held,omitempty"`
	// Source is "" for mail received from a client, "dsn" for a
	// delivery status notification the relay generated.
	Source     string          `json:"source,omitempty"`
	Recipients []RecipientInfo `json:"recipients"`
}

// Filter selects queued messages. Each field that is set narrows the
// selection: IDs to those messages, Domain to messages with a recipient
// in that domain (compared without regard to ASCII case; subdomains do
// not match), Held to held messages, Deferred to messages with a
// deferred recipient ([RecipientInfo.Deferred]).
//
// List lists every message for an empty Filter. The verbs that change
// the queue (Flush, Hold) change nothing for a Filter that names neither
// IDs, nor a Domain, nor All, so that a forgotten selector cannot act on
// the whole queue; All selects every message. Flush with a Domain makes
// due only the recipients in that domain.
type Filter struct {
	IDs      []string `json:"ids,omitempty"`
	Domain   string   `json:"domain,omitempty"`
	Held     bool     `json:"held,omitempty"`
	Deferred bool     `json:"deferred,omitempty"`
	All      bool     `json:"all,omitempty"`
	// Limit caps the messages List returns, oldest first; 0 is no cap.
	Limit int `json:"limit,omitempty"`
}

// Selects reports whether f names messages for a verb that changes the
// queue: some IDs, a Domain, or All.
func (f Filter) Selects() bool { return len(f.IDs) > 0 || f.Domain != "" || f.All }

// Match reports whether m is one of the messages f selects (Limit and
// All aside).
func (f Filter) Match(m *MessageInfo) bool {
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, m.ID) {
		return false
	}
	if f.Held && !m.Held {
		return false
	}
	if f.Deferred && !slices.ContainsFunc(m.Recipients, RecipientInfo.Deferred) {
		return false
	}
	if f.Domain != "" && !slices.ContainsFunc(m.Recipients, func(r RecipientInfo) bool { return f.MatchDomain(r.Addr) }) {
		return false
	}
	return true
}

// MatchDomain reports whether the recipient addr is in f's Domain (true
// when f has none): the part after the last @, compared without regard
// to ASCII case and to a trailing dot.
func (f Filter) MatchDomain(addr string) bool {
	if f.Domain == "" {
		return true
	}
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return false
	}
	return strings.EqualFold(strings.TrimSuffix(addr[i+1:], "."), strings.TrimSuffix(f.Domain, "."))
}

// DestStats is the scheduler's view of one destination.
type DestStats struct {
	Dest      string `json:"dest"`
	Scheduled int    `json:"scheduled"` // waiting for their next attempt
	Ready     int    `json:"ready"`     // due, waiting for a worker
	Active    int    `json:"active"`    // deliveries in flight
	Down      bool   `json:"down,omitempty"`
}

// Stats summarises the queue.
type Stats struct {
	Messages   int `json:"messages"`
	Recipients int `json:"recipients"` // of the queued messages, final ones included
	// ByState counts the recipients by state: StatePending,
	// StateDeferred, StateHeld, StateActive, or a final status.
	ByState map[string]int `json:"by_state"`
	// Destinations are known to the daemon only (empty offline), busiest
	// first.
	Destinations     []DestStats `json:"destinations,omitempty"`
	OldestArrival    time.Time   `json:"oldest_arrival,omitzero"` // zero when the queue is empty
	DestinationsDown int         `json:"destinations_down"`
}

// Queue is what the running daemon, and the spool read offline, offer the
// admin commands. Counts are of messages changed. The methods taking
// IDs change the messages that are queued and, when some ID is not,
// return the count with an error wrapping [ErrNotFound].
type Queue interface {
	// List returns the messages f selects, in ID order (oldest first),
	// at most f.Limit of them when it is positive.
	List(ctx context.Context, f Filter) ([]MessageInfo, error)
	// Show returns message id; an error wrapping ErrNotFound when it is
	// not queued.
	Show(ctx context.Context, id string) (MessageInfo, error)
	// Body returns the stored message (header and body, exactly as it
	// will be sent), for `queue show --body`. The caller closes it.
	Body(ctx context.Context, id string) (io.ReadCloser, error)
	// Flush makes the deferred recipients of the messages f selects due
	// now (and clears down destinations).
	Flush(ctx context.Context, f Filter) (int, error)
	// Hold holds the messages f selects: they stay queued, not delivered,
	// until released.
	Hold(ctx context.Context, f Filter) (int, error)
	// Release undoes Hold.
	Release(ctx context.Context, ids []string) (int, error)
	// Delete removes messages from the queue; with bounce, a failure DSN
	// is sent to each sender first.
	Delete(ctx context.Context, ids []string, bounce bool) (int, error)
	// Stats summarises the queue.
	Stats(ctx context.Context) (Stats, error)
	// Reload reloads the policy like SIGHUP; when the new policy is
	// refused, the error's text lists every policy error.
	Reload(ctx context.Context) error
}

// ErrOffline is wrapped by the errors of the verbs that need the running
// daemon when there is none: those that change the queue, without
// --offline, and Reload.
var ErrOffline = errors.New("the relay daemon is not running")

// ErrNotFound is wrapped by the errors for a message that is not queued.
var ErrNotFound = errors.New("no such message in the queue")

// ErrNoDaemon is wrapped by a [Client]'s errors when nothing listens on
// its socket (no socket file, or a stale one): the request was not made.
var ErrNoDaemon = errors.New("no daemon is listening on the control socket")
