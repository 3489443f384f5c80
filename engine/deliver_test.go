package engine_test

// Tests of Engine.Deliver against real receivers the test starts on
// loopback: Postfix's smtp-sink (SMTP and LMTP, with its fault switches)
// and aiosmtpd (STARTTLS with a throwaway CA). Policies use relay routes to
// 127.0.0.1:PORT (MX routes never connect to loopback, by design) and a
// static zone file for DNS. Without the receivers installed the tests are
// skipped, or fail under POSTERN_REQUIRE_PEERS=1.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// TestDeliverMultiDomain delivers one message to recipients that go to two
// relays (three groups, delivered in parallel), a local domain and a
// null-MX domain, with one recipient listed twice.
func TestDeliverMultiDomain(t *testing.T) {
	t.Parallel()
	// -w 2: each sink waits two seconds before answering DATA, so three
	// groups one after the other would take six seconds.
	sinkA := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "2"}})
	sinkB := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "2"}})
	policy := `local-domains: [local.test]
routing:
  route:
    - if: is_local_domain(rcpt_domain)
      then: local
    - if: rcpt_domain in ["a.test", "c.test"]
      then: relay-a
    - if: rcpt_domain == "b.test"
      then: relay-b
    - else: mx
  routes:
` + relayRoute("relay-a", sinkA.Addr) + relayRoute("relay-b", sinkB.Addr) + `limits:
  messages-per-connection: 1   # no idle connections: open means in use
`
	dialer := &peakDialer{}
	e := newDeliverEngine(t, policy, engine.Options{Dialer: dialer})
	msg := engine.Message{From: "alice@sender.test", To: []string{
		"x1@a.test",          // 0 relay-a, group a.test
		"y@b.test",           // 1 relay-b
		"lou@local.test",     // 2 local
		"nobody@nullmx.test", // 3 mx: null MX, permanent
		"x1@a.test",          // 4 listed twice
		"x2@a.test",          // 5 relay-a, group a.test
		"z@c.test",           // 6 relay-a, group c.test
	}}
	res := runDeliver(t, e, msg, deliverBody)

	for _, i := range []int{0, 4, 5, 6} {
		wantResult(t, res, i, transport.StatusDelivered, transport.ClassNone)
		if res[i].Route != "relay-a" || res[i].Address != sinkA.Addr || res[i].Code != 250 {
			t.Errorf("result %d: route %s address %v code %d, want relay-a %v 250", i, res[i].Route, res[i].Address, res[i].Code, sinkA.Addr)
		}
	}
	wantResult(t, res, 1, transport.StatusDelivered, transport.ClassNone)
	if res[1].Route != "relay-b" || res[1].Address != sinkB.Addr {
		t.Errorf("result 1: route %s address %v, want relay-b %v", res[1].Route, res[1].Address, sinkB.Addr)
	}
	wantLocal(t, res, 2, "local")
	wantResult(t, res, 3, transport.StatusPermanent, transport.ClassDNS)
	if res[3].Address.IsValid() || res[3].Source.IsValid() || res[3].Route != "mx" || !strings.Contains(strings.ToLower(res[3].Text), "null mx") {
		t.Errorf("null MX result: %+v (want no connection, route mx, text about the null MX)", res[3])
	}
	// Each sink holds DATA for 2s, so groups delivered in parallel have
	// their connections open at the same time.
	if peak := dialer.peak.Load(); peak < 2 {
		t.Errorf("at most %d connection open at once: the three groups were not delivered in parallel", peak)
	}

	got := sinkA.WaitMessages(t, 2)
	if len(got) != 2 {
		t.Fatalf("relay A captured %d messages, want 2 (groups a.test and c.test)", len(got))
	}
	slices.SortFunc(got, func(a, b smtpbed.Dumped) int { return len(b.RcptArgs) - len(a.RcptArgs) })
	groupA, groupC := got[0], got[1]
	if d := slices.Compact(rcptArgs(groupA)); !slices.Equal(d, []string{"<x1@a.test>", "<x2@a.test>"}) {
		t.Errorf("a.test group: RCPT %q", groupA.RcptArgs)
	}
	if !slices.Equal(groupC.RcptArgs, []string{"<z@c.test>"}) {
		t.Errorf("c.test group: RCPT %q", groupC.RcptArgs)
	}
	gotB := sinkB.WaitMessages(t, 1)
	if len(gotB) != 1 || !slices.Equal(gotB[0].RcptArgs, []string{"<y@b.test>"}) {
		t.Fatalf("relay B captured %+v", gotB)
	}
	for _, m := range append(got, gotB...) {
		if m.Data != sinkBody {
			t.Errorf("message altered in transit:\n got %q\nwant %q", m.Data, sinkBody)
		}
		// BODY=8BITMIME: the body has 8-bit text.
		if m.MailArgs != "<alice@sender.test> BODY=8BITMIME" {
			t.Errorf("MAIL FROM arguments %q", m.MailArgs)
		}
		if m.Helo != "mta.sender.test" || m.ClientAddr != "127.0.0.1" || m.Proto != "ESMTP" {
			t.Errorf("session: helo %q client %q proto %q", m.Helo, m.ClientAddr, m.Proto)
		}
	}
}

// TestDeliverSTARTTLS delivers to aiosmtpd over STARTTLS with a throwaway
// CA: verified with the right roots, refused (temporary, nothing sent) with
// the wrong ones or a name the certificate does not cover, and accepted
// unverified when allow-invalid-certs says so.
func TestDeliverSTARTTLS(t *testing.T) {
	t.Parallel()
	ca, otherCA := smtpbed.NewCA(t), smtpbed.NewCA(t)
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Leaf: ca.Issue(t, "smtp.relay.test")})
	port := sink.Addr.Port()
	route := func(address string, extra ...string) string {
		s := fmt.Sprintf("routing:\n  route: tls-relay\n  routes:\n    tls-relay:\n      type: relay\n      address: %s\n      port: %d\n", address, port)
		for _, e := range extra {
			s += "      " + e + "\n"
		}
		return s
	}
	msg := engine.Message{From: "alice@sender.test", To: []string{"bob@dest.test", "carol@dest.test"}}
	delivered := 0
	tests := []struct {
		name       string
		policy     string
		roots      *smtpbed.CA
		requireTLS bool // the message asks for REQUIRETLS (RFC 8689)
		ok         bool
		verified   transport.Verification
		code       int    // of a failure
		result     string // the RFC 8460 result type of a failure
	}{
		{name: "require, verified", policy: route("smtp.relay.test") + "tls:\n  starttls: require\n",
			roots: ca, ok: true, verified: transport.VerifiedPKIX},
		{name: "require, wrong CA", policy: route("smtp.relay.test") + "tls:\n  starttls: require\n",
			roots: otherCA, code: 454, result: transport.TLSResultNotTrusted},
		{name: "require, name not in the certificate", policy: route("127.0.0.1") + "tls:\n  starttls: require\n",
			roots: ca, code: 454, result: transport.TLSResultHostMismatch},
		{name: "require, wrong CA, route allow-invalid-certs", policy: route("smtp.relay.test", "allow-invalid-certs: true") + "tls:\n  starttls: require\n",
			roots: otherCA, ok: true, verified: transport.VerifiedNone},
		{name: "require, wrong CA, tls.allow-invalid-certs", policy: route("smtp.relay.test") + "tls:\n  starttls: require\n  allow-invalid-certs: true\n",
			roots: otherCA, ok: true, verified: transport.VerifiedNone},
		{name: "optional, verified", policy: route("smtp.relay.test"), roots: ca, ok: true, verified: transport.VerifiedPKIX},
		// aiosmtpd does not offer REQUIRETLS: the message must not go, not
		// even over verified TLS, and waiting will not help.
		{name: "REQUIRETLS not offered", policy: route("smtp.relay.test"), roots: ca, requireTLS: true, code: 550},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDeliverEngine(t, tt.policy, engine.Options{RootCAs: tt.roots.Pool})
			msg := msg
			msg.RequireTLS = tt.requireTLS
			res := runDeliver(t, e, msg, deliverBody)
			for i, r := range res {
				if !tt.ok {
					status := transport.StatusTemporary
					if tt.code >= 500 {
						status = transport.StatusPermanent
					}
					wantResult(t, res, i, status, transport.ClassTLS)
					if r.Err == nil || r.Err.TLSResult != tt.result || r.Code != tt.code {
						t.Errorf("result %d: code %d, error %+v, want %d and TLS-RPT result %q", i, r.Code, r.Err, tt.code, tt.result)
					}
					continue
				}
				wantResult(t, res, i, transport.StatusDelivered, transport.ClassNone)
				if r.TLS.Version != tls.VersionTLS13 || r.TLS.CipherSuite == 0 || r.TLS.Verified != tt.verified || r.TLS.ServerName != "smtp.relay.test" {
					t.Errorf("result %d: TLS %+v, want TLS 1.3 verified=%s for smtp.relay.test", i, r.TLS, tt.verified)
				}
				if r.Host != "smtp.relay.test" || r.Address != sink.Addr {
					t.Errorf("result %d: host %s address %v", i, r.Host, r.Address)
				}
			}
			// TLS-RPT: one session (no policy: the relay's zone is
			// not signed), shared by the two recipients and counted
			// once; a failure carries its result type.
			recs := engine.TLSRPTRecords(res)
			wantType := tt.result
			if tt.ok || tt.requireTLS {
				wantType = "" // TLS itself succeeded
			}
			if len(recs) != 1 || recs[0].PolicyType != tlsrpt.NoPolicyFound || recs[0].ResultType != wantType ||
				recs[0].ReceivingIP != sink.Addr.Addr() || recs[0].PolicyDomain != "dest.test" || recs[0].ReceivingMXHostname != res[0].Host {
				t.Errorf("TLS-RPT records %+v, want one no-policy-found record of type %q", recs, wantType)
			}
			if tt.ok {
				delivered++
			}
			// A refused session never reached DATA, so the count tells
			// whether any message went through.
			msgs := sink.WaitMessages(t, delivered)
			if len(msgs) != delivered {
				t.Fatalf("the receiver has %d messages, want %d", len(msgs), delivered)
			}
			if !tt.ok {
				return
			}
			m := msgs[delivered-1]
			if !m.TLS || m.From != "alice@sender.test" || !slices.Equal(m.Rcpts, msg.To) || m.Helo != "mta.sender.test" {
				t.Errorf("received %+v", m)
			}
			if string(m.Content) != crlfBody {
				t.Errorf("message altered in transit:\n got %q\nwant %q", m.Content, crlfBody)
			}
		})
	}
}

// TestDeliverLMTP delivers over LMTP relays: one reply per recipient after
// the data.
func TestDeliverLMTP(t *testing.T) {
	t.Parallel()
	to := []string{"a@dest.test", "b@dest.test", "c@dest.test"}
	msg := engine.Message{From: "alice@sender.test", To: to}
	t.Run("smtp-sink", func(t *testing.T) {
		t.Parallel()
		sink := smtpbed.StartSink(t, smtpbed.SinkOptions{LMTP: true})
		e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "", "protocol: lmtp"), engine.Options{})
		res := runDeliver(t, e, msg, deliverBody)
		for i, r := range res {
			wantResult(t, res, i, transport.StatusDelivered, transport.ClassNone)
			if r.Protocol != transport.LMTP || r.Code != 250 {
				t.Errorf("result %d: protocol %s code %d", i, r.Protocol, r.Code)
			}
		}
		m := sink.WaitMessages(t, 1)
		if len(m) != 1 || m[0].Proto != "LMTP" || !slices.Equal(m[0].RcptArgs, []string{"<a@dest.test>", "<b@dest.test>", "<c@dest.test>"}) || m[0].Data != sinkBody {
			t.Errorf("captured %+v", m)
		}
	})
	t.Run("smtp-sink 5xx after the final dot", func(t *testing.T) {
		t.Parallel()
		sink := smtpbed.StartSink(t, smtpbed.SinkOptions{LMTP: true, Args: []string{"-f", "."}})
		e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "", "protocol: lmtp"), engine.Options{})
		res := runDeliver(t, e, msg, deliverBody)
		for i, r := range res {
			wantResult(t, res, i, transport.StatusPermanent, transport.ClassUnexpectedReply)
			if r.Code != 500 || r.Protocol != transport.LMTP {
				t.Errorf("result %d: code %d protocol %s", i, r.Code, r.Protocol)
			}
		}
	})
	t.Run("aiosmtpd, a different reply per recipient", func(t *testing.T) {
		t.Parallel()
		ca := smtpbed.NewCA(t)
		sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{LMTP: true, Leaf: ca.Issue(t, "smtp.relay.test"),
			LMTPReplies: []string{"250 2.1.5 ok", "452 4.2.2 mailbox full", "550 5.1.1 no such user"}})
		policy := "routing:\n  route: lmtp\n  routes:\n    lmtp:\n      type: relay\n      address: smtp.relay.test\n" +
			fmt.Sprintf("      port: %d\n      protocol: lmtp\n", sink.Addr.Port())
		e := newDeliverEngine(t, policy, engine.Options{RootCAs: ca.Pool})
		res := runDeliver(t, e, msg, deliverBody)
		wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
		wantResult(t, res, 1, transport.StatusTemporary, transport.ClassUnexpectedReply)
		wantResult(t, res, 2, transport.StatusPermanent, transport.ClassUnexpectedReply)
		want := []struct {
			code int
			enh  string
			text string
		}{{250, "2.1.5", "ok"}, {452, "4.2.2", "mailbox full"}, {550, "5.1.1", "no such user"}}
		for i, w := range want {
			r := res[i]
			if r.Code != w.code || r.Enhanced.String() != w.enh || !strings.Contains(r.Text, w.text) || r.Protocol != transport.LMTP || r.TLS.Verified != transport.VerifiedPKIX {
				t.Errorf("result %d: %d %s %q protocol %s TLS %v, want %d %s %q over verified TLS", i, r.Code, r.Enhanced, r.Text, r.Protocol, r.TLS, w.code, w.enh, w.text)
			}
		}
		if m := sink.WaitMessages(t, 1); len(m) != 1 || !m[0].TLS || !slices.Equal(m[0].Rcpts, to) || string(m[0].Content) != crlfBody {
			t.Errorf("received %+v", m)
		}
	})
}

// TestDeliverSourceIP binds the policy's source address of the remote's
// family: the IPv6 entry is ignored for an IPv4 relay.
func TestDeliverSourceIP(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "ip-strategy:\n  source-ips: [\"::1\", 127.0.0.7]\n"), engine.Options{})
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"bob@dest.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	if res[0].Source.Addr() != netip.MustParseAddr("127.0.0.7") {
		t.Errorf("result source %v, want 127.0.0.7", res[0].Source)
	}
	if m := sink.WaitMessages(t, 1); len(m) != 1 || m[0].ClientAddr != "127.0.0.7" {
		t.Errorf("captured %+v", m)
	}
}

// TestDeliverRateThrottle: a rate throttle keyed by recipient domain that
// is used up defers the next group of that domain (class rate, with the
// time the next token is due) and never rejects it; other domains pass.
func TestDeliverRateThrottle(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	policy := oneRelayPolicy(sink.Addr, "limits:\n  throttles:\n    - name: per-domain\n      key: [rcpt_domain]\n      rate: 1/1h\n")
	e := newDeliverEngine(t, policy, engine.Options{Clock: func() time.Time { return now }})
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"u@a.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)

	res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"v@a.test", "w@b.test"}}, deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassRate)
	wantResult(t, res, 1, transport.StatusDelivered, transport.ClassNone)
	r := res[0]
	if !r.RetryAfter.Equal(now.Add(time.Hour)) || r.Code != 451 || r.Enhanced.String() != "4.7.0" || r.Err == nil || r.Err.Permanent ||
		!strings.Contains(r.Text, "per-domain") || r.Address.IsValid() {
		t.Errorf("deferred result: %s\nwant 451 4.7.0 about throttle per-domain, retry after %v, no connection", formatResults(res), now.Add(time.Hour))
	}
	if res[1].RetryAfter != (time.Time{}) {
		t.Errorf("a delivered result has RetryAfter %v", res[1].RetryAfter)
	}
	msgs := sink.WaitMessages(t, 2)
	var rcpts []string
	for _, m := range msgs {
		rcpts = append(rcpts, m.RcptArgs...)
	}
	slices.Sort(rcpts)
	if !slices.Equal(rcpts, []string{"<u@a.test>", "<w@b.test>"}) {
		t.Errorf("the sink saw %q, want only <u@a.test> and <w@b.test>", rcpts)
	}
}

// TestDeliverConcurrencyThrottle: with concurrency 1 a second delivery to
// the same domain while the first is in flight is deferred (class
// concurrency); once the first is done, the slot is free again — after a
// success and after a failure.
func TestDeliverConcurrencyThrottle(t *testing.T) {
	t.Parallel()
	throttle := "limits:\n  throttles:\n    - name: one-at-a-time\n      key: [rcpt_domain]\n      concurrency: 1\n"
	t.Run("in flight, then released", func(t *testing.T) {
		t.Parallel()
		sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "2"}}) // two seconds before the DATA reply
		e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, throttle), engine.Options{})
		first := make(chan []engine.Result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, _ := e.Deliver(ctx, engine.Message{From: "alice@sender.test", To: []string{"u@a.test"}}, strings.NewReader(deliverBody))
			first <- res
		}()
		waitInUse(t, e, "one-at-a-time", "u@a.test") // the first holds the slot for about two seconds
		res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"v@a.test"}}, deliverBody)
		wantResult(t, res, 0, transport.StatusTemporary, transport.ClassConcurrency)
		if res[0].RetryAfter.IsZero() || res[0].Address.IsValid() {
			t.Errorf("deferred result: %s", formatResults(res))
		}
		res = <-first
		checkDeliverResults(t, []string{"u@a.test"}, res)
		wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
		res = runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"x@a.test"}}, deliverBody)
		wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
		if n := len(sink.WaitMessages(t, 2)); n != 2 {
			t.Errorf("the sink has %d messages, want 2", n)
		}
	})
	t.Run("released after a failure", func(t *testing.T) {
		t.Parallel()
		e := newDeliverEngine(t, oneRelayPolicy(closedPort(t), throttle), engine.Options{})
		for range 3 {
			res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"u@a.test"}}, deliverBody)
			wantResult(t, res, 0, transport.StatusTemporary, transport.ClassConnection)
		}
	})
}

// TestDeliverConnectionReuse: two Deliver calls share one connection when
// messages-per-connection allows it, and open two when it is 1.
func TestDeliverConnectionReuse(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		mpc   int
		conns int
	}{{10, 1}, {1, 2}} {
		t.Run(fmt.Sprintf("messages-per-connection %d", tt.mpc), func(t *testing.T) {
			t.Parallel()
			sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
			proxy := startCountingProxy(t, sink.Addr)
			e := newDeliverEngine(t, oneRelayPolicy(proxy.Addr, fmt.Sprintf("limits:\n  messages-per-connection: %d\n", tt.mpc)), engine.Options{})
			msg := engine.Message{From: "alice@sender.test", To: []string{"bob@dest.test"}}
			r1 := runDeliver(t, e, msg, deliverBody)
			r2 := runDeliver(t, e, msg, deliverBody)
			wantResult(t, r1, 0, transport.StatusDelivered, transport.ClassNone)
			wantResult(t, r2, 0, transport.StatusDelivered, transport.ClassNone)
			if same := r1[0].Source == r2[0].Source; same != (tt.conns == 1) {
				t.Errorf("sources %v and %v: same=%v, want %v", r1[0].Source, r2[0].Source, same, tt.conns == 1)
			}
			if n := len(sink.WaitMessages(t, 2)); n != 2 {
				t.Errorf("the sink has %d messages, want 2", n)
			}
			if got := proxy.Count(); got != tt.conns {
				t.Errorf("%d connections opened, want %d", got, tt.conns)
			}
		})
	}
}

// TestDeliverCancel: cancelling the context while groups are in flight
// gives every recipient being delivered a temporary result, promptly; the
// decided ones keep their results. A context already done is refused.
func TestDeliverCancel(t *testing.T) {
	t.Parallel()
	// -w 5: the sinks sit on DATA far longer than the test waits.
	sinkA := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "5"}})
	sinkB := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "5"}})
	policy := `local-domains: [local.test]
routing:
  route:
    - if: is_local_domain(rcpt_domain)
      then: local
    - if: rcpt_domain == "a.test"
      then: relay-a
    - if: rcpt_domain == "b.test"
      then: relay-b
    - else: mx
  routes:
` + relayRoute("relay-a", sinkA.Addr) + relayRoute("relay-b", sinkB.Addr)
	e := newDeliverEngine(t, policy, engine.Options{})
	msg := engine.Message{From: "alice@sender.test", To: []string{"u@a.test", "v@b.test", "lou@local.test", "w@a.test", "x@nullmx.test"}}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := e.Deliver(ctx, msg, strings.NewReader(deliverBody))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	checkDeliverResults(t, msg.To, res)
	for _, i := range []int{0, 1, 3} {
		wantResult(t, res, i, transport.StatusTemporary, transport.ClassIO)
	}
	wantLocal(t, res, 2, "local")
	wantResult(t, res, 4, transport.StatusPermanent, transport.ClassDNS)
	if elapsed > 3*time.Second {
		t.Errorf("Deliver returned %v after the cancellation", elapsed-300*time.Millisecond)
	}
	// smtp-sink creates its dump file at MAIL FROM: what matters is that no
	// message data arrived.
	for _, m := range append(sinkA.Messages(t), sinkB.Messages(t)...) {
		if m.Data != "" {
			t.Errorf("message data captured after the cancellation: %+v", m)
		}
	}

	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if res, err := e.Deliver(done, msg, strings.NewReader(deliverBody)); err == nil || res != nil {
		t.Errorf("Deliver with a context already done: %v, %d results", err, len(res))
	}
}

// TestDeliverSecretUnset: a relay whose secret comes from an environment
// variable that is not set defers its recipients with a message that says
// so, and connects to nothing (never AUTH with empty credentials, never
// delivery without the AUTH the policy asks for).
func TestDeliverSecretUnset(t *testing.T) {
	t.Parallel()
	const env = "POSTERN_DELIVER_TEST_SECRET_NEVER_SET"
	if _, ok := os.LookupEnv(env); ok {
		t.Fatalf("%s is set in the environment", env)
	}
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	proxy := startCountingProxy(t, sink.Addr)
	e := newDeliverEngine(t, oneRelayPolicy(proxy.Addr, "", "allow-plaintext-auth: true",
		"auth:", "  username: relay-user", "  secret: {env: "+env+"}"), engine.Options{})
	msg := engine.Message{From: "alice@sender.test", To: []string{"bob@dest.test", "carol@dest.test"}}
	res := runDeliver(t, e, msg, deliverBody)
	for i, r := range res {
		wantResult(t, res, i, transport.StatusTemporary, engine.ClassPolicy)
		if !strings.Contains(r.Text, env) || !strings.Contains(r.Text, "not set") || !strings.Contains(r.Text, "sink") || r.Address.IsValid() {
			t.Errorf("result %d: %q (address %v): want a message naming the route and %s, and no connection", i, r.Text, r.Address, env)
		}
	}
	if n := proxy.Settled(t); n != 0 {
		t.Errorf("%d connections opened to the relay", n)
	}
	if n := len(sink.Messages(t)); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
}

// TestDeliverBodyIntact checks a larger body (long lines, many dot lines)
// byte for byte at the sink.
func TestDeliverBodyIntact(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, ""), engine.Options{})
	var b bytes.Buffer
	b.WriteString("Subject: big\r\n\r\n")
	for i := range 2000 {
		switch i % 4 {
		case 0:
			b.WriteString(".\r\n")
		case 1:
			fmt.Fprintf(&b, "..%d\r\n", i)
		default:
			fmt.Fprintf(&b, "%s %d\r\n", strings.Repeat("x", 500), i)
		}
	}
	body := b.String()
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: []string{"bob@dest.test"}}, body)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	m := sink.WaitMessages(t, 1)
	if want := strings.ReplaceAll(body, "\r\n", "\n"); len(m) != 1 || m[0].Data != want {
		t.Fatalf("message altered in transit (%d captured)", len(m))
	}
}

// TestDeliverSplitAndEnvelope: limits.recipients splits a group into
// several transactions; the null sender goes out as MAIL FROM:<>; the EHLO
// name may depend on the chosen source address (connection phase).
func TestDeliverSplitAndEnvelope(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, `ip-strategy:
  source-ips: [127.0.0.8]
  ehlo-hostname:
    - if: local_ip == "127.0.0.8"
      then: eight.sender.test
    - else: other.sender.test
limits:
  recipients: 2
`), engine.Options{})
	to := []string{"r1@dest.test", "r2@dest.test", "r3@dest.test", "r4@dest.test", "r5@dest.test"}
	res := runDeliver(t, e, engine.Message{From: "", To: to}, deliverBody)
	for i := range res {
		wantResult(t, res, i, transport.StatusDelivered, transport.ClassNone)
	}
	msgs := sink.WaitMessages(t, 3)
	if len(msgs) != 3 {
		t.Fatalf("%d transactions, want 3 (5 recipients, at most 2 each)", len(msgs))
	}
	var rcpts []string
	for _, m := range msgs {
		if len(m.RcptArgs) > 2 || m.MailArgs != "<> BODY=8BITMIME" || m.Helo != "eight.sender.test" || m.ClientAddr != "127.0.0.8" || m.Data != sinkBody {
			t.Errorf("transaction %+v", m)
		}
		rcpts = append(rcpts, m.RcptArgs...)
	}
	slices.Sort(rcpts)
	if !slices.Equal(rcpts, []string{"<r1@dest.test>", "<r2@dest.test>", "<r3@dest.test>", "<r4@dest.test>", "<r5@dest.test>"}) {
		t.Errorf("recipients seen: %q", rcpts)
	}
}

// TestDeliverBadRecipient: an address that is not an address gets a
// permanent result of its own; the others are delivered.
func TestDeliverBadRecipient(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, ""), engine.Options{})
	to := []string{"good@dest.test", "not-an-address", "also@dest.test"}
	res := runDeliver(t, e, engine.Message{From: "alice@sender.test", To: to}, deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	wantResult(t, res, 1, transport.StatusPermanent, engine.ClassInvalidAddress)
	if res[1].Code != 550 || res[1].Enhanced.String() != "5.1.3" || res[1].Address.IsValid() {
		t.Errorf("bad address: %s", formatResults(res))
	}
	wantResult(t, res, 2, transport.StatusDelivered, transport.ClassNone)
}
