package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/postern-mta/postern/internal/jsonout"
	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/relay/control"
	"github.com/postern-mta/postern/relay/spool"
)

// queueVerbs are what `postern queue` does, its first argument.
var queueVerbs = []string{"list", "show", "flush", "hold", "release", "delete", "stats"}

// queueVerbFlags are the flags each verb takes besides --spool.
var queueVerbFlags = map[string][]string{
	"list":    {"json", "domain", "held", "deferred", "limit"},
	"show":    {"body"},
	"flush":   {"domain", "all", "offline"},
	"hold":    {"domain", "offline"},
	"release": {"offline"},
	"delete":  {"bounce", "offline"},
	"stats":   {"json"},
}

// queueReadOnly are the verbs that only read: without a daemon they read
// the spool files instead.
var queueReadOnly = []string{"list", "show", "stats"}

// defaultSpool is where --spool points unless told otherwise.
const defaultSpool = "/var/spool/postern"

// queueDestinations is how many destinations `queue stats` shows.
const queueDestinations = 20

// queueOptions are the flags of `postern queue`, all verbs together.
type queueOptions struct {
	spool, domain                                    string
	json, held, deferred, body, all, bounce, offline bool
	limit                                            int
}

func queueFlags() (*flag.FlagSet, *queueOptions) {
	fs := newFlagSet("queue")
	o := &queueOptions{}
	fs.StringVar(&o.spool, "spool", defaultSpool, "the relay's spool `directory`; its control.sock reaches the daemon")
	fs.BoolVar(&o.json, "json", false, "list, stats: print JSON (list: one array of messages)")
	fs.StringVar(&o.domain, "domain", "", "list, flush, hold: the messages with a recipient in `domain` (flush: only those recipients)")
	fs.BoolVar(&o.held, "held", false, "list: held messages only")
	fs.BoolVar(&o.deferred, "deferred", false, "list: messages with a deferred recipient only")
	fs.IntVar(&o.limit, "limit", 0, "list: at most `N` messages, oldest first (0: all)")
	fs.BoolVar(&o.body, "body", false, "show: print the stored message, exactly as it will be sent, instead of its details")
	fs.BoolVar(&o.all, "all", false, "flush: every message (the default when no ID or --domain is given)")
	fs.BoolVar(&o.bounce, "bounce", false, "delete: send each sender a failure DSN first (needs the daemon)")
	fs.BoolVar(&o.offline, "offline", false, "flush, hold, release, delete: change the spool files directly, without the daemon (takes the spool lock: stop the daemon first)")
	return fs, o
}

// queueRequest is one `postern queue` command, checked.
type queueRequest struct {
	verb   string
	o      *queueOptions
	ids    []string
	filter control.Filter
}

// cmdQueue lists and changes the relay's queue: through the daemon's
// control socket, or, when no daemon listens, from the spool files
// (read-only, or with --offline under the spool lock).
func cmdQueue(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs, o := queueFlags()
	fs.SetOutput(stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	req, msg := parseQueue(fs, o)
	if msg != "" {
		fmt.Fprintf(stderr, "postern queue%s: %s\n", prefixed(req.verb), msg)
		if req.verb == "" {
			fs.Usage()
		}
		return exitUsage
	}
	prog := "postern queue " + req.verb
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.offline {
		q, closer, err := control.OpenOffline(o.spool, true)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s\n", prog, escErr(err))
			return exitFailed
		}
		err = req.run(ctx, q, true, stdout)
		if cerr := closer.Close(); err == nil && cerr != nil {
			err = cerr
		}
		return queueExit(prog, err, stderr)
	}
	sock := filepath.Join(o.spool, "control.sock")
	c := control.Dial(sock)
	defer c.Close()
	err := req.run(ctx, c, false, stdout)
	if !errors.Is(err, control.ErrNoDaemon) {
		return queueExit(prog, err, stderr)
	}
	if !slices.Contains(queueReadOnly, req.verb) {
		fmt.Fprintf(stderr, "%s: no daemon on %s: to change the spool without it, run again with --offline (it takes the spool lock)\n",
			prog, textsafe.Escape(sock))
		return exitFailed
	}
	fmt.Fprintf(stderr, "postern queue: no daemon on %s: reading the spool directly\n", textsafe.Escape(sock))
	q, closer, err := control.OpenOffline(o.spool, false)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", prog, escErr(err))
		return exitFailed
	}
	defer closer.Close()
	return queueExit(prog, req.run(ctx, q, true, stdout), stderr)
}

// prefixed is " verb", or "" for no verb.
func prefixed(verb string) string {
	if verb == "" {
		return ""
	}
	return " " + verb
}

// queueExit prints err, if any, and returns the exit status.
func queueExit(prog string, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "%s: %s\n", prog, escErr(err))
	return exitFailed
}

// parseQueue checks the verb, its flags and its arguments; msg says
// what is wrong (req.verb is set when the verb was good).
func parseQueue(fs *flag.FlagSet, o *queueOptions) (req queueRequest, msg string) {
	if fs.NArg() == 0 {
		return req, "name what to do: " + strings.Join(queueVerbs, ", ")
	}
	verb := fs.Arg(0)
	if !slices.Contains(queueVerbs, verb) {
		return req, fmt.Sprintf("unknown action %q: want one of %s", textsafe.Escape(verb), strings.Join(queueVerbs, ", "))
	}
	req = queueRequest{verb: verb, o: o}
	fs.Visit(func(f *flag.Flag) {
		if msg == "" && f.Name != "spool" && !slices.Contains(queueVerbFlags[verb], f.Name) {
			msg = fmt.Sprintf("--%s is not a flag of %s", f.Name, verb)
		}
	})
	if msg != "" {
		return req, msg
	}
	args := fs.Args()[1:]
	if len(args) > 0 && (verb == "list" || verb == "stats") {
		return req, verb + " takes no queue IDs (show ID shows one message)"
	}
	for _, a := range args {
		if !spool.ValidID(a) {
			return req, fmt.Sprintf("%q is %s", textsafe.Escape(a), spool.ErrBadID)
		}
	}
	req.ids = args
	req.filter = control.Filter{IDs: args, Domain: o.domain}
	switch verb {
	case "list":
		req.filter = control.Filter{Domain: o.domain, Held: o.held, Deferred: o.deferred, Limit: o.limit}
		switch {
		case o.held && o.deferred:
			return req, "--held and --deferred exclude each other"
		case o.limit < 0:
			return req, "--limit must be 0 or more"
		}
	case "show":
		if len(args) != 1 {
			return req, "show takes one queue ID"
		}
	case "flush":
		if n := countTrue(len(args) > 0, o.domain != "", o.all); n > 1 {
			return req, "give queue IDs, --domain or --all, only one of them"
		}
		req.filter.All = len(args) == 0 && o.domain == ""
	case "hold":
		if countTrue(len(args) > 0, o.domain != "") != 1 {
			return req, "give queue IDs or --domain (one of them)"
		}
	case "release", "delete":
		if len(args) == 0 {
			return req, verb + " needs queue IDs"
		}
	}
	return req, ""
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// run does the request with q and prints the result on stdout. offline
// says q reads the spool files (destinations are then unknown). An
// error wrapping control.ErrNoDaemon comes before any output.
func (r *queueRequest) run(ctx context.Context, q control.Queue, offline bool, stdout io.Writer) error {
	o := r.o
	var (
		n    int
		err  error
		done string
	)
	switch r.verb {
	case "list":
		ms, err := q.List(ctx, r.filter)
		if err != nil {
			return err
		}
		if o.json {
			if ms == nil {
				ms = []control.MessageInfo{} // [], not null
			}
			return writeJSONLine(stdout, ms)
		}
		return writeQueueList(stdout, ms, r.filter.Limit)
	case "show":
		if o.body {
			rc, err := q.Body(ctx, r.ids[0])
			if err != nil {
				return err
			}
			defer rc.Close()
			if _, err := io.Copy(stdout, rc); err != nil {
				return fmt.Errorf("reading the message: %w", err)
			}
			return nil
		}
		m, err := q.Show(ctx, r.ids[0])
		if err != nil {
			return err
		}
		return writeQueueMessage(stdout, &m)
	case "stats":
		st, err := q.Stats(ctx)
		if err != nil {
			return err
		}
		if o.json {
			return writeJSONLine(stdout, st)
		}
		return writeQueueStats(stdout, &st, offline, time.Now())
	case "flush":
		n, err = q.Flush(ctx, r.filter)
		done = "flushed"
	case "hold":
		n, err = q.Hold(ctx, r.filter)
		done = "held"
	case "release":
		n, err = q.Release(ctx, r.ids)
		done = "released"
	case "delete":
		n, err = q.Delete(ctx, r.ids, o.bounce)
		done = "deleted"
	}
	if errors.Is(err, control.ErrNoDaemon) {
		return err
	}
	if n > 0 || err == nil {
		if _, werr := fmt.Fprintf(stdout, "%s %s\n", done, messages(n)); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// messages is "1 message", "2 messages".
func messages(n int) string {
	return fmt.Sprintf("%d %s", n, plural(n, "message", "messages"))
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := jsonout.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeQueueList prints the messages like Postfix's mailq: a block per
// message, a blank line between blocks, and a last line with the count.
func writeQueueList(w io.Writer, ms []control.MessageInfo, limit int) error {
	var b strings.Builder
	for i := range ms {
		writeMessageBlock(&b, &ms[i])
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "-- %s", messages(len(ms)))
	if limit > 0 && len(ms) == limit {
		fmt.Fprintf(&b, " (--limit %d: there may be more)", limit)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeQueueMessage prints one message's block.
func writeQueueMessage(w io.Writer, m *control.MessageInfo) error {
	var b strings.Builder
	writeMessageBlock(&b, m)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeMessageBlock writes the block of m: a line with its ID, size,
// arrival, sender and marks, then a line per recipient with its status
// (and attempts, next attempt, destination), followed by the last error
// in parentheses on a line of its own. Every string from outside is
// escaped.
func writeMessageBlock(b *strings.Builder, m *control.MessageInfo) {
	esc := textsafe.Escape
	fmt.Fprintf(b, "%s %9d %s <%s>", m.ID, m.Size, queueTime(m.Arrival), esc(m.From))
	if m.Held {
		b.WriteString(" held")
	}
	if m.Source != "" {
		fmt.Fprintf(b, " source=%s", esc(m.Source))
	}
	b.WriteString("\n")
	for _, r := range m.Recipients {
		status := r.Status
		if r.Deferred() {
			status = control.StateDeferred
		}
		fmt.Fprintf(b, "    <%s> %s", esc(r.Addr), esc(status))
		if r.Attempts > 0 {
			fmt.Fprintf(b, " attempts=%d", r.Attempts)
		}
		if !r.LastAttempt.IsZero() {
			fmt.Fprintf(b, " last=%s", queueTime(r.LastAttempt))
		}
		if !r.NextAttempt.IsZero() && r.Status == control.StatusPending {
			fmt.Fprintf(b, " next=%s", queueTime(r.NextAttempt))
		}
		if r.Dest != "" {
			fmt.Fprintf(b, " dest=%s", esc(r.Dest))
		}
		b.WriteString("\n")
		if r.LastError != "" {
			fmt.Fprintf(b, "        (%s)\n", esc(r.LastError))
		}
	}
}

// queueTime is t in UTC, to the second (RFC 3339).
func queueTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// stateOrder is the order `queue stats` lists states in; others follow
// by name.
var stateOrder = []string{
	control.StatePending, control.StateDeferred, control.StateHeld, control.StateActive,
	control.StatusDelivered, control.StatusFailed, control.StatusExpired, control.StatusDeleted,
}

// writeQueueStats prints the counts by state, the oldest message's age
// and the busiest destinations.
func writeQueueStats(w io.Writer, st *control.Stats, offline bool, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "messages: %d\nrecipients: %d\n", st.Messages, st.Recipients)
	states := slices.SortedFunc(maps.Keys(st.ByState), func(x, y string) int {
		ix, iy := slices.Index(stateOrder, x), slices.Index(stateOrder, y)
		if ix < 0 {
			ix = len(stateOrder)
		}
		if iy < 0 {
			iy = len(stateOrder)
		}
		return cmp.Or(cmp.Compare(ix, iy), strings.Compare(x, y))
	})
	for _, s := range states {
		fmt.Fprintf(&b, "  %s: %d\n", textsafe.Escape(s), st.ByState[s])
	}
	if st.OldestArrival.IsZero() {
		b.WriteString("oldest: -\n")
	} else {
		fmt.Fprintf(&b, "oldest: %s (%s ago)\n", queueTime(st.OldestArrival), now.Sub(st.OldestArrival).Round(time.Second))
	}
	if offline {
		b.WriteString("destinations: not known without the daemon\n")
	} else {
		fmt.Fprintf(&b, "destinations down: %d\n", st.DestinationsDown)
		ds := slices.Clone(st.Destinations)
		slices.SortStableFunc(ds, func(x, y control.DestStats) int {
			return cmp.Or(cmp.Compare(y.Scheduled+y.Ready+y.Active, x.Scheduled+x.Ready+x.Active), strings.Compare(x.Dest, y.Dest))
		})
		if len(ds) > queueDestinations {
			fmt.Fprintf(&b, "destinations (the %d busiest of %d):\n", queueDestinations, len(ds))
			ds = ds[:queueDestinations]
		} else {
			fmt.Fprintf(&b, "destinations: %d\n", len(ds))
		}
		for _, d := range ds {
			fmt.Fprintf(&b, "  %s scheduled=%d ready=%d active=%d", textsafe.Escape(d.Dest), d.Scheduled, d.Ready, d.Active)
			if d.Down {
				b.WriteString(" down")
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
