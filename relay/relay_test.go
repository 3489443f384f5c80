package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/relay"
	"github.com/postern-mta/postern/relay/control"
	"github.com/postern-mta/postern/relay/sched"
	"github.com/postern-mta/postern/relay/spool"
	"github.com/prometheus/client_golang/prometheus"
)

// running is a daemon started by startRelay.
type running struct {
	d      *relay.Daemon
	addr   string
	log    *testbed.Buffer
	dir    string // the spool
	policy string // the policy file
	stop   func() error
}

// startRelay writes policy to a file, starts a daemon on a fresh spool
// (or dir, when given) with its listener on a free loopback port, and
// stops it when the test ends.
func startRelay(t *testing.T, policy, dir string) *running {
	t.Helper()
	return startRelayWith(t, policy, dir, nil)
}

// startRelayWith is startRelay with a chance to change the options.
func startRelayWith(t *testing.T, policy, dir string, change func(*relay.Options)) *running {
	t.Helper()
	pdir := t.TempDir()
	path := filepath.Join(pdir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "spool")
	}
	logs := &testbed.Buffer{}
	opts := relay.Options{Policy: path, Spool: dir, Listen: []string{"127.0.0.1:0"},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Registry: prometheus.NewRegistry()}
	if change != nil {
		change(&opts)
	}
	d, err := relay.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, "127.0.0.1:0") }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	})
	return &running{d: d, addr: d.ListenAddrs()[0].String(), log: logs, dir: dir, policy: path, stop: stop}
}

// swaks sends one message through addr with the real swaks client and
// returns its transcript.
func swaks(t *testing.T, addr string, args ...string) string {
	t.Helper()
	bin := testbed.Require(t, "swaks")
	argv := append([]string{"--server", addr, "--timeout", "20"}, args...)
	out, err := exec.Command(bin, argv...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("swaks: %v", err)
		}
	}
	return string(out)
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spoolMessages counts the message files in a spool.
func spoolMessages(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "msg", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}

func relayRoute(name string, addr netip.AddrPort) string {
	return fmt.Sprintf("    %s:\n      type: relay\n      address: %s\n      port: %d\n", name, addr.Addr(), addr.Port())
}

// TestRelayEndToEnd: a message sent with swaks is acknowledged "250 2.0.0
// Ok: queued as ID", delivered by the policy's route to a real
// smtp-sink with our Received header first (its id clause the queue ID),
// logged with its ID, and removed from the spool.
func TestRelayEndToEnd(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	policy := "version: 1\nhostname: relay.test\nrelay:\n  queue:\n    startup-spread: 0s\nrouting:\n  route: sink\n  routes:\n" +
		relayRoute("sink", sink.Addr) + "tls:\n  starttls: disable\n"
	r := startRelay(t, policy, "")

	out := swaks(t, r.addr, "--from", "alice@sender.test", "--to", "bob@dest.test", "--header", "Subject: e2e")
	i := strings.Index(out, "250 2.0.0 Ok: queued as ")
	if i < 0 {
		t.Fatalf("no 250 queued-as reply:\n%s", out)
	}
	id := strings.Fields(out[i+len("250 2.0.0 Ok: queued as "):])[0]

	// smtp-sink writes its file as the data comes: read it once the
	// relay has its final reply.
	waitFor(t, "the delivery", func() bool { return strings.Contains(r.log.String(), "status=sent") })
	msgs := sink.WaitMessages(t, 1)
	body := msgs[0].Data
	if !strings.HasPrefix(body, "Received: ") || !strings.Contains(body, "by relay.test") || !strings.Contains(body, "\tid "+id+"\n") ||
		!strings.Contains(body, "Subject: e2e") {
		t.Errorf("the sink got:\n%s", body)
	}
	waitFor(t, "the message to leave the spool", func() bool { return spoolMessages(t, r.dir) == 0 })
	log := r.log.String()
	for _, want := range []string{"id=" + id, "status=sent", "msg=removed"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}

	// /metrics: the relay's and the engine's metrics on one registry,
	// valid for promtool, counting this delivery; /healthz and /readyz.
	// The file goes before the scheduler hears the dispatch is done:
	// wait for that too.
	base := "http://" + r.d.HTTPAddr()
	var exposition string
	waitFor(t, "the dispatch to end", func() bool {
		exposition = httpGet(t, base+"/metrics", 200)
		return strings.Contains(exposition, "postern_relay_queue_active 0\n")
	})
	promtool := testbed.Require(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{`postern_relay_deliveries_total{class="none",status="sent"} 1`,
		`postern_relay_messages_received_total{listener="mta",result="queued"} 1`,
		`postern_deliveries_total{class="none",outcome="delivered",route="sink",verify="none"} 1`,
		`postern_relay_spool_fsync_seconds_count{kind="dir"}`, `postern_relay_spool_fsync_seconds_count{kind="file"} 1`,
		"postern_relay_queue_items 0\n", "postern_relay_queue_active 0\n", "postern_relay_destinations_down 0\n", "postern_relay_spool_free_bytes "} {
		if !strings.Contains(exposition, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	httpGet(t, base+"/healthz", 200)
	httpGet(t, base+"/readyz", 200)
}

// httpGet fetches url and checks its status.
func httpGet(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, status, b)
	}
	return string(b)
}

// TestRelayBounce: a recipient the next hop refuses (550 at the end of
// DATA, from a real aiosmtpd) gets a failure DSN, queued by the relay and
// delivered from <> to the sender; it parses as multipart/report and
// names the recipient and the remote reply.
func TestRelayBounce(t *testing.T) {
	ok := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{})
	bad := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{DataReply: "550 5.7.1 rejected by policy"})
	policy := "version: 1\nhostname: relay.test\nrelay:\n  queue:\n    startup-spread: 0s\nrouting:\n  route:\n    - if: rcpt_domain == \"bad.test\"\n      then: bad\n    - else: ok\n  routes:\n" +
		relayRoute("ok", ok.Addr) + relayRoute("bad", bad.Addr) + "tls:\n  starttls: disable\n"
	r := startRelay(t, policy, "")
	out := swaks(t, r.addr, "--from", "alice@sender.test", "--to", "carol@bad.test")
	if !strings.Contains(out, "queued as") {
		t.Fatalf("not queued:\n%s", out)
	}
	dsns := ok.WaitMessages(t, 1)
	d := dsns[0]
	if (d.From != "" && d.From != "<>") || len(d.Rcpts) != 1 || d.Rcpts[0] != "alice@sender.test" {
		t.Fatalf("DSN envelope from=%q to=%v, want <> to alice@sender.test", d.From, d.Rcpts)
	}
	m, err := mail.ReadMessage(bytes.NewReader(d.Content))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var status string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct == "message/delivery-status" {
			status = string(b)
		}
	}
	for _, want := range []string{"Reporting-MTA: dns; relay.test", "Final-Recipient: rfc822; carol@bad.test", "Action: failed", "Status: 5.7.1", "550 5.7.1 rejected by policy"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	waitFor(t, "the spool to empty", func() bool { return spoolMessages(t, r.dir) == 0 })
}

// TestRelayDeadDestination: 12 messages to a destination whose server
// closes every connection before its greeting (a counting proxy in front
// of a closed port) cost one connection, not 12; the others are deferred
// without connecting ("destination down"); when the down period (the
// first retry delay) has passed on the fake clock, one probe connection
// is made, and again only one.
func TestRelayDeadDestination(t *testing.T) {
	proxy := testbed.StartProxy(t, testbed.ClosedPort(t))
	clock := sched.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	policy := "version: 1\nhostname: relay.test\nrelay:\n  queue:\n    startup-spread: 0s\n    destination-concurrency: 1\nrouting:\n  route: dead\n  routes:\n" +
		relayRoute("dead", proxy.Addr) + "tls:\n  starttls: disable\n"
	r := startRelayWith(t, policy, "", func(o *relay.Options) { o.Clock = clock; o.Engine.Clock = clock.Now })
	const n = 12
	for i := range n {
		if out := swaks(t, r.addr, "--from", "alice@sender.test", "--to", fmt.Sprintf("u%d@dest.test", i)); !strings.Contains(out, "queued as") {
			t.Fatalf("message %d not queued:\n%s", i, out)
		}
	}
	waitFor(t, "every message to be deferred", func() bool { return strings.Count(r.log.String(), "destination down") >= n-1 })
	if _, total := proxy.Stats(); total != 1 {
		t.Fatalf("%d connections to a dead destination for %d messages, want 1", total, n)
	}
	// Only the message that was tried has a state file: a deferral
	// without a connection writes nothing. The daemon still lists every
	// message as deferred, the others with the down reason.
	states, err := filepath.Glob(filepath.Join(r.dir, "state", "*", "*"))
	if err != nil || len(states) != 1 {
		t.Fatalf("state files %v (%v), want 1: the tried message's", states, err)
	}
	c := control.Dial(filepath.Join(r.dir, "control.sock"))
	defer c.Close()
	ms, err := c.List(context.Background(), control.Filter{Deferred: true})
	if err != nil || len(ms) != n {
		t.Fatalf("queue list --deferred: %d messages, %v; want %d", len(ms), err, n)
	}
	untried := 0
	for _, m := range ms {
		rc := m.Recipients[0]
		if !rc.NextAttempt.After(clock.Now()) {
			t.Errorf("%s: next attempt %v, want after now", m.ID, rc.NextAttempt)
		}
		if rc.Attempts == 0 && strings.HasPrefix(rc.LastError, "451 4.4.1 destination down: ") {
			untried++
		}
	}
	if untried != n-1 {
		t.Errorf("%d never-tried messages listed as waiting for the down destination, want %d: %+v", untried, n-1, ms)
	}
	// The queue gauges say the same; a held message counts as held.
	if got, err := c.Hold(context.Background(), control.Filter{IDs: []string{ms[0].ID}}); err != nil || got != 1 {
		t.Fatalf("hold %s: %d, %v", ms[0].ID, got, err)
	}
	// (A deferral's dispatch ends a moment after its log line: poll.)
	wants := []string{fmt.Sprintf("postern_relay_queue_messages{state=\"deferred\"} %d\n", n-1),
		"postern_relay_queue_messages{state=\"held\"} 1\n", "postern_relay_queue_recipients{state=\"held\"} 1\n",
		"postern_relay_queue_messages{state=\"pending\"} 0\n", "postern_relay_queue_messages{state=\"active\"} 0\n"}
	waitFor(t, "the queue gauges", func() bool {
		exposition := httpGet(t, "http://"+r.d.HTTPAddr()+"/metrics", 200)
		for _, want := range wants {
			if !strings.Contains(exposition, want) {
				return false
			}
		}
		return true
	})
	if got, err := c.Release(context.Background(), []string{ms[0].ID}); err != nil || got != 1 {
		t.Fatalf("release %s: %d, %v", ms[0].ID, got, err)
	}
	// queue.retry's first delay is 2m (the default), ±10 % jitter for the
	// first message's own retry: past that, every message is due.
	clock.Advance(2*time.Minute*11/10 + time.Second)
	waitFor(t, "the probe", func() bool { _, total := proxy.Stats(); return total >= 2 })
	waitFor(t, "the deferrals after the probe", func() bool { return strings.Count(r.log.String(), "destination down") >= 2*(n-1) })
	if _, total := proxy.Stats(); total != 2 {
		t.Fatalf("%d connections after one down period, want 2 (the first attempt and one probe)", total)
	}
	if got := spoolMessages(t, r.dir); got != n {
		t.Fatalf("%d messages in the spool, want all %d still queued", got, n)
	}

	// `postern queue flush --all`: due now and the destination is up
	// again, without the clock moving: one new connection (which fails
	// and marks it down again), not one per message.
	before := strings.Count(r.log.String(), "destination down")
	if got, err := c.Flush(context.Background(), control.Filter{All: true}); err != nil || got != n {
		t.Fatalf("flush: %d, %v; want %d messages", got, err, n)
	}
	waitFor(t, "the probe after the flush", func() bool { _, total := proxy.Stats(); return total >= 3 })
	waitFor(t, "the deferrals after the flush", func() bool { return strings.Count(r.log.String(), "destination down") >= before+n-1 })
	if _, total := proxy.Stats(); total != 3 {
		t.Fatalf("%d connections after the flush, want 3", total)
	}
}

// TestRelayReload: over the control socket (as `postern relay reload`
// does), a broken policy is refused with its file:line:col and the old one
// keeps routing; a good one takes effect for the next message.
func TestRelayReload(t *testing.T) {
	one := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	two := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	head := "version: 1\nhostname: relay.test\nrelay:\n  queue:\n    startup-spread: 0s\nrouting:\n  route: sink\n  routes:\n"
	r := startRelay(t, head+relayRoute("sink", one.Addr)+"tls:\n  starttls: disable\n", "")
	c := control.Dial(filepath.Join(r.dir, "control.sock"))
	defer c.Close()

	if err := os.WriteFile(r.policy, []byte(head+relayRoute("sink", two.Addr)+"tls:\n  starttls: requir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := c.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), r.policy+":14:13: tls.starttls") {
		t.Fatalf("reload of a broken policy: %v, want its error at %s:14:13", err, r.policy)
	}
	swaks(t, r.addr, "--from", "a@sender.test", "--to", "b@dest.test")
	waitFor(t, "delivery under the old policy", func() bool { return strings.Count(r.log.String(), "status=sent") == 1 })
	if n := len(one.Messages(t)); n != 1 {
		t.Fatalf("the old policy's sink got %d messages, want 1", n)
	}

	if err := os.WriteFile(r.policy, []byte(head+relayRoute("sink", two.Addr)+"tls:\n  starttls: disable\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	swaks(t, r.addr, "--from", "a@sender.test", "--to", "c@dest.test")
	waitFor(t, "delivery under the new policy", func() bool { return strings.Count(r.log.String(), "status=sent") == 2 })
	if n := len(two.Messages(t)); n != 1 {
		t.Fatalf("the new policy's sink got %d messages, want 1", n)
	}
}

// TestRelayListenKeepsTheGuard: a policy whose networks let anyone relay
// is fine on its loopback listener, but --listen cannot move that
// listener to a wildcard address: the open-relay guard runs on the
// addresses the daemon would really bind, with the policy's positions.
func TestRelayListenKeepsTheGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	policy := "version: 1\nrelay:\n  networks: [0.0.0.0/0]\nrouting:\n  route: mx\n"
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := relay.New(relay.Options{Policy: path, Spool: filepath.Join(t.TempDir(), "spool"), Listen: []string{"0.0.0.0:0"}})
	if err == nil || !strings.Contains(err.Error(), path+":3:") || !strings.Contains(err.Error(), "0.0.0.0/0") {
		t.Fatalf("--listen 0.0.0.0:0 with networks 0.0.0.0/0: %v, want the open-relay error at %s:3", err, path)
	}
	d, err := relay.New(relay.Options{Policy: path, Spool: filepath.Join(t.TempDir(), "spool"), Listen: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatalf("the same policy on loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx, ""); err != nil {
		t.Fatal(err)
	}
}

// TestRelayDelayNotices: with queue.notify: [1h], two messages to a dead
// destination (the server closes every connection) each bring their
// sender one "delayed" DSN once they are an hour old on the fake clock —
// the one that probes the destination, through the engine's result, and
// the one deferred without a connection while the destination is down.
func TestRelayDelayNotices(t *testing.T) {
	ok := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{})
	proxy := testbed.StartProxy(t, testbed.ClosedPort(t))
	clock := sched.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	policy := "version: 1\nhostname: relay.test\nrelay:\n  queue:\n    startup-spread: 0s\n    destination-concurrency: 1\n" +
		"queue:\n  retry: [10m]\n  notify: [1h]\nrouting:\n  route:\n    - if: rcpt_domain == \"dest.test\"\n      then: dead\n    - else: ok\n  routes:\n" +
		relayRoute("dead", proxy.Addr) + relayRoute("ok", ok.Addr) + "tls:\n  starttls: disable\n"
	r := startRelayWith(t, policy, "", func(o *relay.Options) { o.Clock = clock; o.Engine.Clock = clock.Now })
	for _, to := range []string{"u1@dest.test", "u2@dest.test"} {
		if out := swaks(t, r.addr, "--from", "alice@sender.test", "--to", to); !strings.Contains(out, "queued as") {
			t.Fatalf("not queued:\n%s", out)
		}
	}
	waitFor(t, "the destination to be marked down", func() bool { return strings.Contains(r.log.String(), "destination down") })
	if n := len(ok.Messages(t)); n != 0 {
		t.Fatalf("%d notices before the hour", n)
	}
	clock.Advance(61 * time.Minute)
	dsns := ok.WaitMessages(t, 2)
	if len(dsns) != 2 {
		t.Fatalf("%d delay notices, want 2\n%s", len(dsns), r.log.String())
	}
	for _, d := range dsns {
		if d.Rcpts[0] != "alice@sender.test" || !bytes.Contains(d.Content, []byte("Action: delayed")) || !bytes.Contains(d.Content, []byte("Will-Retry-Until:")) {
			t.Errorf("notice to %v:\n%s", d.Rcpts, d.Content)
		}
	}
	// Both messages stay queued, and no second notice comes with the
	// next deferral.
	clock.Advance(11 * time.Minute)
	waitFor(t, "the next deferrals", func() bool { return strings.Count(r.log.String(), "status=deferred") >= 4 })
	// The notices leave the spool once their delivery is recorded, a
	// moment after the sink has them.
	waitFor(t, "only the 2 queued messages in the spool", func() bool { return spoolMessages(t, r.dir) == 2 })
	if n := len(ok.Messages(t)); n != 2 {
		t.Errorf("%d notices after the next deferral, want still 2", n)
	}
}

// TestRelayRecoversSpool: started on a spool that holds 300 messages, 30
// of them held, the relay schedules every other one exactly once (spread
// over startup-spread, an hour on a clock that does not move, so none is
// due yet) and counts the held ones apart, as its queue gauges show.
func TestRelayRecoversSpool(t *testing.T) {
	const n, everyHeld = 300, 10
	dir := filepath.Join(t.TempDir(), "spool")
	clock := sched.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	sp, err := spool.Open(dir, spool.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		rc, err := sp.Create(&spool.Envelope{From: "a@sender.test", Recipients: []spool.Recipient{{Addr: fmt.Sprintf("u%d@dest.test", i)}, {Addr: fmt.Sprintf("v%d@dest.test", i)}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Write([]byte("Subject: t\r\n\r\nhi\r\n")); err != nil {
			t.Fatal(err)
		}
		id, err := rc.Commit(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if i%everyHeld == 0 {
			if err := sp.WriteState(id, &spool.State{Hold: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	proxy := testbed.StartProxy(t, testbed.ClosedPort(t))
	policy := "version: 1\nhostname: relay.test\nrelay:\n  queue:\n    startup-spread: 1h\nrouting:\n  route: dead\n  routes:\n" +
		relayRoute("dead", proxy.Addr) + "tls:\n  starttls: disable\n"
	r := startRelayWith(t, policy, dir, func(o *relay.Options) { o.Clock = clock; o.Engine.Clock = clock.Now })
	held := n / everyHeld
	waitFor(t, "the metrics endpoint", func() bool { return r.d.HTTPAddr() != "" })
	exposition := httpGet(t, "http://"+r.d.HTTPAddr()+"/metrics", 200)
	for _, want := range []string{
		fmt.Sprintf("postern_relay_queue_messages{state=\"deferred\"} %d\n", n-held),
		fmt.Sprintf("postern_relay_queue_recipients{state=\"deferred\"} %d\n", 2*(n-held)),
		fmt.Sprintf("postern_relay_queue_messages{state=\"held\"} %d\n", held),
		fmt.Sprintf("postern_relay_queue_items %d\n", n-held),
		"postern_relay_queue_messages{state=\"pending\"} 0\n", "postern_relay_queue_messages{state=\"active\"} 0\n",
	} {
		if !strings.Contains(exposition, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if _, total := proxy.Stats(); total != 0 {
		t.Errorf("%d connections before any message was due", total)
	}
}

// TestRelayRestartKeepsDownDestinations: a destination found down stays
// down across a restart (SPOOL/down.json): the restarted relay neither
// connects to it nor defers its messages once more, but schedules them
// for the end of the down period, when exactly one probe goes.
func TestRelayRestartKeepsDownDestinations(t *testing.T) {
	proxy := testbed.StartProxy(t, testbed.ClosedPort(t))
	clock := sched.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	policy := "version: 1\nhostname: relay.test\nrelay:\n  queue:\n    startup-spread: 0s\n    destination-concurrency: 1\nrouting:\n  route: dead\n  routes:\n" +
		relayRoute("dead", proxy.Addr) + "tls:\n  starttls: disable\n"
	withClock := func(o *relay.Options) { o.Clock = clock; o.Engine.Clock = clock.Now }
	r := startRelayWith(t, policy, "", withClock)
	const n = 8
	for i := range n {
		if out := swaks(t, r.addr, "--from", "alice@sender.test", "--to", fmt.Sprintf("u%d@dest.test", i)); !strings.Contains(out, "queued as") {
			t.Fatalf("message %d not queued:\n%s", i, out)
		}
	}
	waitFor(t, "every message to be deferred", func() bool { return strings.Count(r.log.String(), "destination down") >= n-1 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "down.json")); err != nil {
		t.Fatalf("no down.json after the destination went down: %v", err)
	}

	r2 := startRelayWith(t, policy, r.dir, withClock)
	waitFor(t, "the metrics endpoint", func() bool { return r2.d.HTTPAddr() != "" })
	want := fmt.Sprintf("postern_relay_queue_messages{state=\"deferred\"} %d\n", n)
	if exp := httpGet(t, "http://"+r2.d.HTTPAddr()+"/metrics", 200); !strings.Contains(exp, want) || !strings.Contains(exp, "postern_relay_destinations_down 1\n") {
		t.Errorf("after the restart /metrics lacks %q or 1 destination down:\n%s", want, exp)
	}
	if got := strings.Count(r2.log.String(), "destination down"); got != 0 {
		t.Errorf("the restarted relay deferred %d messages once more, want none (they wait for the probe)", got)
	}
	if _, total := proxy.Stats(); total != 1 {
		t.Errorf("%d connections after the restart, want still the first one", total)
	}
	// The down period (queue.retry's first delay, 2m) ends, and the
	// first message's own retry (2m ±10 % jitter) is due: one probe.
	clock.Advance(2*time.Minute*11/10 + time.Second)
	waitFor(t, "the probe", func() bool { _, total := proxy.Stats(); return total >= 2 })
	waitFor(t, "the deferrals after the probe", func() bool { return strings.Count(r2.log.String(), "destination down") >= n-1 })
	if _, total := proxy.Stats(); total != 2 {
		t.Errorf("%d connections after the down period, want 2 (one probe)", total)
	}
}
