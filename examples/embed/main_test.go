package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// TestBounce delivers a message to two recipients through a real LMTP
// receiver (aiosmtpd, DSN offered) that accepts one and refuses the other
// with 550: the first is delivered, and a bounce to the sender is queued,
// from the null sender, and delivered by the next pass; it reports the
// refused recipient only, with its status and the receiver's reply. The
// log has one delivery line per recipient with the queue ID, and /metrics,
// scraped over HTTP, counts what happened.
func TestBounce(t *testing.T) {
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{LMTP: true, DSN: true,
		LMTPReplies: []string{"250 2.1.5 ok", "550 5.1.1 <b@dest.test>: no such user"}})
	clk := newClock()
	m, logs := newTestMTA(t, writePolicy(t, sink.Addr, "protocol: lmtp"), clk)
	id := enqueue(t, m, envelope{From: "s@sender.test", Rcpts: []recipient{{Addr: "a@dest.test"}, {Addr: "b@dest.test"}}})

	runOnce(t, m)
	got := sink.WaitMessages(t, 1)
	if !slices.Equal(got[0].Rcpts, []string{"a@dest.test", "b@dest.test"}) {
		t.Fatalf("the receiver got recipients %v", got[0].Rcpts)
	}
	q := queued(t, m)
	if len(q) != 1 || q[0].ID == id || q[0].From != "" || q[0].Source != "dsn" || len(q[0].Rcpts) != 1 || q[0].Rcpts[0].Addr != "s@sender.test" {
		t.Fatalf("after the first pass the queue holds %+v, want only a bounce from <> to s@sender.test", q)
	}
	bounceID := q[0].ID

	runOnce(t, m)
	got = sink.WaitMessages(t, 2)
	if got[1].From != "" && got[1].From != "<>" || !slices.Equal(got[1].Rcpts, []string{"s@sender.test"}) {
		t.Fatalf("the bounce went from %q to %v", got[1].From, got[1].Rcpts)
	}
	rcpts := parseDSN(t, got[1].Content)
	if len(rcpts) != 1 {
		t.Fatalf("the bounce reports %d recipients, want 1 (b@dest.test)", len(rcpts))
	}
	for k, want := range map[string]string{"Final-Recipient": "rfc822;b@dest.test", "Action": "failed", "Status": "5.1.1",
		"Diagnostic-Code": "smtp;550 5.1.1 <b@dest.test>: no such user"} {
		if v := strings.ReplaceAll(rcpts[0].Get(k), " ", ""); v != strings.ReplaceAll(want, " ", "") {
			t.Errorf("bounce %s: %q, want %q", k, rcpts[0].Get(k), want)
		}
	}
	if q := queued(t, m); len(q) != 0 {
		t.Errorf("the queue still holds %+v", q)
	}

	wantLines := []string{id + " a@dest.test sent", id + " b@dest.test bounced", bounceID + " s@sender.test sent"}
	if lines := deliveryLines(t, logs.String()); !slices.Equal(lines, wantLines) {
		t.Errorf("delivery log lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
	}

	srv := httptest.NewServer(m.metricsHandler())
	defer srv.Close()
	if got, want := deliveries(t, srv.URL+"/metrics"), map[string]float64{"delivered": 2, "permanent": 1}; !maps.Equal(got, want) {
		t.Errorf("postern_deliveries_total by outcome: %v, want %v", got, want)
	}
}

// TestRetry delivers to a relay that is down: the message is requeued for
// queue.retry's first wait, and is not attempted before then; the next
// failure, past queue.notify's first entry, queues a delay notification
// and takes queue.retry's second wait; when the relay is up and that time
// has come, both the message and the notification are delivered.
func TestRetry(t *testing.T) {
	port := testbed.FreePort(t, "127.0.0.1")
	relay := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	clk := newClock()
	t0 := clk.now()
	m, logs := newTestMTA(t, writePolicy(t, relay), clk)
	id := enqueue(t, m, envelope{From: "s@sender.test", Rcpts: []recipient{{Addr: "a@dest.test"}}})

	runOnce(t, m)
	env := queuedByID(t, m, id)
	rc := env.Rcpts[0]
	if rc.State != statePending || !rc.RetryAfter.Equal(t0.Add(10*time.Minute)) || rc.RetryFrom != engine.RetryFromSchedule ||
		!env.NextAttempt.Equal(rc.RetryAfter) || env.RetryNum != 1 || env.NotifyNum != 0 || env.LastError != "connection" {
		t.Fatalf("after a refused connection: %+v", env)
	}

	clk.set(t0.Add(5 * time.Minute))
	runOnce(t, m)
	if n := len(deliveryLines(t, logs.String())); n != 1 {
		t.Fatalf("%d delivery lines after a pass before the retry time, want 1: attempted too early", n)
	}

	clk.set(t0.Add(20 * time.Minute))
	runOnce(t, m)
	env = queuedByID(t, m, id)
	if rc := env.Rcpts[0]; !rc.RetryAfter.Equal(clk.now().Add(time.Hour)) || env.RetryNum != 2 || env.NotifyNum != 1 {
		t.Fatalf("after the second failure, 20m after queueing: %+v", env)
	}
	if q := queued(t, m); len(q) != 2 {
		t.Fatalf("the queue holds %d messages, want the message and its delay notification", len(q))
	}

	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Port: port})
	clk.set(t0.Add(85 * time.Minute))
	runOnce(t, m)
	got := sink.WaitMessages(t, 2)
	var delay []byte
	for _, g := range got {
		if g.From == "" || g.From == "<>" {
			delay = g.Content
		}
	}
	rcpts := parseDSN(t, delay)
	if len(rcpts) != 1 || rcpts[0].Get("Action") != "delayed" || !strings.HasPrefix(rcpts[0].Get("Status"), "4.") || rcpts[0].Get("Will-Retry-Until") == "" {
		t.Errorf("the delay notification reports %v", rcpts)
	}
	if q := queued(t, m); len(q) != 0 {
		t.Errorf("the queue still holds %+v", q)
	}
}

// TestExpired: a message still queued after queue.expire is not attempted
// again; it bounces (5.4.7, class expired). The bounce, from the null
// sender, expires in turn and is dropped without a notification of its
// own.
func TestExpired(t *testing.T) {
	clk := newClock()
	t0 := clk.now()
	m, logs := newTestMTA(t, writePolicy(t, closedPort(t)), clk)
	id := enqueue(t, m, envelope{From: "s@sender.test", Rcpts: []recipient{{Addr: "a@dest.test"}}})
	runOnce(t, m) // refused: retried in 10m

	clk.set(t0.Add(3 * time.Hour)) // queue.expire is 2h
	runOnce(t, m)
	q := queued(t, m)
	if len(q) != 1 || q[0].ID == id || q[0].From != "" {
		t.Fatalf("the queue holds %+v, want only the bounce", q)
	}
	body, err := m.q.body(q[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if rcpts := parseDSN(t, body); len(rcpts) != 1 || rcpts[0].Get("Action") != "failed" || rcpts[0].Get("Status") != "5.4.7" {
		t.Errorf("the bounce reports %v, want a@dest.test failed 5.4.7", rcpts)
	}

	runOnce(t, m)                  // the bounce is refused too
	clk.set(t0.Add(6 * time.Hour)) // and expires
	runOnce(t, m)
	if q := queued(t, m); len(q) != 0 {
		t.Fatalf("the queue holds %+v, want nothing: no bounce of a bounce", q)
	}
	var expired int
	for _, l := range logLines(t, logs.String()) {
		if l["msg"] == "delivery" && l["class"] == "expired" && l["status"] == "bounced" {
			expired++
		}
	}
	if expired != 2 {
		t.Errorf("%d delivery lines say bounced, class expired; want 2 (the message, then its bounce)", expired)
	}
}

// TestRouteFailure: when routing.route fails at run time the recipient is
// deferred before its group's schedule is decided; the engine then gives
// queue.retry as the policy writes it, and the message stays queued.
func TestRouteFailure(t *testing.T) {
	clk := newClock()
	path := writePolicy(t, closedPort(t))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.Replace(string(b), "  route: sink\n", "  route:\n    - if: recipients[5] == \"x\"\n      then: sink\n    - else: sink\n", 1)
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _ := newTestMTA(t, path, clk)
	id := enqueue(t, m, envelope{From: "s@sender.test", Rcpts: []recipient{{Addr: "a@dest.test"}}})
	runOnce(t, m)
	env := queuedByID(t, m, id)
	if rc := env.Rcpts[0]; rc.State != statePending || rc.RetryFrom != "schedule" || !rc.RetryAfter.Equal(clk.now().Add(10*time.Minute)) || env.LastError != "policy" {
		t.Errorf("after routing.route failed: %+v", env)
	}
}

// TestServe runs the MTA as a daemon: it delivers what is queued, serves
// /metrics on its listener, and reloads the policy when the file is
// rewritten (the next message takes the new route) and on SIGHUP.
func TestServe(t *testing.T) {
	a := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{})
	b := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{})
	path := writePolicy(t, a.Addr)
	reloads := make(chan error, 10)
	logs := &syncBuffer{}
	m, err := newMTA(config{policy: path, queueDir: t.TempDir(), hostname: "mta.sender.test", logOut: logs,
		onReload: func(_ string, err error) { reloads <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.eng.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.serve(ctx, ln, 20*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	waitReload(t, reloads) // the watch is in place
	url := "http://" + ln.Addr().String() + "/metrics"

	enqueue(t, m, envelope{From: "s@sender.test", Rcpts: []recipient{{Addr: "one@dest.test"}}})
	a.WaitMessages(t, 1)
	if got := deliveries(t, url); !maps.Equal(got, map[string]float64{"delivered": 1}) {
		t.Errorf("deliveries after the first message: %v", got)
	}
	before := reloadsOK(t, url)

	policy, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(policy), "port: "+itoa(a.Addr.Port()), "port: "+itoa(b.Addr.Port()), 1)
	if err := writeFile(path, []byte(next)); err != nil { // as an editor saves: rename over
		t.Fatal(err)
	}
	waitReload(t, reloads)
	enqueue(t, m, envelope{From: "s@sender.test", Rcpts: []recipient{{Addr: "two@dest.test"}}})
	if got := b.WaitMessages(t, 1); !slices.Equal(got[0].Rcpts, []string{"two@dest.test"}) {
		t.Errorf("the new route's receiver got %v", got[0].Rcpts)
	}
	if n := len(a.Messages(t)); n != 1 {
		t.Errorf("the old route's receiver got %d messages, want 1", n)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(logs.String(), `"trigger":"signal hangup"`) {
		waitReload(t, reloads)
	}
	if after := reloadsOK(t, url); after < before+2 {
		t.Errorf("postern_policy_reloads_total{result=\"ok\"} went from %v to %v, want 2 more (the file, SIGHUP)", before, after)
	}
}

// TestCommand runs the program's command line: -enqueue reads the message
// from standard input with its DSN parameters, -once delivers it (the
// receiver, which offers DSN, sees NOTIFY, so no success report is
// queued); bad usage exits 2 and a broken policy 1.
func TestCommand(t *testing.T) {
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{DSN: true})
	policy := writePolicy(t, sink.Addr)
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	ctx := context.Background()
	msg := "From: s@sender.test\r\nSubject: hi\r\n\r\nhello\r\n"
	if code := run(ctx, []string{"-queue", dir, "-enqueue", "-from", "s@sender.test", "-to", "a@dest.test", "-notify", "success", "-envid", "e1"},
		strings.NewReader(msg), &stdout, &stderr); code != 0 {
		t.Fatalf("-enqueue: exit %d: %s", code, stderr.String())
	}
	id := strings.TrimSpace(stdout.String())
	stderr.Reset()
	if code := run(ctx, []string{"-c", policy, "-queue", dir, "-once", "-hostname", "mta.sender.test"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("-once: exit %d: %s", code, stderr.String())
	}
	got := sink.WaitMessages(t, 1)[0]
	if !slices.Equal(got.RcptParams["a@dest.test"], []string{"NOTIFY=SUCCESS"}) || !slices.Contains(got.MailOptions, "ENVID=e1") ||
		!strings.Contains(string(got.Content), "Subject: hi") {
		t.Errorf("the receiver got %+v", got)
	}
	if lines := deliveryLines(t, stderr.String()); !slices.Equal(lines, []string{id + " a@dest.test sent"}) {
		t.Errorf("delivery lines %v", lines)
	}
	// The receiver offers DSN and got NOTIFY=SUCCESS: it reports from
	// now on, so no success report is queued here (RFC 3461 section 4.2).
	if q := queued(t, &mta{q: &queue{dir: dir}}); len(q) != 0 {
		t.Fatalf("the queue holds %+v, want nothing: the receiver took NOTIFY", q)
	}

	for _, args := range [][]string{
		{"-queue", dir, "-enqueue", "-from", "s@sender.test"},                         // no -to
		{"-queue", dir, "-enqueue", "-to", "a@dest.test", "-notify", "never,success"}, // NEVER with others
		{"-queue", dir, "-enqueue", "-to", "a@dest.test", "-ret", "body"},             // no such RET
		{"-queue", dir, "-no-such-flag"},
	} {
		if code := run(ctx, args, strings.NewReader(msg), io.Discard, io.Discard); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ntls:\n  starttls: requir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run(ctx, []string{"-c", bad, "-queue", dir, "-once"}, nil, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), bad+":3:13: tls.starttls") {
		t.Errorf("a broken policy: exit %d, stderr %q", code, stderr.String())
	}
}

// TestQueueFiles: only complete envelopes are queued: a temporary file
// left by a crash during a write, and a message file without its
// envelope, are not picked up; an envelope that does not parse is
// reported without holding up the others; settle removes a finished
// message's two files.
func TestQueueFiles(t *testing.T) {
	dir := t.TempDir()
	q := &queue{dir: dir, now: time.Now}
	id, err := q.enqueue(envelope{From: "s@sender.test", Rcpts: []recipient{{Addr: "a@dest.test"}}}, []byte("Subject: x\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{".zzz.json.123.tmp": `{"id":"zzz"`, "orphan.eml": "Subject: y\r\n\r\n", "broken.json": `{"id":`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	due, err := q.due()
	if err == nil || !strings.Contains(err.Error(), "broken.json") {
		t.Errorf("due: error %v, want one about broken.json", err)
	}
	if len(due) != 1 || due[0].ID != id || due[0].Rcpts[0].State != statePending {
		t.Fatalf("due: %+v; want only %s, pending", due, id)
	}
	due[0].Rcpts[0].State = stateDelivered
	if err := q.settle(due[0]); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".json", ".eml"} {
		if _, err := os.Stat(q.path(id, ext)); !os.IsNotExist(err) {
			t.Errorf("%s%s after the message was done: %v", id, ext, err)
		}
	}
}

// --- helpers ---

// clock is a settable clock shared by the engine and the queue.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// syncBuffer is a log destination that goroutines may write while the
// test reads it.
type syncBuffer = testbed.Buffer

// testZone answers nothing the tests ask: relays are IP literals.
const testZone = `$TTL 300
$ORIGIN test.
@    IN SOA ns1 hostmaster 1 3600 600 604800 300
@    IN NS  ns1
ns1  IN A   192.0.2.53
`

// writePolicy writes a policy that routes every recipient to the relay at
// addr (with extra route keys), with a static resolver, and returns its
// path.
func writePolicy(t *testing.T, addr netip.AddrPort, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	policy := "version: 1\nhostname: mta.sender.test\nrouting:\n  route: sink\n  routes:\n    sink:\n      type: relay\n" +
		"      address: " + addr.Addr().String() + "\n      port: " + itoa(addr.Port()) + "\n"
	for _, e := range extra {
		policy += "      " + e + "\n"
	}
	policy += "tls:\n  starttls: disable\nqueue:\n  retry: [10m, 1h]\n  notify: [15m]\n  expire: 2h\n" +
		"dns:\n  resolver: static\n  zone-file: zone.txt\n"
	for name, content := range map[string]string{"policy.yaml": policy, "zone.txt": testZone} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "policy.yaml")
}

// newTestMTA builds the program's MTA on the policy with the clock, a new
// queue directory and a log the test reads.
func newTestMTA(t *testing.T, policy string, clk *clock) (*mta, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	m, err := newMTA(config{policy: policy, queueDir: t.TempDir(), hostname: "mta.sender.test", logOut: logs, clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.eng.Close() })
	return m, logs
}

func enqueue(t *testing.T, m *mta, env envelope) string {
	t.Helper()
	id, err := m.q.enqueue(env, []byte("From: s@sender.test\r\nSubject: test\r\nMessage-ID: <t@sender.test>\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func runOnce(t *testing.T, m *mta) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
}

// queued returns every envelope in the queue, due or not.
func queued(t *testing.T, m *mta) []*envelope {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(m.q.dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*envelope
	for _, n := range names {
		env, err := m.q.load(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, env)
	}
	return out
}

func queuedByID(t *testing.T, m *mta, id string) *envelope {
	t.Helper()
	env, err := m.q.load(m.q.path(id, ".json"))
	if err != nil {
		t.Fatalf("message %s is not queued: %v", id, err)
	}
	return env
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) netip.AddrPort { return testbed.ClosedPort(t) }

func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// deliveryLines are the engine's per-recipient lines as "ID RCPT STATUS".
func deliveryLines(t *testing.T, logs string) []string {
	t.Helper()
	var out []string
	for _, l := range logLines(t, logs) {
		if l["msg"] == "delivery" {
			out = append(out, l["id"].(string)+" "+l["to"].(string)+" "+l["status"].(string))
		}
	}
	return out
}

// parseDSN reads a delivery status notification with Go's MIME parser and
// returns its per-recipient field groups.
func parseDSN(t *testing.T, msg []byte) []textproto.MIMEHeader {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("DSN: %v\n%s", err, msg)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("DSN without a message/delivery-status part: %v", err)
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "message/delivery-status" {
			continue
		}
		tp := textproto.NewReader(bufio.NewReader(p))
		if _, err := tp.ReadMIMEHeader(); err != nil { // the per-message fields
			t.Fatal(err)
		}
		var rcpts []textproto.MIMEHeader
		for {
			h, err := tp.ReadMIMEHeader()
			if len(h) > 0 {
				rcpts = append(rcpts, h)
			}
			if err != nil {
				return rcpts
			}
		}
	}
}

// scrape fetches url and parses the exposition with Prometheus' parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s does not parse: %v", url, err)
	}
	return fams
}

// deliveries sums postern_deliveries_total by outcome.
func deliveries(t *testing.T, url string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range scrape(t, url)["postern_deliveries_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// reloadsOK is postern_policy_reloads_total{result="ok"}.
func reloadsOK(t *testing.T, url string) float64 {
	t.Helper()
	for _, m := range scrape(t, url)["postern_policy_reloads_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "result" && l.GetValue() == "ok" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// waitReload waits for the next policy load of serve and fails the test
// when it did not load.
func waitReload(t *testing.T, reloads <-chan error) {
	t.Helper()
	select {
	case err := <-reloads:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestDemoPolicy: the policy README.md runs loads without warnings and
// routes every recipient to the receiver it starts.
func TestDemoPolicy(t *testing.T) {
	eng, err := engine.LoadFile("demo.yaml", engine.Options{Hostname: "mta.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if len(eng.Policy().Warnings) != 0 || len(eng.Warnings()) != 0 {
		t.Errorf("warnings: %v %v", eng.Policy().Warnings, eng.Warnings())
	}
	dec, err := eng.Evaluate(context.Background(), engine.Message{From: "alice@example.org", To: []string{"bob@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	g := dec.Groups[0]
	if g.Outcome != engine.OutcomeDeliver || g.Route.Address != "127.0.0.1" || g.Route.Port != 2525 {
		t.Errorf("bob@example.com: %s via %+v", g.Outcome, g.Route)
	}
}

// TestDocSnippets: every Go block of docs/embedding.md is code of this
// package (compared line by line, indentation aside), so it compiles and,
// where it is the program's, runs in the tests above.
func TestDocSnippets(t *testing.T) {
	doc, err := os.ReadFile("../../docs/embedding.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var code strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		code.WriteString(dedent(string(b)))
	}
	blocks := strings.Split(string(doc), "```go\n")[1:]
	if len(blocks) == 0 {
		t.Fatal("docs/embedding.md has no Go snippet")
	}
	for _, b := range blocks {
		snippet, _, _ := strings.Cut(b, "```")
		if !strings.Contains(code.String(), dedent(snippet)) {
			t.Errorf("this snippet of docs/embedding.md is not in examples/embed:\n%s", snippet)
		}
	}
}

// dedent trims every line's leading white space.
func dedent(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(strings.TrimLeft(line, " \t"))
	}
	return b.String()
}
