package transport_test

// What goes on the wire for a message: the body, 8BITMIME and SMTPUTF8,
// SIZE, DSN parameters.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport"
)

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
