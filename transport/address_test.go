package transport_test

import (
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport"
)

// TestAddressesOnTheWire: the transport reads addresses with the same RFC
// 5321 parser as the engine. An address that would inject a parameter or
// a command is refused before anything is sent for it; a quoted local
// part with a space is valid and goes out as written; a domain goes out in
// canonical form (lower-case, no trailing dot).
func TestAddressesOnTheWire(t *testing.T) {
	s := newFakeServer(t, script{})
	c := newClient(t, nil)
	rcpts := []string{"ok@example.test", `a@x NOTIFY=NEVER "`, `"a b"@example.test`, "Bob@EXAMPLE.test.", "c@d\r\nRSET", "e@[192.0.2.7]"}
	res := deliver(t, c, planFor(s.Addr), newMsg("Subject: x\r\n\r\nbody\r\n", rcpts...))
	for i, want := range []transport.Status{transport.StatusDelivered, transport.StatusPermanent, transport.StatusDelivered,
		transport.StatusDelivered, transport.StatusPermanent, transport.StatusDelivered} {
		if res[i].Status != want {
			t.Errorf("%q: %s %q, want %s", rcpts[i], res[i].Status, res[i].Text, want)
		}
		if res[i].Recipient != rcpts[i] {
			t.Errorf("result %d is for %q", i, res[i].Recipient)
		}
	}
	if r := res[1]; r.Code != 501 || r.Enhanced.String() != "5.1.3" || !strings.Contains(r.Text, `space in the domain`) {
		t.Errorf("injection refused with %d %s %q", r.Code, r.Enhanced, r.Text)
	}
	var rcptLines []string
	for _, cmd := range s.Commands() {
		if strings.HasPrefix(cmd, "RCPT TO:") {
			rcptLines = append(rcptLines, cmd)
		}
	}
	want := []string{"RCPT TO:<ok@example.test>", `RCPT TO:<"a b"@example.test>`, "RCPT TO:<Bob@example.test>", "RCPT TO:<e@[192.0.2.7]>"}
	if strings.Join(rcptLines, "|") != strings.Join(want, "|") {
		t.Errorf("RCPT lines %q, want %q", rcptLines, want)
	}

	// A sender that does not parse fails every recipient, and nothing is
	// sent.
	s2 := newFakeServer(t, script{})
	m := newMsg("Subject: x\r\n\r\nbody\r\n", "ok@example.test")
	m.From = "a@b> SIZE=1"
	res = deliver(t, c, planFor(s2.Addr), m)
	if res[0].Status != transport.StatusPermanent || res[0].Code != 501 || res[0].Enhanced.String() != "5.1.7" {
		t.Errorf("bad sender: %+v", res[0])
	}
	if n := len(s2.Commands()); n != 0 {
		t.Errorf("commands sent with a bad sender: %q", s2.Commands())
	}
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
