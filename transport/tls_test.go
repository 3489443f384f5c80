package transport_test

// STARTTLS (strict and optional), certificate checks, REQUIRETLS.

import (
	"crypto/tls"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

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

func TestHandshakeTimeout(t *testing.T) {
	ca := smtpbed.NewCA(t)
	tcfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	t.Run("require", func(t *testing.T) {
		s := newFakeServer(t, script{tls: tcfg, tlsHang: true})
		p := with(planFor(s.Addr), requireTLS)
		setShortTimeouts(p)
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
		setShortTimeouts(p)
		res := deliver(t, newClient(t, ca.Pool), p, newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if s.Conns() != 2 || len(res[0].Warnings) != 1 || res[0].TLS.Enabled() {
			t.Errorf("%d conns%s", s.Conns(), dump(res))
		}
	})
}

// TLS sessions are resumed across connections to the same server name,
// and a resumed session is checked like a full handshake: a verifier
// that rejects still rejects.
func TestTLSSessionResumption(t *testing.T) {
	ca := smtpbed.NewCA(t)
	srv := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mx.example.test").Cert}}
	s := newFakeServer(t, script{tls: srv})
	c := newClient(t, ca.Pool)
	c.IdleTimeout = -1 // a new connection every time
	first := deliver(t, c, with(planFor(s.Addr), requireTLS), newMsg(body, "a@example.test"))
	wantAll(t, first, transport.StatusDelivered, transport.ClassNone)
	if first[0].TLS.Resumed {
		t.Error("first connection resumed a session")
	}
	second := deliver(t, c, with(planFor(s.Addr), requireTLS), newMsg(body, "b@example.test"))
	wantAll(t, second, transport.StatusDelivered, transport.ClassNone)
	if !second[0].TLS.Resumed || second[0].TLS.Verified != transport.VerifiedPKIX {
		t.Errorf("second connection: resumed=%v verified=%q, want a resumed, PKIX-verified session", second[0].TLS.Resumed, second[0].TLS.Verified)
	}
	reject := transport.VerifierFunc(func(tls.ConnectionState) error { return tlsaError{} })
	third := deliver(t, c, with(planFor(s.Addr), func(h *transport.Host) { h.Verifier = reject }), newMsg(body, "c@example.test"))
	wantAll(t, third, transport.StatusTemporary, transport.ClassDANE)

	off := newClient(t, ca.Pool)
	off.IdleTimeout, off.TLSSessions = -1, -1
	for range 2 {
		res := deliver(t, off, with(planFor(s.Addr), requireTLS), newMsg(body, "d@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if res[0].TLS.Resumed {
			t.Error("resumed with TLSSessions < 0")
		}
	}
}

// SNI carries Host.SNI when set (DANE's TLSA base domain, RFC 7672
// section 8.1), else the host name; PKIX still checks Name.
func TestSNI(t *testing.T) {
	ca := smtpbed.NewCA(t)
	leaf := ca.Issue(t, "mx.example.test")
	var seen atomic.Value
	srv := &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		seen.Store(hello.ServerName)
		return &tls.Config{Certificates: []tls.Certificate{leaf.Cert}}, nil
	}}
	for _, tt := range []struct {
		sni, want string
	}{
		{"", "mx.example.test"},
		{"real.hosting.example", "real.hosting.example"},
	} {
		s := newFakeServer(t, script{tls: srv})
		res := deliver(t, newClient(t, ca.Pool), with(planFor(s.Addr), requireTLS, func(h *transport.Host) { h.SNI = tt.sni }), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if got, _ := seen.Load().(string); got != tt.want {
			t.Errorf("SNI %q with Host.SNI %q, want %q", got, tt.sni, tt.want)
		}
		if res[0].TLS.Verified != transport.VerifiedPKIX || res[0].TLS.ServerName != "mx.example.test" {
			t.Errorf("TLS %+v, want PKIX verified for mx.example.test", res[0].TLS)
		}
	}
}
