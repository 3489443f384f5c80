package transport_test

// Tests against real third-party receivers: Postfix's smtp-sink (plain SMTP
// and LMTP, with its fault switches) and aiosmtpd (STARTTLS).

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// unixBody is body with LF line ends, as the sink's dump files have it.
var unixBody = strings.ReplaceAll(body, "\r\n", "\n")

func TestSinkDelivery(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	c := newClient(t, nil)
	p := planFor(sink.Addr)
	tricky := "Subject: dots\n\n.\n..double\nbare\rCR\n8bit: caf\xc3\xa9\n"
	res := deliver(t, c, p, newMsg(tricky, "a@example.test", "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	msgs := sink.WaitMessages(t, 1)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	want := "Subject: dots\n\n.\n..double\nbare\nCR\n8bit: caf\xc3\xa9\n"
	if m.Data != want || m.ClientAddr != "127.0.0.1" || m.Helo != "client.example.org" || m.Proto != "ESMTP" {
		t.Errorf("dump %+v\nwant data %q", m, want)
	}
	if m.MailArgs != "<sender@example.org> BODY=8BITMIME" || strings.Join(m.RcptArgs, ",") != "<a@example.test>,<b@example.test>" {
		t.Errorf("args %q %q", m.MailArgs, m.RcptArgs)
	}
}

func TestSinkSourceAddress(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	c := newClient(t, nil)
	p := planFor(sink.Addr)
	for i := range 4 {
		// The engine chooses each connection's source; the transport
		// binds it.
		src := []string{"127.0.0.5", "127.0.0.6"}[i%2]
		eachTarget(p, func(t *transport.Target) { t.Source = netip.MustParseAddr(src) })
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	}
	seen := map[string]int{}
	for _, m := range sink.WaitMessages(t, 4) {
		seen[m.ClientAddr]++
	}
	if seen["127.0.0.5"] != 2 || seen["127.0.0.6"] != 2 {
		t.Errorf("client addresses seen by the sink: %v", seen)
	}
}

func TestSinkLMTP(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{LMTP: true})
	p := with(planFor(sink.Addr), func(h *transport.Host) { h.Protocol = transport.LMTP })
	res := deliver(t, newClient(t, nil), p, newMsg(body, "a@example.test", "b@example.test", "c@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	m := sink.WaitMessages(t, 1)
	if len(m) != 1 || m[0].Proto != "LMTP" || len(m[0].RcptArgs) != 3 || m[0].Data != unixBody {
		t.Errorf("dump %+v", m)
	}
}

func TestSinkReuse(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	c := newClient(t, nil)
	p := planFor(sink.Addr)
	setMPC(p, 4)
	for range 10 {
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	}
	msgs := sink.WaitMessages(t, 10)
	if len(msgs) != 10 {
		t.Fatalf("%d messages", len(msgs))
	}
	for _, m := range msgs {
		if m.Data != unixBody {
			t.Fatalf("data %q", m.Data)
		}
	}
}

func TestSinkAuthPlaintextAllowed(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	p := with(planFor(sink.Addr), func(h *transport.Host) {
		h.IsRelay, h.AllowPlaintextAuth = true, true
		h.Auth = &transport.Auth{Username: "u", Secret: "p"}
	})
	res := deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
}

// smtp-sink's fault switches, one sink each.
func TestSinkFaults(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		lmtp   bool
		mod    func(*transport.Plan)
		msg    func(*transport.Message)
		st     transport.Status
		class  transport.Class
		code   int
		stored int // messages the sink must have captured
	}{
		{name: "RCPT 4xx", args: []string{"-r", "RCPT"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 450},
		{name: "RCPT 4xx custom text", args: []string{"-b", "451 4.7.1 Greylisted, try later", "-r", "RCPT"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 451},
		{name: "MAIL 5xx", args: []string{"-f", "MAIL"}, st: transport.StatusPermanent, class: transport.ClassUnexpectedReply, code: 500},
		{name: "MAIL 4xx", args: []string{"-r", "MAIL"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 450},
		{name: "EHLO 5xx: HELO fallback", args: []string{"-f", "EHLO"}, st: transport.StatusDelivered, class: transport.ClassNone, code: 250, stored: 1},
		{name: "EHLO 4xx", args: []string{"-r", "EHLO"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 450},
		{name: "EHLO and HELO 5xx", args: []string{"-f", "EHLO,HELO"}, st: transport.StatusPermanent, class: transport.ClassUnexpectedReply, code: 500},
		{name: "DATA 4xx", args: []string{"-r", "DATA"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 450},
		{name: "DATA 5xx", args: []string{"-f", "DATA"}, st: transport.StatusPermanent, class: transport.ClassUnexpectedReply, code: 500},
		{name: "final dot 4xx", args: []string{"-r", "."}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 450},
		{name: "421 at DATA", args: []string{"-Q", "DATA"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 421},
		{name: "421 at connect", args: []string{"-Q", "CONNECT"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 421},
		{name: "5xx at connect", args: []string{"-f", "CONNECT"}, st: transport.StatusPermanent, class: transport.ClassUnexpectedReply, code: 500},
		{name: "drop after final dot", args: []string{"-q", "."}, st: transport.StatusTemporary, class: transport.ClassIO, code: 451},
		{name: "drop at RCPT", args: []string{"-q", "RCPT"}, st: transport.StatusTemporary, class: transport.ClassIO, code: 451},
		{name: "drop at EHLO", args: []string{"-q", "EHLO"}, st: transport.StatusTemporary, class: transport.ClassIO, code: 451},
		{name: "abort mid DATA", args: []string{"-A", "0"}, st: transport.StatusPermanent, class: transport.ClassUnexpectedReply, code: 550},
		{name: "slow EHLO beats the timeout", args: []string{"-W", "EHLO:1"},
			mod: func(p *transport.Plan) {
				eachTarget(p, func(t *transport.Target) { t.Timeouts.EHLO = 300 * time.Millisecond })
			},
			st: transport.StatusTemporary, class: transport.ClassIO, code: 451},
		{name: "slow DATA within the timeout", args: []string{"-w", "1"}, st: transport.StatusDelivered, class: transport.ClassNone, code: 250, stored: 1},
		{name: "no PIPELINING", args: []string{"-p"}, st: transport.StatusDelivered, class: transport.ClassNone, code: 250, stored: 1},
		{name: "no ESMTP: HELO", args: []string{"-e"}, st: transport.StatusDelivered, class: transport.ClassNone, code: 250, stored: 1},
		// TLS required but impossible: deferred, not bounced (RFC 8461
		// section 5.1), unless the message itself requires TLS (RFC 8689).
		{name: "no ESMTP, TLS required", args: []string{"-e"}, mod: func(p *transport.Plan) { with(p, requireTLS) },
			st: transport.StatusTemporary, class: transport.ClassTLS, code: 451},
		{name: "no STARTTLS, TLS required", mod: func(p *transport.Plan) { with(p, requireTLS) },
			st: transport.StatusTemporary, class: transport.ClassTLS, code: 451},
		{name: "no STARTTLS, MTA-STS enforce", mod: func(p *transport.Plan) { with(p, func(h *transport.Host) { h.MTASTSEnforce = true }) },
			st: transport.StatusTemporary, class: transport.ClassTLS, code: 451},
		{name: "no STARTTLS, REQUIRETLS message", msg: func(m *transport.Message) { m.RequireTLS = true },
			st: transport.StatusPermanent, class: transport.ClassTLS, code: 550},
		{name: "no ESMTP, REQUIRETLS message", args: []string{"-e"}, msg: func(m *transport.Message) { m.RequireTLS = true },
			st: transport.StatusPermanent, class: transport.ClassTLS, code: 550},
		{name: "LMTP, LHLO 5xx: no HELO fallback", lmtp: true, args: []string{"-f", "LHLO"}, st: transport.StatusPermanent, class: transport.ClassUnexpectedReply, code: 500},
		{name: "LMTP, RCPT 4xx", lmtp: true, args: []string{"-r", "RCPT"}, st: transport.StatusTemporary, class: transport.ClassUnexpectedReply, code: 450},
		{name: "LMTP, 5xx after final dot", lmtp: true, args: []string{"-f", "."}, st: transport.StatusPermanent, class: transport.ClassUnexpectedReply, code: 500},
		{name: "LMTP, drop after final dot", lmtp: true, args: []string{"-q", "."}, st: transport.StatusTemporary, class: transport.ClassIO, code: 451},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: tt.args, LMTP: tt.lmtp})
			p := planFor(sink.Addr)
			if tt.lmtp {
				with(p, func(h *transport.Host) { h.Protocol = transport.LMTP })
			}
			if tt.mod != nil {
				tt.mod(p)
			}
			m := newMsg(body, "a@example.test", "b@example.test")
			if tt.msg != nil {
				tt.msg(m)
			}
			res := deliver(t, newClient(t, nil), p, m)
			wantAll(t, res, tt.st, tt.class)
			if res[0].Code != tt.code {
				t.Errorf("code %d, want %d%s", res[0].Code, tt.code, dump(res))
			}
			if tt.class == transport.ClassTLS {
				if e := res[0].Enhanced.String(); e != "4.7.10" && e != "5.7.10" || res[0].Err.TLSResult != transport.TLSResultStartTLSNotSupported {
					t.Errorf("enhanced %s, TLS-RPT %q%s", e, res[0].Err.TLSResult, dump(res))
				}
				if got := sink.Messages(t); len(got) != 0 {
					t.Errorf("sink has %+v", got)
				}
			}
			if tt.stored > 0 {
				got := sink.WaitMessages(t, tt.stored)
				if len(got) != tt.stored || got[0].Data != unixBody {
					t.Errorf("sink has %+v", got)
				}
			}
		})
	}
}

func TestAIOSinkSTARTTLS(t *testing.T) {
	ca := smtpbed.NewCA(t)
	leaf := ca.Issue(t, "mx1.example.test", "127.0.0.1")
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Leaf: leaf})
	c := newClient(t, ca.Pool)
	host := func(name string, mods ...func(*transport.Host)) *transport.Plan {
		p := planFor(sink.Addr)
		p.Hosts[0].Name = name
		return with(p, mods...)
	}
	n := 0
	t.Run("require, verified", func(t *testing.T) {
		m := newMsg("Subject: tls\n\n.leading dot\n"+marker+"\n", "b@example.test", "c@example.test")
		res := deliver(t, c, host("mx1.example.test", requireTLS), m)
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		r := res[0]
		if r.TLS.Verified != transport.VerifiedPKIX || r.TLS.Version < tls.VersionTLS12 || r.Text != "queued" {
			t.Errorf("%s", dump(res))
		}
		n++
		msgs := sink.WaitMessages(t, n)
		if len(msgs) != n {
			t.Fatalf("%d messages", len(msgs))
		}
		got := msgs[n-1]
		if !got.TLS || got.From != "sender@example.org" || strings.Join(got.Rcpts, ",") != "b@example.test,c@example.test" ||
			string(got.Content) != "Subject: tls\r\n\r\n.leading dot\r\n"+marker+"\r\n" {
			t.Errorf("received %+v %q", got, got.Content)
		}
	})
	t.Run("wrong name refused", func(t *testing.T) {
		// Through a proxy that says when aiosmtpd has closed the
		// connection: it has then handled all it received, and any
		// message would be on disk (it is written before the 250).
		proxy := startCloseProxy(t, sink.Addr)
		p := host("mx2.example.test", requireTLS)
		p.Hosts[0].Port = int(proxy.Addr.Port())
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
		if !strings.Contains(res[0].Text, "mx2.example.test") {
			t.Errorf("text %q", res[0].Text)
		}
		proxy.waitClosed(t, 1)
		if len(sink.Messages(t)) != n {
			t.Error("message delivered despite a wrong certificate name")
		}
	})
	t.Run("allow-invalid-certs", func(t *testing.T) {
		res := deliver(t, c, host("mx2.example.test", requireTLS, allowInvalid), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if res[0].TLS.Verified != transport.VerifiedNone || !res[0].TLS.Enabled() {
			t.Errorf("%s", dump(res))
		}
		n++
		if m := sink.WaitMessages(t, n); len(m) != n || !m[n-1].TLS {
			t.Errorf("messages %+v", m)
		}
	})
	t.Run("SMTPUTF8 and 8BITMIME over TLS", func(t *testing.T) {
		m := newMsg("Subject: =?utf-8?q?x?=\n\nd\xc3\xa9j\xc3\xa0\n", "ünï@example.test")
		res := deliver(t, c, host("mx1.example.test", requireTLS), m)
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		n++
		msgs := sink.WaitMessages(t, n)
		got := msgs[len(msgs)-1]
		if got.Rcpts[0] != "ünï@example.test" || !strings.Contains(strings.Join(got.MailOptions, " "), "SMTPUTF8") ||
			!strings.Contains(strings.Join(got.MailOptions, " "), "BODY=8BITMIME") {
			t.Errorf("received %+v", got)
		}
	})
	t.Run("untrusted CA", func(t *testing.T) {
		c2 := newClient(t, smtpbed.NewCA(t).Pool)
		res := deliver(t, c2, host("mx1.example.test", requireTLS), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
	})
}

func TestAIOSinkLMTPOverTLS(t *testing.T) {
	ca := smtpbed.NewCA(t)
	leaf := ca.Issue(t, "mx1.example.test")
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Leaf: leaf, LMTP: true,
		LMTPReplies: []string{"250 2.0.0 ok", "452 4.2.2 mailbox full", "550 5.1.1 gone"}})
	p := with(planFor(sink.Addr), requireTLS, func(h *transport.Host) { h.Name = "mx1.example.test"; h.Protocol = transport.LMTP })
	res := deliver(t, newClient(t, ca.Pool), p, newMsg(body, "a@example.test", "b@example.test", "c@example.test"))
	wantStatus(t, res, transport.StatusDelivered, transport.StatusTemporary, transport.StatusPermanent)
	if res[1].Enhanced.String() != "4.2.2" || res[2].Code != 550 || res[0].TLS.Verified != transport.VerifiedPKIX {
		t.Errorf("%s", dump(res))
	}
	if m := sink.WaitMessages(t, 1); len(m) != 1 || !m[0].TLS || len(m[0].Rcpts) != 3 {
		t.Errorf("received %+v", m)
	}
}

// closeProxy forwards loopback connections to a server and counts those
// that have ended on both sides: the client's side, and then the server's,
// which has by then handled everything it received.
type closeProxy struct {
	Addr netip.AddrPort

	mu     sync.Mutex
	conns  []net.Conn
	closed int
	ev     chan struct{} // closed (and replaced) when a connection ends
}

func startCloseProxy(t *testing.T, upstream netip.AddrPort) *closeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &closeProxy{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), ev: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream.String())
			if err != nil {
				t.Errorf("proxy: %v", err)
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			wg.Go(func() {
				up := make(chan struct{})
				go func() {
					// Client to server; the client's end of stream goes
					// on as a half close.
					_, _ = io.Copy(u, c)
					_ = u.(*net.TCPConn).CloseWrite()
					close(up)
				}()
				_, _ = io.Copy(c, u) // until the server closes
				c.Close()
				<-up
				u.Close()
				p.mu.Lock()
				p.closed++
				close(p.ev)
				p.ev = make(chan struct{})
				p.mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

// waitClosed waits until n connections have ended; the test fails after
// 10s (which only bounds a test that is already broken).
func (p *closeProxy) waitClosed(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		closed, ev := p.closed, p.ev
		p.mu.Unlock()
		if closed >= n {
			return
		}
		select {
		case <-ev:
		case <-deadline.C:
			t.Fatalf("proxy: %d of %d connections ended after 10s", closed, n)
		}
	}
}
