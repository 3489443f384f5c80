package engine_test

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// TestDSNFromResults delivers to a real LMTP receiver (aiosmtpd, DSN
// offered) that accepts one recipient, refuses one for good and defers
// one: each recipient's NOTIFY and ORCPT reach the receiver, and the DSN
// the results call for reports exactly the recipients their NOTIFY asks
// about, each field from its result; Go's MIME parser reads it.
func TestDSNFromResults(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{LMTP: true, DSN: true,
		LMTPReplies: []string{"250 2.1.5 ok", "550 5.1.1 <b@dest.test>: user unknown", "451 4.2.1 mailbox busy"}})
	e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "tls:\n  starttls: disable\nqueue:\n  notify: [1h]\n", "protocol: lmtp"),
		engine.Options{Clock: func() time.Time { return now }, Hostname: "mta.sender.test"})
	msg := engine.Message{ID: "Q7", From: "s@sender.test", To: []string{"a@dest.test", "b@dest.test", "c@dest.test"},
		QueueAge: 3600, EnvID: "env-7", Ret: transport.ReturnHeaders,
		RcptDSN: []engine.RcptDSN{
			{Notify: transport.NotifySuccess | transport.NotifyFailure, ORcpt: "A@orig.test"},
			{},
			{Notify: transport.NotifyFailure},
		}}
	res := runDeliver(t, e, msg, deliverBody)
	if res[0].Status != transport.StatusDelivered || res[1].Status != transport.StatusPermanent || res[2].Status != transport.StatusTemporary || !res[2].NotifyDelay {
		t.Fatalf("results: %s", formatResults(res))
	}
	got := sink.WaitMessages(t, 1)[0]
	wantParams := map[string][]string{"a@dest.test": {"NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;A@orig.test"}, "c@dest.test": {"NOTIFY=FAILURE"}}
	for rcpt, want := range wantParams {
		if !slices.Equal(got.RcptParams[rcpt], want) {
			t.Errorf("the receiver saw %s with %v, want %v", rcpt, got.RcptParams[rcpt], want)
		}
	}
	if len(got.RcptParams["b@dest.test"]) != 0 {
		t.Errorf("b@dest.test was sent DSN parameters it does not have: %v", got.RcptParams["b@dest.test"])
	}
	if !slices.Contains(got.MailOptions, "RET=HDRS") || !slices.Contains(got.MailOptions, "ENVID=env-7") {
		t.Errorf("MAIL FROM options %v, want RET=HDRS and ENVID=env-7", got.MailOptions)
	}

	report, which, err := e.DSN(msg, res, []byte(deliverBody), engine.DSNOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// c asked for FAILURE only: its delay is not reported.
	if !slices.Equal(which, []int{0, 1}) {
		t.Fatalf("the DSN reports on %v, want [0 1]", which)
	}
	m, err := mail.ReadMessage(bytes.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("To") != "s@sender.test" && !strings.Contains(m.Header.Get("To"), "s@sender.test") || !strings.Contains(m.Header.Get("From"), "MAILER-DAEMON@mta.sender.test") {
		t.Errorf("From %q, To %q", m.Header.Get("From"), m.Header.Get("To"))
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	var status []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		body, _ := io.ReadAll(p)
		if ct == "message/delivery-status" {
			status = body
		}
	}
	if !slices.Equal(types, []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}) {
		t.Errorf("parts %v", types)
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(status)))
	perMsg, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if perMsg.Get("Reporting-MTA") != "dns; mta.sender.test" && perMsg.Get("Reporting-MTA") != "dns;mta.sender.test" || perMsg.Get("Original-Envelope-Id") != "env-7" {
		t.Errorf("per-message fields %v", perMsg)
	}
	for i, want := range []map[string]string{
		{"Final-Recipient": "a@dest.test", "Original-Recipient": "A@orig.test", "Action": "delivered", "Status": "2.1.5"},
		{"Final-Recipient": "b@dest.test", "Action": "failed", "Status": "5.1.1", "Diagnostic-Code": "550 5.1.1 <b@dest.test>: user unknown"},
	} {
		f, err := tp.ReadMIMEHeader()
		if err != nil && len(f) == 0 {
			t.Fatalf("recipient %d: %v", i, err)
		}
		for k, v := range want {
			if !strings.Contains(f.Get(k), v) {
				t.Errorf("recipient %d: %s = %q, want it to contain %q", i, k, f.Get(k), v)
			}
		}
		if f.Get("Remote-MTA") == "" {
			t.Errorf("recipient %d: no Remote-MTA", i)
		}
	}

	// DSNOptions.From replaces the From: header field (relay.dsn.from).
	withFrom, _, err := e.DSN(msg, res, []byte(deliverBody), engine.DSNOptions{From: "Mail Delivery System <postmaster@mta.sender.test>"})
	if err != nil {
		t.Fatal(err)
	}
	fm, err := mail.ReadMessage(bytes.NewReader(withFrom))
	if err != nil {
		t.Fatal(err)
	}
	if a, err := mail.ParseAddress(fm.Header.Get("From")); err != nil || a.Name != "Mail Delivery System" || a.Address != "postmaster@mta.sender.test" {
		t.Errorf("with DSNOptions.From the DSN's From is %q (%v)", fm.Header.Get("From"), err)
	}

	// A null sender gets no notification; nothing due gives none either.
	if r, _, err := e.DSN(engine.Message{From: "", To: msg.To}, res, nil, engine.DSNOptions{}); r != nil || err != nil {
		t.Errorf("a DSN for the null sender: %v", err)
	}
	never := msg
	never.RcptDSN = []engine.RcptDSN{{Notify: transport.NotifyNever}, {Notify: transport.NotifyNever}, {Notify: transport.NotifyNever}}
	if r, _, err := e.DSN(never, res, nil, engine.DSNOptions{}); r != nil || err != nil {
		t.Errorf("a DSN with NOTIFY=NEVER: %v", err)
	}
}

// TestDSNSuccessOverSMTP: NOTIFY=SUCCESS toward an SMTP server (real
// aiosmtpd) that does not offer DSN gives a "relayed" notification; toward
// one that offers DSN none at all, since NOTIFY went on with the
// recipient and that server reports from then on (RFC 3461 section 4.2).
func TestDSNSuccessOverSMTP(t *testing.T) {
	msg := engine.Message{ID: "S1", From: "s@sender.test", To: []string{"a@dest.test"},
		RcptDSN: []engine.RcptDSN{{Notify: transport.NotifySuccess}}}
	for _, c := range []struct {
		dsn    bool
		action string // "" for no notification
	}{{false, "relayed"}, {true, ""}} {
		sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{DSN: c.dsn})
		e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "tls:\n  starttls: disable\n"), engine.Options{Hostname: "mta.sender.test"})
		res := runDeliver(t, e, msg, deliverBody)
		if res[0].Status != transport.StatusDelivered || res[0].PeerDSN != c.dsn {
			t.Fatalf("server DSN %v: %s, PeerDSN %v", c.dsn, formatResults(res), res[0].PeerDSN)
		}
		report, _, err := e.DSN(msg, res, []byte(deliverBody), engine.DSNOptions{})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case c.action == "" && report != nil:
			t.Errorf("server offers DSN: we sent a notification anyway:\n%s", report)
		case c.action != "" && !bytes.Contains(report, []byte("Action: "+c.action)):
			t.Errorf("server without DSN: want Action: %s in\n%s", c.action, report)
		}
	}
}

// TestDSNQuotesOnlyServerReplies: a server that closes the connection
// before it says anything (a real proxy in front of a closed port) gives
// a temporary result with the transport's own 451; the delay
// notification names the host (Remote-MTA) but quotes no reply
// (Diagnostic-Code), since the server sent none; a reply the server did
// send is quoted.
func TestDSNQuotesOnlyServerReplies(t *testing.T) {
	proxy := testbed.StartProxy(t, testbed.ClosedPort(t))
	e := newDeliverEngine(t, oneRelayPolicy(proxy.Addr, "tls:\n  starttls: disable\nqueue:\n  notify: [1h]\n"), engine.Options{Hostname: "mta.sender.test"})
	msg := engine.Message{ID: "D1", From: "s@sender.test", To: []string{"a@dest.test"}, QueueAge: 7200}
	res := runDeliver(t, e, msg, deliverBody)
	if r := res[0]; r.Status != transport.StatusTemporary || !r.NotifyDelay || r.Err == nil || r.Err.Reply || !r.Address.IsValid() {
		t.Fatalf("result %s (Err %+v), want a temporary failure of our own after connecting, with a delay notice due", formatResults(res), res[0].Err)
	}
	report, _, err := e.DSN(msg, res, []byte(deliverBody), engine.DSNOptions{})
	if err != nil || report == nil {
		t.Fatalf("no delay notification: %v", err)
	}
	if !bytes.Contains(report, []byte("Remote-MTA: dns; ")) || bytes.Contains(report, []byte("Diagnostic-Code:")) {
		t.Errorf("want Remote-MTA and no Diagnostic-Code:\n%s", report)
	}

	bad := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{DataReply: "550 5.7.1 refused here"})
	e2 := newDeliverEngine(t, oneRelayPolicy(bad.Addr, "tls:\n  starttls: disable\n"), engine.Options{Hostname: "mta.sender.test"})
	res = runDeliver(t, e2, msg, deliverBody)
	if res[0].Err == nil || !res[0].Err.Reply {
		t.Fatalf("a 550 from the server: Err %+v, want Reply set", res[0].Err)
	}
	report, _, err = e2.DSN(msg, res, []byte(deliverBody), engine.DSNOptions{})
	if err != nil || !bytes.Contains(report, []byte("Diagnostic-Code: smtp; 550 5.7.1 refused here")) {
		t.Errorf("the server's reply is not quoted (%v):\n%s", err, report)
	}
}
