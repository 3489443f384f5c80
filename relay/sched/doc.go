// Package sched is the relay's delivery scheduler: it decides which queued
// item is delivered next, and when, under a global limit on deliveries in
// flight and a limit per destination, in the spirit of RFC 5321 section
// 4.5.4.1 (retry per destination, not per message; wait between
// attempts; few connections per destination). It keeps everything in
// memory — the spool is the durable record; the daemon rebuilds the
// schedule from it at start-up — and knows nothing of SMTP: the daemon maps
// delivery results onto Add, MarkDown and MarkUp.
//
// # Items, scheduled and ready
//
// An item is one (message ID, destination key) pair with a due time and an
// opaque payload: a message whose recipients go to three destinations is
// three items, which may be in flight at the same time. Each destination
// keeps its waiting items in a min-heap by due time (ties: first added,
// first out); the destinations themselves wait in a heap ordered by their
// earliest item. That is the scheduled queue, and nothing in it costs
// anything until it is due: there is no goroutine or timer per item, only
// one timer, for the earliest due time, while [Scheduler.Next] waits.
// When a destination's earliest item comes due, the destination joins the
// ready line (a FIFO ring of destinations). [Scheduler.Next] takes the
// destination at the front, hands out its earliest item, and sends it to
// the back of the line if it has more due items. Destinations are thus
// served round robin — with one worker and two busy destinations the
// dispatches alternate — so one slow or busy destination cannot starve the
// others, however many items it has.
//
// # Limits
//
// A dispatch is handed out only while fewer than Options.Workers
// dispatches are active in all, and fewer than DestinationLimit(dest)
// normal dispatches are active for its destination; the limit is asked
// again each time, so a reload applies at once. A destination at its
// limit leaves the line until one of its dispatches is Done, which puts it
// back at the end. Every [Dispatch] is given back with [Scheduler.Done]:
// that frees its slots, and drops its item unless the daemon re-added it
// (with [Scheduler.Add], before or after Done) for a later attempt. An item
// is never handed out twice at once.
//
// # Down destinations
//
// A dispatch that got no SMTP reply at all (connection refused or timed
// out, a 421 greeting, no DNS answer) means the destination is down: the
// daemon calls [Scheduler.MarkDown] with the end of the down period. Until
// then the destination's due items are still handed out, in their turn,
// but as Down dispatches: the daemon defers them without connecting and
// re-adds them due at or after Dispatch.Until. They do not use the
// destination's slots, only a worker slot, since they cost no connection.
// Once the period is over, the first due item is handed out as a normal
// dispatch marked Probe and the others wait. The daemon reports the
// probe's outcome before its Done: [Scheduler.MarkUp] releases the waiting
// items, [Scheduler.MarkDown] starts another period. A probe Done with
// neither leaves the destination down, and the next due item becomes the
// next probe. So a dead destination with ten thousand queued messages
// costs one connection per period, not ten thousand. [Scheduler.Flush]
// clears the down state of the destinations it touches.
//
// # What the daemon does itself
//
// Hold and release are Remove and Add: a held message is simply not in the
// scheduler. Expiry, delay notifications and retry times are decided by
// the daemon with the stateless helpers [Backoff], [ThrottleDelay],
// [StartupDue], [Expired] and [NotifyDue]. For a shutdown, [Scheduler.Close]
// makes Next return [ErrClosed] and [Scheduler.Wait] waits for the active
// dispatches to be Done.
package sched
