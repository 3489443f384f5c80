package blackbox_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// switchProxy is the destination of the fault tests: a TCP proxy whose
// mode the test switches during the run. In mode "pass" it forwards to a
// normal smtp-sink, in "fault" to an smtp-sink started with fault
// options (a real server misbehaving as configured), and in "close" it
// closes every connection as soon as it is accepted (a fault no real
// server produces on demand).
type switchProxy struct {
	Addr     netip.AddrPort
	mode     atomic.Value // string
	backends map[string]netip.AddrPort

	mu    sync.Mutex
	conns []net.Conn // open in the current mode
}

// Set switches the mode and closes the connections of the previous one,
// as a restarted server would: the relay caches connections, and one
// opened to the faulty server must not outlive the fault.
func (p *switchProxy) Set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode.Store(mode)
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func startSwitch(t *testing.T, mode string, backends map[string]netip.AddrPort) *switchProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{Addr: l.Addr().(*net.TCPAddr).AddrPort(), backends: backends}
	p.Set(mode)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target, ok := p.backends[p.mode.Load().(string)]
			if ok {
				p.conns = append(p.conns, c)
			}
			p.mu.Unlock()
			if !ok {
				_ = c.Close()
				continue
			}
			wg.Go(func() {
				defer c.Close()
				u, err := net.Dial("tcp", target.String())
				if err != nil {
					return
				}
				wg.Go(func() { _, _ = io.Copy(u, c); _ = u.Close() })
				_, _ = io.Copy(c, u)
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		p.Set("close")
		wg.Wait()
	})
	return p
}

// faultPolicy routes the sender's domain (DSNs) to dsn and everything
// else to the switch, retrying after 1 s.
func faultPolicy(sink, dsn netip.AddrPort) string {
	return fmt.Sprintf(`version: 1
hostname: relay.test
relay:
  listeners: [{name: mta, address: LISTEN}]
  queue: {startup-spread: 0s}
queue: {retry: [1s]}
routing:
  route:
    - if: rcpt_domain == "sender.test"
      then: dsn
    - else: sink
  routes:
    sink: {type: relay, address: %s, port: %d}
    dsn: {type: relay, address: %s, port: %d}
tls: {starttls: disable}
`, sink.Addr(), sink.Port(), dsn.Addr(), dsn.Port())
}

// copiesOf counts the complete copies of the message with subject in a
// sink's captures.
func copiesOf(t *testing.T, s *smtpbed.Sink, subject string) int {
	n := 0
	for _, m := range s.Messages(t) {
		if seqSubjectAny(m.Data) == subject {
			n++
		}
	}
	return n
}

// TestDestinationFaults: the destination misbehaves, then (for the
// temporary faults) recovers; the relay logs each attempt and ends with
// exactly what the fault calls for. Real smtp-sinks produce the SMTP
// faults (450 at RCPT, 550 at RCPT, a 421 greeting, a disconnect after
// the end of data); the proxy in front of them closes connections on
// accept and switches to a normal smtp-sink when the fault is over.
func TestDestinationFaults(t *testing.T) {
	cases := []struct {
		name string
		args []string // the faulty smtp-sink's options; nil: the proxy closes on connect
		// The first deferral (or the bounce) is logged with these
		// fields, and its reply contains reply.
		want  map[string]string
		reply string
		perm  bool // a permanent failure: a DSN, no retry
	}{
		{name: "4xx then accept", args: []string{"-r", "RCPT"}, want: map[string]string{"code": "450", "dsn": "4.3.0"}, reply: "command failed"},
		{name: "5xx bounces", args: []string{"-f", "RCPT", "-B", "550 5.1.1 <bob@dest.test>: Recipient address rejected"},
			want: map[string]string{"code": "550", "dsn": "5.1.1"}, reply: "Recipient address rejected", perm: true},
		{name: "421 greeting", args: []string{"-Q", "CONNECT"}, want: map[string]string{"code": "421"}, reply: "closing connection"},
		// No reply at all: the engine reports a lost connection with
		// 4.4.2 (RFC 3463 "bad connection").
		{name: "drop after DATA", args: []string{"-q", "."}, want: map[string]string{"dsn": "4.4.2", "class": "io"}, reply: "end of data"},
		{name: "close on connect", want: map[string]string{"dsn": "4.4.2"}, reply: "greeting"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			good := smtpbed.StartSink(t, smtpbed.SinkOptions{})
			dsnSink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
			backends := map[string]netip.AddrPort{"pass": good.Addr}
			mode := "close"
			var bad *smtpbed.Sink
			if c.args != nil {
				bad = smtpbed.StartSink(t, smtpbed.SinkOptions{Args: c.args})
				backends["fault"] = bad.Addr
				mode = "fault"
			}
			sw := startSwitch(t, mode, backends)
			r := newRelay(t, relayOptions{Policy: faultPolicy(sw.Addr, dsnSink.Addr)})
			r.Start()

			subject := "fault " + c.name
			o := sendMail(r.Addr, "alice@sender.test", "bob@dest.test", message(subject, 3000))
			id := o.Accepted()
			if id == "" {
				t.Fatalf("not queued: %v", o)
			}
			status := "deferred"
			if c.perm {
				status = "bounced"
			}
			r.WaitLog(20*time.Second, "a "+status+" delivery of "+id, func(recs []logRecord) bool {
				return len(find(recs, "delivery", "id", id, "status", status)) > 0
			})
			first := find(r.Records(), "delivery", "id", id, "status", status)[0]
			for k, v := range c.want {
				if first[k] != v {
					t.Errorf("the %s attempt was logged with %s=%q, want %q: %v", status, k, first[k], v, first)
				}
			}
			if !strings.Contains(strings.ToLower(first["reply"]), strings.ToLower(c.reply)) {
				t.Errorf("the %s attempt was logged with reply %q, want it to mention %q", status, first["reply"], c.reply)
			}
			if c.perm {
				checkBounce(t, r, id, dsnSink, good, subject)
				return
			}

			sw.Set("pass")
			r.WaitLog(20*time.Second, id+" sent and removed once the destination accepts", func(recs []logRecord) bool {
				return len(find(recs, "delivery", "id", id, "status", "sent")) > 0 && len(find(recs, "removed", "id", id)) > 0
			})
			recs := r.Records()
			deferred := len(find(recs, "delivery", "id", id, "status", "deferred"))
			if n := len(find(recs, "delivery", "id", id, "status", "sent")); n != 1 {
				t.Errorf("%s logged sent %d times, want once", id, n)
			}
			if n := copiesOf(t, good, subject); n != 1 {
				t.Errorf("the sink has %d copies, want 1", n)
			}
			dups := 0
			if bad != nil {
				// A disconnect after the end of data (RFC 1047): the
				// faulty sink may have the message although the relay
				// never got its reply, and the retry sends it again.
				dups = copiesOf(t, bad, subject)
				if c.args[0] != "-q" && dups > 0 {
					t.Errorf("the faulty sink kept %d copies, although it refused the message", dups)
				}
			}
			if m := find(recs, "dsn queued", "id", id); len(m) > 0 {
				t.Errorf("a DSN was queued for a delivery that succeeded after a temporary fault: %v", m)
			}
			t.Logf("%s: %d deferred attempt(s) (first: code=%q reply=%q), then sent; duplicates at the faulty sink: %d",
				c.name, deferred, first["code"], first["reply"], dups)
		})
	}
}

// checkBounce: the permanent failure of id is a failure DSN, queued by
// the relay and delivered from <> to the sender, naming the recipient and
// the remote reply; the original never reached the good sink and both
// left the spool.
func checkBounce(t *testing.T, r *relayProc, id string, dsnSink, good *smtpbed.Sink, subject string) {
	t.Helper()
	var dsnID string
	r.WaitLog(20*time.Second, "the DSN of "+id+" queued and sent", func(recs []logRecord) bool {
		q := find(recs, "dsn queued", "id", id)
		if len(q) == 0 {
			return false
		}
		dsnID = q[0]["dsn_id"]
		return len(find(recs, "delivery", "id", dsnID, "status", "sent")) > 0 &&
			len(find(recs, "removed", "id", id)) > 0 && len(find(recs, "removed", "id", dsnID)) > 0
	})
	recs := r.Records()
	if q := find(recs, "dsn queued", "id", id); q[0]["kind"] != "failed" {
		t.Errorf("DSN kind %q, want failed: %v", q[0]["kind"], q[0])
	}
	if n := len(find(recs, "delivery", "id", id)); n != 1 {
		t.Errorf("%s was attempted %d times, want once (a permanent failure is not retried)", id, n)
	}
	msgs := dsnSink.WaitMessages(t, 1)
	if len(msgs) != 1 {
		t.Fatalf("the sender's sink has %d messages, want the DSN", len(msgs))
	}
	d := msgs[0]
	if !strings.HasPrefix(d.MailArgs, "<>") {
		t.Errorf("the DSN's envelope sender is %q, want <>", d.MailArgs)
	}
	if len(d.RcptArgs) != 1 || !strings.HasPrefix(d.RcptArgs[0], "<alice@sender.test>") {
		t.Errorf("the DSN went to %q, want <alice@sender.test>", d.RcptArgs)
	}
	for _, want := range []string{"multipart/report", "report-type=delivery-status", "Final-Recipient: rfc822; bob@dest.test",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1", "Subject: " + subject} {
		if !strings.Contains(d.Data, want) {
			t.Errorf("the DSN lacks %q:\n%s", want, d.Data)
		}
	}
	if n := copiesOf(t, good, subject); n != 0 {
		t.Errorf("the refused message reached the good sink %d times", n)
	}
	t.Logf("5xx: %s bounced (%s), DSN %s delivered from <> to alice@sender.test", id, find(recs, "delivery", "id", id)[0]["reply"], dsnID)
}
