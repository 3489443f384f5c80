package engine

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
)

// ClassExpired is the last_error class of a recipient whose message stayed
// queued longer than queue.expire: it fails permanently, unattempted.
const ClassExpired transport.Class = "expired"

// Schedule is what the queue: settings decide for a group, for the
// embedding MTA's queue: when to retry after a temporary failure, when a
// delay notification is due, when the message expires.
type Schedule struct {
	// RetryIn is the wait after a temporary failure of this attempt:
	// queue.retry's entry for retry_num (the last one repeats).
	RetryIn Duration `json:"retry_in"`
	// NotifyAt is the queue age at which the next delay notification is
	// due (queue.notify's entry for notify_num); 0 when none remains.
	NotifyAt Duration `json:"notify_at"`
	// NotifyDue says a temporary failure now calls for a delay
	// notification: the queue age has reached NotifyAt.
	NotifyDue bool `json:"notify_due"`
	// Expire is queue.expire; ExpiresIn what remains of it at this
	// attempt (negative once expired).
	Expire    Duration `json:"expire"`
	ExpiresIn Duration `json:"expires_in"`
	// DestinationConcurrency is relay.queue.destination-concurrency for
	// the group: how many deliveries `postern relay` runs at once to the
	// group's destination. Not part of the dry-run output.
	DestinationConcurrency int `json:"-"`
}

// schedule evaluates the queue: settings for g (recipient phase, per
// group) and fails the group, class expired, when the message is older
// than queue.expire. It reports whether the group is still to be decided.
func (r *run) schedule(g *Group, tr *policies.Trace) bool {
	set, m := r.s.set, r.msg
	// In the file's order, so the trace reads as the policy does.
	retry := eval(r, set.Queue.Retry, tr)
	notify := eval(r, set.Queue.Notify, tr)
	expire := eval(r, set.Queue.Expire, tr)
	g.Schedule = makeSchedule(retry, notify, expire, m)
	g.Schedule.DestinationConcurrency = eval(r, set.Relay().Queue.DestinationConcurrency, nil)
	age := time.Duration(m.QueueAge) * time.Second
	if age < expire {
		return true
	}
	g.Outcome = OutcomeFail
	g.Error = &GroupError{Class: ClassExpired, Message: fmt.Sprintf("the message has been queued for %s, longer than queue.expire (%s): it is not tried again",
		policies.FormatDuration(age), policies.FormatDuration(expire))}
	return false
}

// retryAfter fills in the retry time of g's temporary results: a time
// already set comes from a full throttle; else the server's reply may
// say when ("try again in 5 minutes"); else queue.retry decides. A
// temporary result also says whether a delay notification is due.
func (g *Group) retryAfter(out []Result, now time.Time, set *policies.Set, msg *Message) {
	if g.Schedule == nil {
		// Failed before its schedule was decided (a route that failed to
		// evaluate, a panic): the schedule as written when it is a
		// literal, else its default.
		g.Schedule = literalSchedule(set, msg)
	}
	for i := range out {
		res := &out[i]
		if res.Status != transport.StatusTemporary || res.Local {
			continue
		}
		res.NotifyDelay = g.Schedule.NotifyDue
		res.ExpiresAt = now.Add(time.Duration(g.Schedule.ExpiresIn))
		switch {
		case !res.RetryAfter.IsZero():
			res.RetryFrom = RetryFromThrottle
		default:
			if d, ok := replyRetryHint(res.Code, res.Text); ok {
				res.RetryAfter, res.RetryFrom = now.Add(d), RetryFromReply
			} else {
				res.RetryAfter, res.RetryFrom = now.Add(time.Duration(g.Schedule.RetryIn)), RetryFromSchedule
			}
		}
	}
}

// literalSchedule is the schedule of a group that failed before its own
// was decided: each queue setting's literal, or its default when it is
// computed (nothing is known to compute it with).
func literalSchedule(set *policies.Set, m *Message) *Schedule {
	lit := func(v *policies.Value[[]time.Duration]) []time.Duration {
		if l, ok := v.Literal(); ok {
			return l
		}
		return v.Default()
	}
	expire, ok := set.Queue.Expire.Literal()
	if !ok {
		expire = set.Queue.Expire.Default()
	}
	return makeSchedule(lit(set.Queue.Retry), lit(set.Queue.Notify), expire, m)
}

// makeSchedule is the schedule of message m under retry, notify and
// expire: the retry for its retry_num (the last repeats), the
// notification for its notify_num, what remains of expire.
func makeSchedule(retry, notify []time.Duration, expire time.Duration, m *Message) *Schedule {
	age := time.Duration(m.QueueAge) * time.Second
	sc := &Schedule{Expire: Duration(expire), ExpiresIn: Duration(expire - age)}
	if len(retry) > 0 {
		sc.RetryIn = Duration(retry[min(max(m.RetryNum, 0), len(retry)-1)])
	}
	if n := max(m.NotifyNum, 0); n < len(notify) {
		sc.NotifyAt, sc.NotifyDue = Duration(notify[n]), age >= notify[n]
	}
	return sc
}

// Where a temporary result's RetryAfter comes from.
const (
	RetryFromSchedule = "schedule" // queue.retry
	RetryFromThrottle = "throttle" // a full throttle's estimate (or its store's failure)
	RetryFromReply    = "reply"    // the server's reply said when
)

// retryHint finds a wait in a reply: "try again in 5 minutes", "retry in
// 300 seconds", "please come back in 00:05:00" (milter-greylist), "retry
// after 60s".
var retryHint = regexp.MustCompile(`(?i)\b(?:try again|retry|come back|wait|deferred)\b[^0-9]{0,24}?\b(?:in|after|for)\s+(?:(\d{1,2}):(\d{2}):(\d{2})\b|(\d{1,6})\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b)`)

// replyRetryHint reads the wait a 4xx reply asks for, from 1 second to a
// day; a wait outside that range, or none, is not a hint.
func replyRetryHint(code int, text string) (time.Duration, bool) {
	if code < 400 || code > 499 {
		return 0, false
	}
	m := retryHint.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	var d time.Duration
	if m[1] != "" {
		h, _ := strconv.Atoi(m[1])
		mi, _ := strconv.Atoi(m[2])
		s, _ := strconv.Atoi(m[3])
		d = time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(s)*time.Second
	} else {
		n, _ := strconv.Atoi(m[4])
		unit := time.Second
		switch u := strings.ToLower(m[5]); {
		case strings.HasPrefix(u, "m"):
			unit = time.Minute
		case strings.HasPrefix(u, "h"):
			unit = time.Hour
		}
		d = time.Duration(n) * unit
	}
	if d < time.Second || d > 24*time.Hour {
		return 0, false
	}
	return d, true
}
