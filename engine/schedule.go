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
}

// schedule evaluates the queue: settings for g (recipient phase, per
// group) and fails the group, class expired, when the message is older
// than queue.expire. It reports whether the group is still to be decided.
func (r *run) schedule(g *Group, tr *policies.Trace) bool {
	set, m := r.s.set, r.msg
	retry := eval(r, set.Queue.Retry, tr)
	notify := eval(r, set.Queue.Notify, tr)
	expire := eval(r, set.Queue.Expire, tr)
	age := time.Duration(m.QueueAge) * time.Second
	sc := &Schedule{Expire: Duration(expire), ExpiresIn: Duration(expire - age)}
	if len(retry) > 0 {
		sc.RetryIn = Duration(retry[min(max(m.RetryNum, 0), len(retry)-1)])
	}
	if n := max(m.NotifyNum, 0); n < len(notify) {
		sc.NotifyAt = Duration(notify[n])
		sc.NotifyDue = age >= notify[n]
	}
	g.Schedule = sc
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
func (g *Group) retryAfter(out []Result, now time.Time) {
	if g.Schedule == nil {
		return
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
