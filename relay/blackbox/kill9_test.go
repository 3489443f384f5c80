package blackbox_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// long reports whether the long variants were asked for
// (POSTERN_BLACKBOX_LONG=1).
func long() bool { return os.Getenv("POSTERN_BLACKBOX_LONG") == "1" }

// seed is POSTERN_BLACKBOX_SEED when set (to replay a run), else a new
// one; the test logs it.
func seed(t *testing.T) uint64 {
	if s := os.Getenv("POSTERN_BLACKBOX_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("POSTERN_BLACKBOX_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

var (
	seqSubject = regexp.MustCompile(`(?m)^Subject: seq (\d+)$`)
	seqEnd     = regexp.MustCompile(`(?m)^END seq (\d+)$`)
)

// TestKill9: clients send sequence-numbered messages while the relay is
// killed with SIGKILL at random moments and restarted on the same spool;
// a client retries every message whose final 250 it did not read. At the
// end every acknowledged message is at the sink (none missing, and the
// relay logged it sent), no spool file was found damaged, and the
// duplicates stay within the documented bound: per crash, the deliveries
// in flight (queue.workers) plus the messages acknowledged but not yet
// read by their client (one per client).
func TestKill9(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	const workers = 4
	clients, perClient, kills := 4, 100, 8
	if long() {
		clients, perClient, kills = 8, 250, 10
	}
	total := clients * perClient
	sd := seed(t)
	t.Logf("seed %d (POSTERN_BLACKBOX_SEED=%d picks the same kill points)", sd, sd)
	rng := rand.New(rand.NewPCG(sd, 0x6b696c6c39))

	policy := sinkPolicy("127.0.0.1", int(sink.Addr.Port()), fmt.Sprintf(", workers: %d", workers)) + "queue: {retry: [1s]}\n"
	r := newRelay(t, relayOptions{Policy: policy})
	r.Start()

	type ack struct {
		seq int
		id  string
	}
	acks := make(chan ack, total)
	var (
		retries atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	defer func() { stop.Store(true); wg.Wait() }()
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				seq := c*perClient + i
				body := message(fmt.Sprintf("seq %d", seq), 1500)
				for !stop.Load() {
					o := sendMail(r.Addr, "alice@sender.test", "bob@dest.test", body)
					if id := o.Accepted(); id != "" {
						acks <- ack{seq, id}
						break
					}
					// Refused, cut off or not listening (restarting):
					// not accepted, send it again. The pause only paces
					// the retries while the relay restarts.
					retries.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}

	acked := map[int]string{} // seq -> queue ID
	take := func(n int) {
		t.Helper()
		deadline := time.After(120 * time.Second)
		for len(acked) < n {
			select {
			case a := <-acks:
				if prev, dup := acked[a.seq]; dup {
					t.Fatalf("seq %d acknowledged twice (%s, %s): a client sent it again after a 250", a.seq, prev, a.id)
				}
				acked[a.seq] = a.id
			case <-deadline:
				t.Fatalf("only %d of %d messages acknowledged after 120 s", len(acked), n)
			}
		}
	}
	for range kills {
		take(min(total, len(acked)+5+rng.IntN(30)))
		// A random moment within the next 5 ms, so that kills land in
		// the middle of DATA, of a commit and of deliveries.
		time.Sleep(time.Duration(rng.IntN(5000)) * time.Microsecond)
		r.Kill9()
		r.Start()
	}
	take(total)
	stop.Store(true)
	wg.Wait()

	ids := map[string]int{}
	for seq, id := range acked {
		ids[id] = seq
	}
	sentIDs := func(recs []logRecord) map[string]bool {
		sent := map[string]bool{}
		for _, rec := range find(recs, "delivery", "status", "sent") {
			sent[rec["id"]] = true
		}
		return sent
	}
	drained := r.PollLog(60*time.Second, func(recs []logRecord) bool {
		sent := sentIDs(recs)
		for id := range ids {
			if !sent[id] {
				return false
			}
		}
		return len(msgFiles(t, r.Spool)) == 0
	})
	if !drained {
		sent := sentIDs(r.Records())
		for id, seq := range ids {
			if !sent[id] {
				t.Errorf("seq %d, acknowledged as %s, was never logged as sent within 60 s", seq, id)
			}
		}
		t.Errorf("msg/ still holds %d messages 60 s after the last client finished", len(msgFiles(t, r.Spool)))
	}
	r.Stop()
	// Nothing is left behind: no receipt in tmp/, no state of a
	// finished message.
	if left, _ := filepath.Glob(filepath.Join(r.Spool, "tmp", "*")); len(left) > 0 {
		t.Errorf("tmp/ holds %d files after the last stop: %q", len(left), left)
	}
	if left, _ := filepath.Glob(filepath.Join(r.Spool, "state", "*", "*")); len(left) > 0 {
		t.Errorf("state/ holds %d files with every message delivered: %q", len(left), left)
	}

	// Count the complete copies (the END line arrived) per sequence
	// number at the sink.
	copies := map[int]int{}
	partial := 0
	for _, m := range sink.Messages(t) {
		s := seqSubject.FindStringSubmatch(m.Data)
		e := seqEnd.FindStringSubmatch(m.Data)
		if s == nil || e == nil || s[1] != e[1] {
			partial++
			continue
		}
		n, _ := strconv.Atoi(s[1])
		if n < 0 || n >= total {
			t.Errorf("the sink got seq %d, which no client sent", n)
		}
		copies[n]++
	}
	var missing []int
	dups := 0
	for seq := range total {
		if _, ok := acked[seq]; ok && copies[seq] == 0 {
			missing = append(missing, seq)
		}
		if copies[seq] > 1 {
			dups += copies[seq] - 1
		}
	}
	slices.Sort(missing)
	for _, seq := range missing {
		t.Errorf("seq %d was acknowledged (queued as %s) but never reached the sink", seq, acked[seq])
	}
	recs := r.Records()
	for _, rec := range find(recs, "spool scanned") {
		if rec["corrupt"] != "0" {
			t.Errorf("a restart found damaged spool files: %v", rec)
		}
	}
	if n := len(find(recs, "postern relay started")); n != kills+1 {
		t.Errorf("%d starts logged, want %d", n, kills+1)
	}
	// Which duplicates were clients sending again (one seq queued under
	// several IDs), as far as the log tells: the rest were deliveries
	// repeated after a crash.
	queuedIDs := map[string]map[string]bool{}
	for _, rec := range find(recs, "queued") {
		if queuedIDs[rec["message_id"]] == nil {
			queuedIDs[rec["message_id"]] = map[string]bool{}
		}
		queuedIDs[rec["message_id"]][rec["id"]] = true
	}
	resent := 0
	for _, set := range queuedIDs {
		resent += len(set) - 1
	}
	bound := kills * (workers + clients)
	t.Logf("kill -9: %d kills, %d messages acknowledged, %d client retries, %d complete copies at the sink (%d partial), missing %d, duplicates %d (%d queued again by a client that missed its 250, %d delivered again after a crash; bound %d = kills × (workers %d + clients %d))",
		kills, len(acked), retries.Load(), sumValues(copies), partial, len(missing), dups, resent, dups-resent, bound, workers, clients)
	if dups > bound {
		t.Errorf("%d duplicates, more than the bound of %d", dups, bound)
	}
}

func sumValues(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
