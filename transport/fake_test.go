package transport_test

// Loopback tests against the in-process fakeServer, which misbehaves on
// purpose at every phase.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

const marker = "MARKER-7f3a9c-SECRET-BODY"

var body = "From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\n" + marker + "\r\n"

func TestDeliverBasic(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	res := deliver(t, c, planFor(s.Addr), newMsg(body, "b@example.test", "c@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	r := res[0]
	if r.Code != 250 || r.Enhanced.String() != "2.0.0" || r.Text != "queued" || r.Host != "mx.example.test" ||
		r.Address != s.Addr || !r.Source.IsValid() || r.Protocol != transport.SMTP || r.TLS.Enabled() || r.Duration <= 0 {
		t.Errorf("result = %+v", r)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if string(m.Data) != body || m.From != "sender@example.org" || strings.Join(m.Rcpts, ",") != "b@example.test,c@example.test" || m.Helo != "client.example.org" {
		t.Errorf("message = %+v", m)
	}
	if want := "MAIL FROM:<sender@example.org> SIZE=" + fmt.Sprint(len(body)); m.MailLine != want {
		t.Errorf("MAIL line %q, want %q", m.MailLine, want)
	}
}

func TestNullSenderAndEmptyBody(t *testing.T) {
	s := newFakeServer(t, script{})
	m := newMsg("", "b@example.test")
	m.From = ""
	res := deliver(t, newClient(t, nil), planFor(s.Addr), m)
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	if got := s.Messages()[0]; got.MailLine != "MAIL FROM:<>" || len(got.Data) != 0 {
		t.Errorf("got %+v", got)
	}
}

// The body on the wire: CRLF only, dots stuffed, nothing that another
// parser could take for the end of data.
func TestBodyNormalisation(t *testing.T) {
	in := "Subject: x\n\nbare LF\nbare CR\rdot:\n.\n..two\n.\r\nsmuggle\r\n.\rMAIL FROM:<evil@x>\n\r.\nend"
	want := "Subject: x\r\n\r\nbare LF\r\nbare CR\r\ndot:\r\n..\r\n...two\r\n..\r\nsmuggle\r\n..\r\nMAIL FROM:<evil@x>\r\n\r\n..\r\nend\r\n"
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			sc := script{}
			w := want
			if chunking {
				sc.ext = append([]string{"CHUNKING"}, defaultExt...)
				w = "Subject: x\r\n\r\nbare LF\r\nbare CR\r\ndot:\r\n.\r\n..two\r\n.\r\nsmuggle\r\n.\r\nMAIL FROM:<evil@x>\r\n\r\n.\r\nend\r\n"
			}
			s := newFakeServer(t, sc)
			res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(in, "b@example.test"))
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
			if got := string(s.Messages()[0].Data); got != w {
				t.Errorf("data\n got %q\nwant %q", got, w)
			}
			wire := s.Wire()
			for i, c := range wire {
				if c == '\n' && (i == 0 || wire[i-1] != '\r') || c == '\r' && (i+1 == len(wire) || wire[i+1] != '\n') {
					t.Fatalf("bare CR or LF on the wire at %d: %q", i, wire[max(0, i-20):min(len(wire), i+20)])
				}
			}
			if cmds := strings.Join(s.Commands(), "|"); strings.Contains(cmds, "evil") {
				t.Errorf("smuggled command reached the server: %s", cmds)
			}
		})
	}
}

func TestEightBitAndSMTPUTF8(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	res := deliver(t, c, planFor(s.Addr), newMsg("Subject: caf\xc3\xa9\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n", "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	m := newMsg("Subject: x\r\n\r\nhi\r\n", "用户@例子.test")
	m.From = "jörg@example.org"
	res = deliver(t, c, planFor(s.Addr), m)
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	msgs := s.Messages()
	if !strings.Contains(msgs[0].MailLine, " BODY=8BITMIME") || strings.Contains(msgs[0].MailLine, "SMTPUTF8") {
		t.Errorf("8-bit MAIL line: %q", msgs[0].MailLine)
	}
	if !strings.Contains(msgs[1].MailLine, " SMTPUTF8") || msgs[1].Rcpts[0] != "用户@例子.test" {
		t.Errorf("UTF-8 message: %+v", msgs[1])
	}

	// A server without SMTPUTF8 cannot take it: permanent 5.6.7, nothing sent.
	s2 := newFakeServer(t, script{ext: []string{"PIPELINING", "8BITMIME"}})
	res = deliver(t, c, planFor(s2.Addr), m)
	wantAll(t, res, transport.StatusPermanent, transport.ClassUnexpectedReply)
	if res[0].Enhanced.String() != "5.6.7" {
		t.Errorf("enhanced %s", res[0].Enhanced)
	}
	for _, cmd := range s2.Commands() {
		if strings.HasPrefix(cmd, "MAIL") {
			t.Errorf("MAIL sent: %q", cmd)
		}
	}
}

func TestSizeRefusedEarly(t *testing.T) {
	s := newFakeServer(t, script{ext: []string{"PIPELINING", "SIZE 100"}})
	res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(strings.Repeat("x", 2000), "b@example.test"))
	wantAll(t, res, transport.StatusPermanent, transport.ClassUnexpectedReply)
	if res[0].Code != 552 || res[0].Enhanced.String() != "5.3.4" {
		t.Errorf("got %d %s", res[0].Code, res[0].Enhanced)
	}
	if contains(s.Wire(), "MAIL") {
		t.Error("MAIL FROM was sent")
	}
}

func TestPerRecipientReplies(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			sc := script{rcpt: map[string]string{
				"gone@example.test": "550 5.1.1 no such user",
				"full@example.test": "452 4.2.2 mailbox full",
			}}
			if !pipelining {
				sc.ext = []string{"8BITMIME", "ENHANCEDSTATUSCODES"}
			}
			s := newFakeServer(t, sc)
			res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(body, "ok@example.test", "gone@example.test", "full@example.test", "ok2@example.test"))
			wantStatus(t, res, transport.StatusDelivered, transport.StatusPermanent, transport.StatusTemporary, transport.StatusDelivered)
			if r := res[1]; r.Code != 550 || r.Enhanced.String() != "5.1.1" || r.Text != "no such user" || r.Err.Phase != "RCPT TO" {
				t.Errorf("gone: %+v", r)
			}
			if got := s.Messages()[0].Rcpts; strings.Join(got, ",") != "ok@example.test,ok2@example.test" {
				t.Errorf("server rcpts %q", got)
			}
			cmds := strings.Join(s.Commands(), "|")
			if !strings.Contains(cmds, "RCPT TO:<ok2@example.test>|DATA") {
				t.Errorf("commands %s", cmds)
			}
		})
	}
}

func TestAllRecipientsRefused(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			sc := script{reply: map[string]string{"RCPT": "550 5.1.1 nope"}}
			if !pipelining {
				sc.ext = []string{"ENHANCEDSTATUSCODES"}
			}
			s := newFakeServer(t, sc)
			res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(body, "a@example.test", "b@example.test"))
			wantAll(t, res, transport.StatusPermanent, transport.ClassUnexpectedReply)
			if contains(s.Wire(), marker) {
				t.Error("body sent with no accepted recipient")
			}
		})
	}
}

func TestTransactionRefusals(t *testing.T) {
	tests := []struct {
		name  string
		reply map[string]string
		st    transport.Status
		code  int
	}{
		{"MAIL 5xx", map[string]string{"MAIL": "553 5.1.8 sender refused"}, transport.StatusPermanent, 553},
		{"MAIL 4xx", map[string]string{"MAIL": "451 4.3.0 try later"}, transport.StatusTemporary, 451},
		{"DATA 5xx", map[string]string{"DATA": "554 5.7.1 no"}, transport.StatusPermanent, 554},
		{"DATA 421", map[string]string{"DATA": "421 4.3.2 shutting down"}, transport.StatusTemporary, 421},
		{"final dot 5xx", map[string]string{".": "550 5.7.1 spam"}, transport.StatusPermanent, 550},
		{"final dot 4xx", map[string]string{".": "451 4.7.1 greylisted"}, transport.StatusTemporary, 451},
		{"multi-line", map[string]string{".": "550-5.7.1 rejected\r\n550-5.7.1 see https://example.test\r\n550 5.7.1 bye"}, transport.StatusPermanent, 550},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, script{reply: tt.reply})
			p := planFor(s.Addr)
			p.MessagesPerConnection = 10
			c := newClient(t, nil)
			res := deliver(t, c, p, newMsg(body, "a@example.test", "b@example.test"))
			wantAll(t, res, tt.st, transport.ClassUnexpectedReply)
			if res[0].Code != tt.code {
				t.Errorf("code %d, want %d", res[0].Code, tt.code)
			}
			if tt.name == "multi-line" && res[0].Text != "rejected see https://example.test bye" {
				t.Errorf("text %q", res[0].Text)
			}
			// A second message either reuses the connection after RSET or
			// opens a new one; either way it gets its results.
			deliver(t, c, p, newMsg(body, "a@example.test"))
		})
	}
}

// STARTTLS: strict modes never send a byte of the message in plaintext. A
// host that does not offer STARTTLS, or refuses it, is skipped with a
// temporary failure (a downgrade defers, RFC 8461 section 5.1), except for a
// message with REQUIRETLS, which fails permanently (RFC 8689).
func TestStartTLSStrictNeverPlaintext(t *testing.T) {
	ca := smtpbed.NewCA(t)
	leaf := ca.Issue(t, "mx.example.test")
	tcfg := &tls.Config{Certificates: []tls.Certificate{leaf.Cert}}
	dane := func(h *transport.Host) {
		h.Verifier = transport.VerifierFunc(func(tls.ConnectionState) error { return nil })
	}
	mtasts := func(h *transport.Host) { h.MTASTSEnforce = true }
	requireTLSMsg := func(m *transport.Message) { m.RequireTLS = true }
	tests := []struct {
		name  string
		sc    script
		mod   func(*transport.Host)
		msg   func(*transport.Message)
		st    transport.Status
		class transport.Class
		code  int
		enh   string
		phase string
	}{
		{"stripped from EHLO, require", script{tls: tcfg, hideTLS: true}, requireTLS, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "EHLO"},
		{"no TLS at all, require", script{}, requireTLS, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "EHLO"},
		{"refused 454, require", script{tls: tcfg, reply: map[string]string{"STARTTLS": "454 4.7.0 TLS not available"}}, requireTLS, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "STARTTLS"},
		{"refused 554, require", script{tls: tcfg, reply: map[string]string{"STARTTLS": "554 5.7.0 no"}}, requireTLS, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "STARTTLS"},
		{"refused 501, require", script{tls: tcfg, reply: map[string]string{"STARTTLS": "501 5.5.4 syntax"}}, requireTLS, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "STARTTLS"},
		{"250 to STARTTLS, require", script{tls: tcfg, reply: map[string]string{"STARTTLS": "250 2.0.0 ok"}}, requireTLS, nil, transport.StatusTemporary, transport.ClassUnexpectedReply, 451, "4.5.0", "STARTTLS"},
		{"handshake garbage, require", script{tls: tcfg, tlsGarbage: true}, requireTLS, nil, transport.StatusTemporary, transport.ClassTLS, 454, "4.7.5", "TLS handshake"},
		{"stripped, DANE verifier", script{tls: tcfg, hideTLS: true}, dane, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "EHLO"},
		{"refused 554, DANE verifier", script{tls: tcfg, reply: map[string]string{"STARTTLS": "554 5.7.0 no"}}, dane, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "STARTTLS"},
		{"stripped, MTA-STS enforce", script{tls: tcfg, hideTLS: true}, mtasts, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "EHLO"},
		{"EHLO refused, MTA-STS enforce", script{tls: tcfg, reply: map[string]string{"EHLO": "502 5.5.1 no EHLO"}}, mtasts, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "EHLO"},
		{"EHLO refused, require (no HELO fallback)", script{tls: tcfg, reply: map[string]string{"EHLO": "502 5.5.1 no EHLO"}}, requireTLS, nil, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "EHLO"},
		{"stripped, REQUIRETLS message", script{tls: tcfg, hideTLS: true}, disableTLS, requireTLSMsg, transport.StatusPermanent, transport.ClassTLS, 550, "5.7.10", "EHLO"},
		// The server says the refusal is temporary: even REQUIRETLS waits.
		{"refused 454, REQUIRETLS message", script{tls: tcfg, reply: map[string]string{"STARTTLS": "454 4.7.0 TLS not available"}}, nil, requireTLSMsg, transport.StatusTemporary, transport.ClassTLS, 451, "4.7.10", "STARTTLS"},
		{"refused 554, REQUIRETLS message", script{tls: tcfg, reply: map[string]string{"STARTTLS": "554 5.7.0 no"}}, nil, requireTLSMsg, transport.StatusPermanent, transport.ClassTLS, 550, "5.7.10", "STARTTLS"},
		{"EHLO refused, REQUIRETLS message", script{tls: tcfg, reply: map[string]string{"EHLO": "502 5.5.1 no EHLO"}}, nil, requireTLSMsg, transport.StatusPermanent, transport.ClassTLS, 550, "5.7.10", "EHLO"},
		{"250 to STARTTLS, REQUIRETLS message", script{tls: tcfg, reply: map[string]string{"STARTTLS": "250 2.0.0 ok"}}, nil, requireTLSMsg, transport.StatusTemporary, transport.ClassUnexpectedReply, 451, "4.5.0", "STARTTLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, tt.sc)
			s2 := newFakeServer(t, tt.sc) // a second host: failover keeps the rule
			m := newMsg(body, "b@example.test", "c@example.test")
			if tt.msg != nil {
				tt.msg(m)
			}
			p := planFor(s.Addr, s2.Addr)
			if tt.mod != nil {
				with(p, tt.mod)
			}
			res := deliver(t, newClient(t, ca.Pool), p, m)
			// Every recipient gets the second (last) host's failure.
			wantAll(t, res, tt.st, tt.class)
			for _, r := range res {
				if r.Code != tt.code || r.Enhanced.String() != tt.enh || r.Err.Phase != tt.phase || r.Address != s2.Addr {
					t.Errorf("%s: %d %s phase %q at %v, want %d %s phase %q at %v%s", r.Recipient, r.Code, r.Enhanced, r.Err.Phase, r.Address,
						tt.code, tt.enh, tt.phase, s2.Addr, dump(res))
				}
				if tt.enh == "4.7.10" || tt.enh == "5.7.10" {
					if r.Err.TLSResult != transport.TLSResultStartTLSNotSupported {
						t.Errorf("TLS-RPT result type %q", r.Err.TLSResult)
					}
				}
			}
			for i, srv := range []*fakeServer{s, s2} {
				w := srv.Wire()
				if contains(w, marker) || contains(w, "MAIL FROM") || contains(w, "RCPT TO") {
					t.Errorf("server %d saw the envelope or body in plaintext:\n%s", i, w)
				}
				if srv.hasCommand("MAIL", "RCPT", "DATA", "BDAT") || len(srv.Messages()) != 0 {
					t.Errorf("server %d received a transaction: %q", i, srv.Commands())
				}
				// Both hosts were tried, once each.
				if srv.Conns() != 1 {
					t.Errorf("server %d: %d connections", i, srv.Conns())
				}
			}
		})
	}
}

func TestStartTLSOptional(t *testing.T) {
	ca := smtpbed.NewCA(t)
	good := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	wrong := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "other.example.test").Cert}}
	c := newClient(t, ca.Pool)

	t.Run("verified", func(t *testing.T) {
		s := newFakeServer(t, script{tls: good})
		res := deliver(t, c, planFor(s.Addr), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if r := res[0]; r.TLS.Verified != transport.VerifiedPKIX || r.TLS.Version != tls.VersionTLS13 || len(r.Warnings) != 0 || r.TLS.ServerName != "mx.example.test" {
			t.Errorf("tls %v warnings %v", r.TLS, r.Warnings)
		}
		if m := s.Messages()[0]; !m.TLS || string(m.Data) != body {
			t.Errorf("message %+v", m)
		}
		if contains(s.Wire(), marker) || contains(s.Wire(), "MAIL FROM") {
			t.Error("plaintext on the wire despite TLS")
		}
	})
	t.Run("not offered", func(t *testing.T) {
		s := newFakeServer(t, script{})
		res := deliver(t, c, planFor(s.Addr), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if res[0].TLS.Enabled() || len(res[0].Warnings) != 0 {
			t.Errorf("%s", dump(res))
		}
	})
	for _, refusal := range []string{"454 4.7.0 not now", "554 5.7.0 no TLS for you"} {
		t.Run("refused "+refusal[:3]+": same connection, plaintext", func(t *testing.T) {
			s := newFakeServer(t, script{tls: good, reply: map[string]string{"STARTTLS": refusal}})
			res := deliver(t, c, planFor(s.Addr), newMsg(body, "b@example.test"))
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
			want := transport.Warning{Class: transport.ClassTLS, Text: "STARTTLS refused (" + refusal + "); continued without TLS",
				TLSResult: transport.TLSResultStartTLSNotSupported}
			if len(res[0].Warnings) != 1 || res[0].Warnings[0] != want {
				t.Errorf("warnings %q, want %q", res[0].Warnings, want)
			}
			if m := s.Messages(); len(m) != 1 || m[0].TLS || s.Conns() != 1 {
				t.Errorf("%d conns, messages %+v", s.Conns(), m)
			}
		})
	}
	// The warning goes on every result of the session, failed ones too: it
	// must not claim a delivery.
	for _, tt := range []struct {
		name string
		sc   script
	}{
		{"refused", script{tls: good, reply: map[string]string{"STARTTLS": "454 4.7.0 not now"}}},
		{"handshake failure", script{tls: good, tlsGarbage: true}},
		{"wrong name", script{tls: wrong}},
	} {
		t.Run(tt.name+", then the recipient is refused", func(t *testing.T) {
			tt.sc.rcpt = map[string]string{"b@example.test": "550 5.1.1 no such user"}
			s := newFakeServer(t, tt.sc)
			res := deliver(t, c, planFor(s.Addr), newMsg(body, "b@example.test"))
			wantAll(t, res, transport.StatusPermanent, transport.ClassUnexpectedReply)
			if w := res[0].Warnings; len(w) != 1 || w[0].Class != transport.ClassTLS || strings.Contains(strings.ToLower(w[0].Text), "deliver") {
				t.Errorf("warnings %q on a failed result", w)
			}
		})
	}
	// A positive reply other than 220 is not a refusal: the server may be
	// waiting for a ClientHello. The host fails; the next one is tried.
	for _, reply := range []string{"250 2.0.0 ok", "354 go ahead"} {
		t.Run("reply "+reply[:3]+" to STARTTLS: next host", func(t *testing.T) {
			bad := newFakeServer(t, script{tls: good, reply: map[string]string{"STARTTLS": reply}})
			next := newFakeServer(t, script{tls: good})
			res := deliver(t, c, planFor(bad.Addr, next.Addr), newMsg(body, "b@example.test"))
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
			if res[0].Address != next.Addr || !res[0].TLS.Enabled() || len(res[0].Warnings) != 0 {
				t.Errorf("%s", dump(res))
			}
			if bad.hasCommand("MAIL", "RCPT", "DATA") || contains(bad.Wire(), marker) || len(bad.Messages()) != 0 {
				t.Errorf("bad host got a transaction: %q", bad.Commands())
			}
			// Alone, the host's failure is the result: temporary.
			res = deliver(t, c, planFor(bad.Addr), newMsg(body, "b@example.test"))
			wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
			if r := res[0]; r.Code != 451 || r.Enhanced.String() != "4.5.0" || r.Err.Phase != "STARTTLS" ||
				r.Text != "unexpected reply to STARTTLS: "+reply {
				t.Errorf("%s", dump(res))
			}
			if bad.hasCommand("MAIL", "RCPT", "DATA") || len(bad.Messages()) != 0 {
				t.Errorf("bad host got a transaction: %q", bad.Commands())
			}
		})
	}
	t.Run("handshake failure: reconnect in plaintext", func(t *testing.T) {
		s := newFakeServer(t, script{tls: good, tlsGarbage: true})
		res := deliver(t, c, planFor(s.Addr), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if s.Conns() != 2 {
			t.Errorf("%d connections, want 2", s.Conns())
		}
		r := res[0]
		if r.TLS.Enabled() || len(r.Warnings) != 1 || r.Warnings[0].Class != transport.ClassTLS ||
			!strings.HasPrefix(r.Warnings[0].Text, "TLS handshake failed: ") || !strings.HasSuffix(r.Warnings[0].Text, "; reconnected and continued without TLS") {
			t.Errorf("tls %v warnings %v", r.TLS, r.Warnings)
		}
		if m := s.Messages(); len(m) != 1 || m[0].TLS || m[0].ConnNo != 2 {
			t.Errorf("messages %+v", m)
		}
	})
	t.Run("wrong name stays encrypted, unverified", func(t *testing.T) {
		s := newFakeServer(t, script{tls: wrong})
		res := deliver(t, c, planFor(s.Addr), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		r := res[0]
		if !r.TLS.Enabled() || r.TLS.Verified != transport.VerifiedNone || len(r.Warnings) != 1 ||
			!strings.HasPrefix(r.Warnings[0].Text, "certificate not verified (") || !strings.HasSuffix(r.Warnings[0].Text, "); continued over unauthenticated TLS") ||
			r.Warnings[0].TLSResult != transport.TLSResultHostMismatch {
			t.Errorf("tls %v warnings %v", r.TLS, r.Warnings)
		}
		if contains(s.Wire(), marker) {
			t.Error("plaintext")
		}
	})
	t.Run("disable", func(t *testing.T) {
		s := newFakeServer(t, script{tls: good})
		res := deliver(t, c, with(planFor(s.Addr), disableTLS), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if res[0].TLS.Enabled() || contains(s.Wire(), "STARTTLS") {
			t.Error("STARTTLS used with disable")
		}
	})
}

func TestCertificateChecks(t *testing.T) {
	ca := smtpbed.NewCA(t)
	other := smtpbed.NewCA(t)
	good := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	wrongName := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "other.example.test").Cert}}
	unknownCA := &tls.Config{Certificates: []tls.Certificate{other.Issue(t, "mx.example.test").Cert}}
	accept := transport.VerifierFunc(func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		return nil
	})
	expired := &tls.Config{Certificates: []tls.Certificate{ca.IssueValid(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "mx.example.test").Cert}}
	reject := transport.VerifierFunc(func(tls.ConnectionState) error { return tlsaError{} })
	tests := []struct {
		name      string
		srv       *tls.Config
		mod       func(*transport.Host)
		st        transport.Status
		class     transport.Class
		verified  transport.Verification // when delivered
		tlsResult string                 // when failed
	}{
		{"require ok", good, requireTLS, transport.StatusDelivered, transport.ClassNone, transport.VerifiedPKIX, ""},
		{"require wrong name", wrongName, requireTLS, transport.StatusTemporary, transport.ClassTLS, "", "certificate-host-mismatch"},
		{"require unknown CA", unknownCA, requireTLS, transport.StatusTemporary, transport.ClassTLS, "", "certificate-not-trusted"},
		{"require expired", expired, requireTLS, transport.StatusTemporary, transport.ClassTLS, "", "certificate-expired"},
		{"require wrong name, allow-invalid-certs", wrongName, func(h *transport.Host) { requireTLS(h); allowInvalid(h) }, transport.StatusDelivered, transport.ClassNone, transport.VerifiedNone, ""},
		{"MTA-STS enforce ok", good, func(h *transport.Host) { h.MTASTSEnforce = true }, transport.StatusDelivered, transport.ClassNone, transport.VerifiedMTASTS, ""},
		{"MTA-STS enforce overrides allow-invalid-certs", wrongName, func(h *transport.Host) { h.MTASTSEnforce = true; allowInvalid(h) }, transport.StatusTemporary, transport.ClassMTASTS, "", "certificate-host-mismatch"},
		{"DANE verifier accepts unknown CA", unknownCA, func(h *transport.Host) { h.Verifier = accept }, transport.StatusDelivered, transport.ClassNone, transport.VerifiedDANE, ""},
		{"DANE verifier rejects", good, func(h *transport.Host) { h.Verifier = reject; allowInvalid(h) }, transport.StatusTemporary, transport.ClassDANE, "", "tlsa-invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t, script{tls: tt.srv})
			res := deliver(t, newClient(t, ca.Pool), with(planFor(s.Addr), tt.mod), newMsg(body, "b@example.test"))
			wantAll(t, res, tt.st, tt.class)
			if tt.st == transport.StatusDelivered {
				if res[0].TLS.Verified != tt.verified {
					t.Errorf("verified %q, want %q", res[0].TLS.Verified, tt.verified)
				}
				return
			}
			if len(s.Messages()) != 0 || contains(s.Wire(), marker) {
				t.Error("message delivered")
			}
			if res[0].Err.TLSResult != tt.tlsResult {
				t.Errorf("TLS-RPT result type %q, want %q", res[0].Err.TLSResult, tt.tlsResult)
			}
		})
	}
	t.Run("min version", func(t *testing.T) {
		srv := good.Clone()
		srv.MaxVersion = tls.VersionTLS12
		s := newFakeServer(t, script{tls: srv})
		res := deliver(t, newClient(t, ca.Pool), with(planFor(s.Addr), requireTLS, func(h *transport.Host) { h.MinTLSVersion = tls.VersionTLS13 }), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
	})
}

// tlsaError is what a DANE Verifier might return.
type tlsaError struct{}

func (tlsaError) Error() string         { return "no matching TLSA record" }
func (tlsaError) TLSResultType() string { return "tlsa-invalid" }

func TestRequireTLSMessage(t *testing.T) {
	ca := smtpbed.NewCA(t)
	good := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	c := newClient(t, ca.Pool)
	m := newMsg(body, "b@example.test")
	m.RequireTLS = true

	s := newFakeServer(t, script{tls: good}) // no REQUIRETLS extension
	res := deliver(t, c, planFor(s.Addr), m)
	wantAll(t, res, transport.StatusPermanent, transport.ClassTLS)
	if res[0].Enhanced.String() != "5.7.30" {
		t.Errorf("enhanced %s", res[0].Enhanced)
	}
	s = newFakeServer(t, script{tls: good, ext: append([]string{"REQUIRETLS"}, defaultExt...)})
	res = deliver(t, c, with(planFor(s.Addr), allowInvalid), m)
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	if ml := s.Messages()[0].MailLine; !strings.HasSuffix(ml, " REQUIRETLS") {
		t.Errorf("MAIL line %q", ml)
	}
}

func TestDSNParameters(t *testing.T) {
	m := newMsg(body, "b@example.test", "c@example.test")
	m.Return, m.EnvID = transport.ReturnHeaders, "id+1=x"
	m.Recipients[0].Notify = transport.NotifySuccess | transport.NotifyFailure
	m.Recipients[0].ORcpt = "B@example.test"
	m.Recipients[1].Notify = transport.NotifyNever
	s := newFakeServer(t, script{})
	deliver(t, newClient(t, nil), planFor(s.Addr), m)
	got := s.Messages()[0]
	if !strings.HasSuffix(got.MailLine, " RET=HDRS ENVID=id+2B1+3Dx") {
		t.Errorf("MAIL %q", got.MailLine)
	}
	if got.RcptLines[0] != "RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B@example.test" || got.RcptLines[1] != "RCPT TO:<c@example.test> NOTIFY=NEVER" {
		t.Errorf("RCPT %q", got.RcptLines)
	}
	// Without DSN, no parameters.
	s = newFakeServer(t, script{ext: []string{"PIPELINING"}})
	deliver(t, newClient(t, nil), planFor(s.Addr), m)
	got = s.Messages()[0]
	if strings.Contains(got.MailLine, "RET=") || strings.Contains(strings.Join(got.RcptLines, " "), "NOTIFY") {
		t.Errorf("DSN parameters sent to a server without DSN: %q %q", got.MailLine, got.RcptLines)
	}
}

func TestHELOFallback(t *testing.T) {
	s := newFakeServer(t, script{reply: map[string]string{"EHLO": "502 5.5.2 what?"}})
	res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	if ml := s.Messages()[0].MailLine; ml != "MAIL FROM:<sender@example.org>" {
		t.Errorf("MAIL after HELO has parameters: %q", ml)
	}
}

func TestChunking(t *testing.T) {
	s := newFakeServer(t, script{ext: append([]string{"CHUNKING"}, defaultExt...)})
	big := strings.Repeat("line of text\r\n.dot\r\n", 80000) // > 1 MiB: several chunks
	res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(big, "a@example.test", "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	if got := s.Messages()[0].Data; string(got) != big {
		t.Errorf("data differs (%d vs %d bytes)", len(got), len(big))
	}
	cmds := strings.Join(s.Commands(), "|")
	if !strings.Contains(cmds, "BDAT 1048576|BDAT ") || !strings.Contains(cmds, " LAST") || strings.Contains(cmds, "DATA") {
		t.Errorf("commands %s", cmds)
	}
}

func TestLMTP(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			sc := script{lmtpMode: true,
				rcpt: map[string]string{"nouser@example.test": "550 5.1.1 unknown"},
				lmtp: map[string]string{"full@example.test": "452 4.2.2 over quota", "bad@example.test": "554 5.6.0 content"}}
			if chunking {
				sc.ext = append([]string{"CHUNKING"}, defaultExt...)
			}
			s := newFakeServer(t, sc)
			p := with(planFor(s.Addr), func(h *transport.Host) { h.Protocol = transport.LMTP })
			res := deliver(t, newClient(t, nil), p, newMsg(body, "a@example.test", "full@example.test", "nouser@example.test", "bad@example.test", "b@example.test"))
			wantStatus(t, res, transport.StatusDelivered, transport.StatusTemporary, transport.StatusPermanent, transport.StatusPermanent, transport.StatusDelivered)
			if res[1].Enhanced.String() != "4.2.2" || res[3].Code != 554 || res[0].Protocol != transport.LMTP {
				t.Errorf("%s", dump(res))
			}
			if !strings.HasPrefix(s.Commands()[0], "LHLO ") {
				t.Errorf("first command %q", s.Commands()[0])
			}
		})
	}
}

func TestGarbageReplies(t *testing.T) {
	tests := []struct {
		name string
		sc   script
	}{
		{"garbage greeting", script{greeting: "HTTP/1.1 400 Bad Request"}},
		{"binary greeting", script{greeting: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc"}},
		{"over-long EHLO line", script{reply: map[string]string{"EHLO": "250-" + strings.Repeat("A", 100000) + "\r\n250 ok"}}},
		{"endless EHLO reply", script{reply: map[string]string{"EHLO": strings.Repeat("250-x\r\n", 500) + "250 x"}}},
		{"code changes mid reply", script{reply: map[string]string{"EHLO": "250-a\r\n550 b"}}},
		{"greeting 554", script{greeting: "554 5.7.1 go away"}},
		{"greeting 421", script{greeting: "421 4.3.2 busy"}},
		{"garbage to MAIL", script{reply: map[string]string{"MAIL": "OK!!"}}},
		{"garbage to final dot", script{reply: map[string]string{".": "\x00\x01"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := newFakeServer(t, tt.sc)
			good := newFakeServer(t, script{})
			res := deliver(t, newClient(t, nil), planFor(bad.Addr, good.Addr), newMsg(body, "b@example.test"))
			sentMail := strings.Contains(strings.Join(bad.Commands(), "|"), "MAIL")
			if sentMail {
				// Once MAIL FROM was sent the result is final: temporary.
				wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
				if len(good.Messages()) != 0 {
					t.Error("the next host got the message too")
				}
				return
			}
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
			if res[0].Address != good.Addr {
				t.Errorf("delivered via %v", res[0].Address)
			}
		})
	}
	t.Run("last host garbage", func(t *testing.T) {
		bad := newFakeServer(t, script{greeting: "garbage"})
		res := deliver(t, newClient(t, nil), planFor(bad.Addr), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
	})
}

// Every phase: the server drops the connection (or never answers); the
// recipients get exactly one temporary result each, and a dead host before
// MAIL FROM moves delivery on to the next one.
func TestDroppedAndSilentPeers(t *testing.T) {
	ca := smtpbed.NewCA(t)
	tcfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	verbs := []string{"CONNECT", "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", "."}
	afterMail := map[string]bool{"MAIL": true, "RCPT": true, "DATA": true, ".": true}
	for _, mode := range []string{"drop", "hang"} {
		for _, pipelining := range []bool{true, false} {
			for _, verb := range verbs {
				if !pipelining && !afterMail[verb] {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/pipelining=%v", mode, verb, pipelining), func(t *testing.T) {
					t.Parallel()
					sc := script{tls: tcfg, drop: map[string]bool{}, hang: map[string]bool{}}
					if !pipelining {
						sc.ext = []string{"8BITMIME", "ENHANCEDSTATUSCODES"}
					}
					if mode == "drop" {
						sc.drop[verb] = true
					} else {
						sc.hang[verb] = true
					}
					bad := newFakeServer(t, sc)
					good := newFakeServer(t, script{})
					p := planFor(bad.Addr, good.Addr)
					p.Timeouts = shortTimeouts
					with(p, requireTLS, allowInvalid)
					p.Hosts[1].StartTLS = transport.StartTLSOptional
					start := time.Now()
					res := deliver(t, newClient(t, ca.Pool), p, newMsg(body, "a@example.test", "b@example.test"))
					if el := time.Since(start); el > 3*time.Second {
						t.Errorf("took %v", el)
					}
					if afterMail[verb] {
						class := transport.ClassIO
						wantAll(t, res, transport.StatusTemporary, class)
						want := "closed by the server"
						if mode == "hang" {
							want = "timeout"
						}
						if !strings.Contains(res[0].Text, want) {
							t.Errorf("text %q, want %q", res[0].Text, want)
						}
						if len(good.Messages()) != 0 {
							t.Error("second host used after MAIL FROM")
						}
						return
					}
					wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
				})
			}
		}
	}
	t.Run("RCPT per recipient then drop", func(t *testing.T) {
		s := newFakeServer(t, script{rcpt: map[string]string{"gone@example.test": "550 5.1.1 no"}, drop: map[string]bool{".": true}})
		res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(body, "a@example.test", "gone@example.test"))
		wantStatus(t, res, transport.StatusTemporary, transport.StatusPermanent)
	})
}

func TestFailover(t *testing.T) {
	c := newClient(t, nil)
	t.Run("next address, then next host", func(t *testing.T) {
		good := newFakeServer(t, script{})
		p := planFor(closedPort(t), good.Addr)
		p.Hosts[0].Addresses = append(p.Hosts[0].Addresses, netip.MustParseAddr("127.0.0.1"))
		p.Hosts[0].Port = int(closedPort(t).Port())
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if res[0].Address != good.Addr {
			t.Errorf("address %v", res[0].Address)
		}
	})
	t.Run("greeting failure skips the host's other addresses", func(t *testing.T) {
		bad := newFakeServer(t, script{greeting: "554 no"})
		good := newFakeServer(t, script{})
		p := planFor(bad.Addr, good.Addr)
		p.Hosts[0].Addresses = append(p.Hosts[0].Addresses, p.Hosts[0].Addresses[0])
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if bad.Conns() != 1 {
			t.Errorf("bad host dialed %d times", bad.Conns())
		}
	})
	t.Run("all fail: last failure", func(t *testing.T) {
		a := newFakeServer(t, script{greeting: "421 4.3.2 busy"})
		b := newFakeServer(t, script{greeting: "554 5.7.1 blocked"})
		res := deliver(t, c, planFor(a.Addr, b.Addr), newMsg(body, "x@example.test", "y@example.test"))
		wantAll(t, res, transport.StatusPermanent, transport.ClassUnexpectedReply)
		if res[0].Code != 554 || res[0].Address != b.Addr || res[0].Err.Phase != "greeting" {
			t.Errorf("%s", dump(res))
		}
	})
	t.Run("connection refused everywhere", func(t *testing.T) {
		res := deliver(t, c, planFor(closedPort(t), closedPort(t)), newMsg(body, "x@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassConnection)
	})
	t.Run("no hosts, no addresses", func(t *testing.T) {
		res := deliver(t, c, &transport.Plan{}, newMsg(body, "x@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassDNS)
		res = deliver(t, c, &transport.Plan{Hosts: []transport.Host{{Name: "mx.example.test"}}}, newMsg(body, "x@example.test"))
		wantAll(t, res, transport.StatusPermanent, transport.ClassDNS)
	})
}

func TestBadAddresses(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	res := deliver(t, c, planFor(s.Addr), newMsg(body, "ok@example.test", "evil@example.test>\r\nRCPT TO:<x@evil.test", "", "ok2@example.test"))
	wantStatus(t, res, transport.StatusDelivered, transport.StatusPermanent, transport.StatusPermanent, transport.StatusDelivered)
	if contains(s.Wire(), "evil") {
		t.Error("injected address reached the wire")
	}
	m := newMsg(body, "ok@example.test")
	m.From = "a@b\r\nRSET"
	res = deliver(t, c, planFor(s.Addr), m)
	wantAll(t, res, transport.StatusPermanent, transport.ClassUnexpectedReply)
	if res[0].Enhanced.String() != "5.1.7" {
		t.Errorf("%s", dump(res))
	}
	if got := deliver(t, c, planFor(s.Addr), newMsg(body)); len(got) != 0 {
		t.Errorf("results for no recipients: %v", got)
	}
}

func TestAuth(t *testing.T) {
	ca := smtpbed.NewCA(t)
	tcfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "relay.example.test").Cert}}
	const secret = "s3cr3t-pa55"
	relay := func(mods ...func(*transport.Host)) func(*transport.Host) {
		return func(h *transport.Host) {
			h.Name, h.IsRelay = "relay.example.test", true
			h.Auth = &transport.Auth{Username: "user", Secret: secret}
			for _, m := range mods {
				m(h)
			}
		}
	}
	c := newClient(t, ca.Pool)
	t.Run("plaintext refused", func(t *testing.T) {
		s := newFakeServer(t, script{ext: append([]string{"AUTH PLAIN LOGIN"}, defaultExt...)})
		res := deliver(t, c, with(planFor(s.Addr), relay()), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
		if contains(s.Wire(), "AUTH") || contains(s.Wire(), marker) {
			t.Error("credentials or message sent in plaintext")
		}
	})
	t.Run("plaintext allowed, PLAIN", func(t *testing.T) {
		s := newFakeServer(t, script{ext: append([]string{"AUTH PLAIN LOGIN"}, defaultExt...)})
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.AllowPlaintextAuth = true })), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if !contains(s.Wire(), "AUTH PLAIN AHVzZXIAczNjcjN0LXBhNTU=") {
			t.Errorf("wire %q", s.Wire())
		}
	})
	t.Run("TLS, LOGIN only", func(t *testing.T) {
		s := newFakeServer(t, script{tls: tcfg, ext: append([]string{"AUTH=LOGIN"}, defaultExt...)})
		res := deliver(t, c, with(planFor(s.Addr), relay(requireTLS)), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if contains(s.Wire(), "AUTH") {
			t.Error("AUTH visible on the wire")
		}
	})
	t.Run("rejected", func(t *testing.T) {
		s := newFakeServer(t, script{ext: append([]string{"AUTH PLAIN"}, defaultExt...), reply: map[string]string{"AUTH": "535 5.7.8 bad credentials"}})
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.AllowPlaintextAuth = true })), newMsg(body, "b@example.test"))
		// Refused credentials defer (a rotated password must not bounce
		// mail), keeping the server's reply in the text.
		wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
		if res[0].Code != 454 || !strings.Contains(res[0].Text, "535 5.7.8 bad credentials") {
			t.Errorf("code %d text %q", res[0].Code, res[0].Text)
		}
		if strings.Contains(dump(res), secret) {
			t.Error("secret in results")
		}
	})
	t.Run("not offered", func(t *testing.T) {
		s := newFakeServer(t, script{})
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.AllowPlaintextAuth = true })), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
	})
	t.Run("implicit TLS", func(t *testing.T) {
		s := newFakeServer(t, script{})
		// The fake server speaks plaintext: implicit TLS must fail, never
		// fall back.
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.ImplicitTLS = true })), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
		if s.Conns() != 1 || contains(s.Wire(), "EHLO") {
			t.Errorf("conns %d, wire %q", s.Conns(), s.Wire())
		}
	})
}

// A server that repeats the AUTH line (or LOGIN's password line) and the
// decoded password in its refusal: none of it reaches the results.
func TestAuthEchoRedacted(t *testing.T) {
	const user, secret = "user", "s3cr3t-pa55"
	enc := base64.StdEncoding.EncodeToString
	forms := []string{
		secret,
		enc([]byte("\x00" + user + "\x00" + secret)),                   // the PLAIN blob
		strings.TrimRight(enc([]byte("\x00"+user+"\x00"+secret)), "="), // ... unpadded
		enc([]byte(secret)),                         // the LOGIN password
		strings.TrimRight(enc([]byte(secret)), "="), // ... unpadded
	}
	for _, tt := range []struct {
		name, ext, reply string
		wantText         string // "" when the reply is not shown at all
	}{
		{"PLAIN echo", "AUTH PLAIN", "", "authentication refused (535 5.7.8 you sent: AUTH PLAIN [redacted] password [redacted] is wrong)"},
		{"LOGIN echo", "AUTH LOGIN", "", "authentication refused (535 5.7.8 you sent: [redacted] password [redacted] is wrong)"},
		{"PLAIN echo, unpadded", "AUTH PLAIN", "535 5.7.8 got " + forms[2] + " and " + forms[4], "authentication refused (535 5.7.8 got [redacted] and [redacted])"},
		{"4xx echo", "AUTH PLAIN", "454 4.7.0 try later, " + secret, "try later, [redacted]"},
		// A reply that is not SMTP (a NUL byte) is reported without its text.
		{"garbage echo", "AUTH PLAIN", "535 5.7.8 \x00" + user + "\x00" + secret, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := script{ext: append([]string{tt.ext}, defaultExt...), authEcho: tt.reply == ""}
			if tt.reply != "" {
				sc.reply = map[string]string{"AUTH": tt.reply}
			}
			s := newFakeServer(t, sc)
			p := with(planFor(s.Addr), func(h *transport.Host) {
				h.Name, h.IsRelay, h.AllowPlaintextAuth = "relay.example.test", true, true
				h.Auth = &transport.Auth{Username: user, Secret: secret}
			})
			res := deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
			wantStatus(t, res, transport.StatusTemporary)
			if !s.hasCommand("AUTH") || s.hasCommand("MAIL") {
				t.Fatalf("commands %q", s.Commands())
			}
			// Failure messages show where a leak is, not the secret.
			mask := func(s string) string {
				for i, f := range forms {
					s = strings.ReplaceAll(s, f, fmt.Sprintf("<LEAK%d>", i))
				}
				return s
			}
			r := res[0]
			if tt.wantText != "" && r.Text != tt.wantText {
				t.Errorf("text %q, want %q", mask(r.Text), tt.wantText)
			}
			if tt.wantText == "" && (r.Class != transport.ClassUnexpectedReply || !strings.HasPrefix(r.Text, "bad reply to AUTH PLAIN")) {
				t.Errorf("%s", mask(dump(res)))
			}
			out := r.Text + "\n" + r.Err.Error() + "\n" + fmt.Sprintf("%+v", res) + "\n" + fmt.Sprintf("%v", res) + "\n" + dump(res)
			for e := error(r.Err); e != nil; e = errors.Unwrap(e) {
				out += "\n" + e.Error()
			}
			if m := mask(out); m != out {
				t.Errorf("the secret (forms <LEAKn>) is in the results:\n%s", m)
			}
		})
	}
}

func TestSecretRedaction(t *testing.T) {
	const secret = "hunter2-secret"
	p := &transport.Plan{Hosts: []transport.Host{{Name: "relay", Auth: &transport.Auth{Username: "u", Secret: secret}}}}
	var buf bytes.Buffer
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&buf, f+"\n", *p.Hosts[0].Auth)
		fmt.Fprintf(&buf, f+"\n", p.Hosts[0].Auth.Secret)
		fmt.Fprintf(&buf, f+"\n", p.Hosts)
	}
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "auth", p.Hosts[0].Auth, "secret", p.Hosts[0].Auth.Secret)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "secret", p.Hosts[0].Auth.Secret)
	if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), fmt.Sprintf("%x", secret)) {
		t.Errorf("secret printed:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "[redacted]") {
		t.Errorf("no redaction marker:\n%s", buf.String())
	}
}

func TestConnectionReuse(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	p := planFor(s.Addr)
	p.MessagesPerConnection = 3
	for range 7 {
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	}
	if s.Conns() != 3 || len(s.Messages()) != 7 {
		t.Errorf("%d connections for %d messages, want 3 for 7", s.Conns(), len(s.Messages()))
	}
	if n := strings.Count(strings.Join(s.Commands(), "|"), "RSET"); n != 4 {
		t.Errorf("%d RSETs, want 4", n)
	}

	t.Run("after Close: still delivers, pools nothing", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := &transport.Client{}
		p := planFor(s.Addr)
		p.MessagesPerConnection = 10
		deliver(t, c, p, newMsg(body, "b@example.test"))
		_ = c.Close()
		deliver(t, c, p, newMsg(body, "b@example.test"))
		deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 3 || len(s.Messages()) != 3 {
			t.Errorf("%d conns, %d messages", s.Conns(), len(s.Messages()))
		}
	})
	t.Run("different EHLO name or source: new connection", func(t *testing.T) {
		s := newFakeServer(t, script{})
		p := planFor(s.Addr)
		p.MessagesPerConnection = 10
		deliver(t, c, p, newMsg(body, "b@example.test"))
		p.EHLOName = "other.example.org"
		deliver(t, c, p, newMsg(body, "b@example.test"))
		p.Hosts[0].SourceIPs = []netip.Addr{netip.MustParseAddr("127.0.0.9")}
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 3 || res[0].Source.Addr() != netip.MustParseAddr("127.0.0.9") {
			t.Errorf("%d conns, source %v", s.Conns(), res[0].Source)
		}
	})
	t.Run("protocol failure closes", func(t *testing.T) {
		s := newFakeServer(t, script{reply: map[string]string{"MAIL": "421 4.3.2 closing"}})
		p := planFor(s.Addr)
		p.MessagesPerConnection = 10
		deliver(t, c, p, newMsg(body, "b@example.test"))
		deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 2 {
			t.Errorf("%d conns, want 2", s.Conns())
		}
	})
	t.Run("stale pooled connection is replaced", func(t *testing.T) {
		s := newFakeServer(t, script{drop: map[string]bool{"RSET": true}})
		p := planFor(s.Addr)
		p.MessagesPerConnection = 10
		for range 3 {
			res := deliver(t, c, p, newMsg(body, "b@example.test"))
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		}
		if s.Conns() != 3 {
			t.Errorf("%d conns, want 3", s.Conns())
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := &transport.Client{IdleTimeout: 100 * time.Millisecond}
		defer c.Close()
		p := planFor(s.Addr)
		p.MessagesPerConnection = 10
		deliver(t, c, p, newMsg(body, "b@example.test"))
		// The pool QUITs the connection when it has been idle for
		// IdleTimeout; it takes it out of the pool before that.
		s.waitCommand(t, "QUIT")
		deliver(t, c, p, newMsg(body, "b@example.test"))
		if s.Conns() != 2 {
			t.Errorf("%d conns", s.Conns())
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := newClient(t, nil)
		p := planFor(s.Addr)
		p.MessagesPerConnection = 5
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					res := c.Deliver(context.Background(), p, newMsg(body, "a@example.test", "b@example.test"))
					if err := transport.CheckResults(newMsg("", "a@example.test", "b@example.test").Recipients, res); err != nil {
						t.Error(err)
					}
					for _, r := range res {
						if r.Status != transport.StatusDelivered {
							t.Errorf("%s", dump(res))
						}
					}
				}
			})
		}
		wg.Wait()
		if n := len(s.Messages()); n != 40 {
			t.Errorf("%d messages", n)
		}
		if n := s.Conns(); n > 16 {
			t.Errorf("%d connections for 40 messages at 5 per connection", n)
		}
	})
}

// A pooled connection takes the timeouts and the limit of the delivery
// that reuses it, not those of the one that opened it.
func TestReusedConnectionTakesNewSettings(t *testing.T) {
	for _, tt := range []struct {
		verb, phase string
		set         func(*transport.Timeouts, time.Duration)
	}{
		{"RCPT", "RCPT TO", func(to *transport.Timeouts, d time.Duration) { to.RcptTo = d }},
		{"DATA", "DATA", func(to *transport.Timeouts, d time.Duration) { to.Data = d }},
		{".", "end of data", func(to *transport.Timeouts, d time.Duration) { to.Data = d }},
	} {
		t.Run("timeout "+tt.phase, func(t *testing.T) {
			// The second transaction's verb is never answered (until the
			// client gives up).
			s := newFakeServer(t, script{hangAt: map[string]int{tt.verb: 2}})
			c := newClient(t, nil)
			p := planFor(s.Addr)
			p.MessagesPerConnection = 10
			tt.set(&p.Timeouts, time.Hour) // longer than deliver's 20s context
			wantAll(t, deliver(t, c, p, newMsg(body, "a@example.test")), transport.StatusDelivered, transport.ClassNone)

			p = planFor(s.Addr)
			p.MessagesPerConnection = 10
			tt.set(&p.Timeouts, 300*time.Millisecond)
			res := deliver(t, c, p, newMsg(body, "b@example.test"))
			wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
			// With the first delivery's timeout, the context would have
			// ended the wait: "delivery interrupted", wrapping it.
			if r := res[0]; r.Text != "timeout during "+tt.phase || r.Err.Phase != tt.phase || errors.Is(r.Err, context.DeadlineExceeded) {
				t.Errorf("want the %s timeout to fire:%s", tt.phase, dump(res))
			}
			if s.Conns() != 1 {
				t.Errorf("%d connections: the second message did not reuse the first one's", s.Conns())
			}
		})
	}
	t.Run("higher limit", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := newClient(t, nil)
		p := planFor(s.Addr)
		p.MessagesPerConnection = 2
		deliver(t, c, p, newMsg(body, "b@example.test"))
		p.MessagesPerConnection = 3
		for range 2 {
			wantAll(t, deliver(t, c, p, newMsg(body, "b@example.test")), transport.StatusDelivered, transport.ClassNone)
		}
		// Three transactions on the first connection, then QUIT (the
		// limit of 3 is reached).
		if s.Conns() != 1 || len(s.Messages()) != 3 {
			t.Errorf("%d connections for %d messages, want 1 for 3", s.Conns(), len(s.Messages()))
		}
		if got := strings.Join(s.Commands(), "|"); !strings.HasSuffix(got, "|QUIT") {
			t.Errorf("commands %s", got)
		}
	})
	t.Run("lower limit", func(t *testing.T) {
		s := newFakeServer(t, script{})
		c := newClient(t, nil)
		p := planFor(s.Addr)
		p.MessagesPerConnection = 10
		deliver(t, c, p, newMsg(body, "b@example.test"))
		// One transaction per connection now: the pooled connection,
		// which already carried one, is closed instead of reused.
		p.MessagesPerConnection = 1
		wantAll(t, deliver(t, c, p, newMsg(body, "b@example.test")), transport.StatusDelivered, transport.ClassNone)
		m := s.Messages()
		if s.Conns() != 2 || len(m) != 2 || m[0].ConnNo != 1 || m[1].ConnNo != 2 {
			t.Errorf("%d connections, messages %+v", s.Conns(), m)
		}
		if got := strings.Join(s.Commands(), "|"); strings.Contains(got, "RSET") || strings.Count(got, "QUIT") != 2 {
			t.Errorf("commands %s", got)
		}
	})
}

func TestContextCancel(t *testing.T) {
	s := newFakeServer(t, script{hang: map[string]bool{"DATA": true}})
	c := newClient(t, nil)
	p := planFor(s.Addr)
	p.Timeouts.Data = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	m := newMsg(body, "a@example.test", "b@example.test")
	start := time.Now()
	res := c.Deliver(ctx, p, m)
	if err := transport.CheckResults(m.Recipients, res); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("cancel took %v", el)
	}
	wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
	if !errors.Is(res[0].Err, context.DeadlineExceeded) {
		t.Errorf("err %v does not wrap the context error", res[0].Err)
	}
	// Already cancelled: no connection at all.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	res = c.Deliver(ctx, p, m)
	if err := transport.CheckResults(m.Recipients, res); err != nil {
		t.Fatal(err)
	}
	wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
}

type panicSettings struct{ where string }

func (p panicSettings) PrepareHost(context.Context, *transport.Host) error {
	if p.where == "host" {
		panic("boom in PrepareHost")
	}
	return nil
}

func (p panicSettings) ConnectionSettings(context.Context, *transport.Host, netip.Addr, netip.Addr) (transport.ConnSettings, error) {
	if p.where == "conn" {
		panic("boom in ConnectionSettings")
	}
	return transport.ConnSettings{}, nil
}

func TestPanicBecomesTemporary(t *testing.T) {
	s := newFakeServer(t, script{})
	for _, where := range []string{"host", "conn"} {
		p := planFor(s.Addr)
		p.Settings = panicSettings{where}
		res := deliver(t, newClient(t, nil), p, newMsg(body, "a@example.test", "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
		if !strings.Contains(res[0].Text, "boom") {
			t.Errorf("text %q", res[0].Text)
		}
	}
}

// recordingSettings fills in addresses lazily and picks the EHLO name per
// connection.
type recordingSettings struct {
	mu    sync.Mutex
	addr  netip.AddrPort
	calls []string
}

func (r *recordingSettings) PrepareHost(_ context.Context, h *transport.Host) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "host "+h.Name)
	switch h.Name {
	case "broken.example.test":
		return &transport.Error{Code: 451, Enhanced: transport.EnhancedCode{4, 7, 5}, Class: transport.ClassDANE, Message: "TLSA lookup SERVFAIL"}
	case "mx.example.test":
		h.Addresses = []netip.Addr{r.addr.Addr()}
		h.Port = int(r.addr.Port())
	}
	return nil
}

func (r *recordingSettings) ConnectionSettings(_ context.Context, h *transport.Host, remote, local netip.Addr) (transport.ConnSettings, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("conn %s %v %v", h.Name, remote, local))
	return transport.ConnSettings{EHLOName: "ehlo-for-" + remote.String(), Timeouts: transport.Timeouts{Data: time.Second}}, nil
}

func TestSettingsCallbacks(t *testing.T) {
	s := newFakeServer(t, script{})
	rs := &recordingSettings{addr: s.Addr}
	p := &transport.Plan{Settings: rs, Timeouts: testTimeouts, Hosts: []transport.Host{
		{Name: "broken.example.test"}, {Name: "mx.example.test"}, {Name: "never.example.test"},
	}}
	res := deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	want := "host broken.example.test|host mx.example.test|conn mx.example.test 127.0.0.1 invalid IP"
	if got := strings.Join(rs.calls, "|"); got != want {
		t.Errorf("calls\n got %s\nwant %s", got, want)
	}
	if h := s.Messages()[0].Helo; h != "ehlo-for-127.0.0.1" {
		t.Errorf("EHLO %q", h)
	}
	// A PrepareHost error is the host's failure, with its class.
	p.Hosts = p.Hosts[:1]
	res = deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
	wantAll(t, res, transport.StatusTemporary, transport.ClassDANE)
	var te *transport.Error
	if !errors.As(error(res[0].Err), &te) || !te.Temporary() || te.Host != "broken.example.test" {
		t.Errorf("err %#v", res[0].Err)
	}
}

func TestSourceIPSpread(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	p := planFor(s.Addr)
	p.Hosts[0].SourceIPs = []netip.Addr{
		netip.MustParseAddr("127.0.0.21"), netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.22"),
	}
	seen := map[netip.Addr]int{}
	for range 6 {
		res := deliver(t, c, p, newMsg(body, "b@example.test"))
		seen[res[0].Source.Addr()]++
	}
	if seen[netip.MustParseAddr("127.0.0.21")] != 3 || seen[netip.MustParseAddr("127.0.0.22")] != 3 {
		t.Errorf("sources %v", seen)
	}
	// An injected Rand decides.
	c2 := &transport.Client{Rand: func(n int) int { return n - 1 }}
	defer c2.Close()
	res := deliver(t, c2, p, newMsg(body, "b@example.test"))
	if res[0].Source.Addr() != netip.MustParseAddr("127.0.0.22") {
		t.Errorf("source %v", res[0].Source)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	ca := smtpbed.NewCA(t)
	tcfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	t.Run("require", func(t *testing.T) {
		s := newFakeServer(t, script{tls: tcfg, tlsHang: true})
		p := with(planFor(s.Addr), requireTLS)
		p.Timeouts = shortTimeouts
		start := time.Now()
		res := deliver(t, newClient(t, ca.Pool), p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
		if el := time.Since(start); el > time.Second || !strings.Contains(res[0].Text, "timeout") {
			t.Errorf("took %v: %s", el, dump(res))
		}
		if contains(s.Wire(), marker) {
			t.Error("plaintext")
		}
	})
	t.Run("optional: plaintext after reconnecting", func(t *testing.T) {
		s := newFakeServer(t, script{tls: tcfg, firstConn: &script{tls: tcfg, tlsHang: true}})
		p := planFor(s.Addr)
		p.Timeouts = shortTimeouts
		res := deliver(t, newClient(t, ca.Pool), p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if s.Conns() != 2 || len(res[0].Warnings) != 1 || res[0].TLS.Enabled() {
			t.Errorf("%d conns%s", s.Conns(), dump(res))
		}
	})
}

func TestVerifierPanic(t *testing.T) {
	ca := smtpbed.NewCA(t)
	tcfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	s := newFakeServer(t, script{tls: tcfg})
	p := with(planFor(s.Addr), func(h *transport.Host) {
		h.Verifier = transport.VerifierFunc(func(tls.ConnectionState) error { panic("verifier bug") })
	})
	res := deliver(t, newClient(t, ca.Pool), p, newMsg(body, "a@example.test", "b@example.test"))
	wantAll(t, res, transport.StatusTemporary, transport.ClassIO)
	if len(s.Messages()) != 0 {
		t.Error("delivered")
	}
}
