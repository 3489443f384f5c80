package transport_test

// The mail transaction against the fake server: replies to MAIL FROM, RCPT
// TO, DATA and the end of data, with and without PIPELINING; BDAT; LMTP.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport"
)

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
			// DATA is sent only when pipelined (the server refuses it); RSET
			// ends the transaction either way.
			want := "EHLO|MAIL|RCPT|RCPT|DATA|RSET|QUIT"
			if !pipelining {
				want = "EHLO|MAIL|RCPT|RCPT|RSET|QUIT"
			}
			if got := s.Verbs(); got != want {
				t.Errorf("commands %s, want %s", got, want)
			}
		})
	}
}

func TestTransactionRefusals(t *testing.T) {
	// verbs is what the server receives in the first session, with and
	// without PIPELINING (nil: the same); reused says whether the second
	// message goes over the same connection.
	const (
		refusedMAIL = "EHLO|MAIL|RCPT|RCPT|DATA"
		refusedDATA = "EHLO|MAIL|RCPT|RCPT|DATA|RSET"
		refusedDot  = "EHLO|MAIL|RCPT|RCPT|DATA|RSET"
	)
	tests := []struct {
		name   string
		reply  map[string]string
		st     transport.Status
		code   int
		verbs  string
		verbs1 string // without PIPELINING, when it differs
		reused bool
	}{
		// Without PIPELINING nothing is sent after a refused MAIL FROM.
		{"MAIL 5xx", map[string]string{"MAIL": "553 5.1.8 sender refused"}, transport.StatusPermanent, 553, refusedMAIL, "EHLO|MAIL", false},
		{"MAIL 4xx", map[string]string{"MAIL": "451 4.3.0 try later"}, transport.StatusTemporary, 451, refusedMAIL, "EHLO|MAIL", false},
		{"DATA 5xx", map[string]string{"DATA": "554 5.7.1 no"}, transport.StatusPermanent, 554, refusedDATA, "", true},
		{"DATA 421", map[string]string{"DATA": "421 4.3.2 shutting down"}, transport.StatusTemporary, 421, "EHLO|MAIL|RCPT|RCPT|DATA", "", false},
		{"final dot 5xx", map[string]string{".": "550 5.7.1 spam"}, transport.StatusPermanent, 550, refusedDot, "", true},
		{"final dot 4xx", map[string]string{".": "451 4.7.1 greylisted"}, transport.StatusTemporary, 451, refusedDot, "", true},
		{"multi-line", map[string]string{".": "550-5.7.1 rejected\r\n550-5.7.1 see https://example.test\r\n550 5.7.1 bye"}, transport.StatusPermanent, 550, refusedDot, "", true},
	}
	for _, tt := range tests {
		for _, pipelining := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/pipelining=%v", tt.name, pipelining), func(t *testing.T) {
				sc := script{reply: tt.reply}
				verbs := tt.verbs
				if !pipelining {
					sc.ext = withoutPipelining(nil)
					if tt.verbs1 != "" {
						verbs = tt.verbs1
					}
				}
				s := newFakeServer(t, sc)
				p := planFor(s.Addr)
				setMPC(p, 10)
				c := newClient(t, nil)
				res := deliver(t, c, p, newMsg(body, "a@example.test", "b@example.test"))
				wantAll(t, res, tt.st, transport.ClassUnexpectedReply)
				if res[0].Code != tt.code {
					t.Errorf("code %d, want %d", res[0].Code, tt.code)
				}
				if tt.name == "multi-line" && res[0].Text != "rejected see https://example.test bye" {
					t.Errorf("text %q", res[0].Text)
				}
				if got := s.Verbs(); got != verbs {
					t.Errorf("commands %s, want %s", got, verbs)
				}
				// A second message either reuses the connection after RSET or
				// opens a new one; either way it gets its results.
				deliver(t, c, p, newMsg(body, "a@example.test"))
				if want := map[bool]int{true: 1, false: 2}[tt.reused]; s.Conns() != want {
					t.Errorf("%d connections for two messages, want %d", s.Conns(), want)
				}
			})
		}
	}
}

// A 421 to RCPT TO: without PIPELINING nothing more is sent and every
// recipient fails with it. With PIPELINING the other replies are on their
// way already and each is taken as it comes (a real server closes the
// connection after its 421, and the rest then fail with it).
func TestRcpt421(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			sc := script{rcpt: map[string]string{"a@example.test": "421 4.3.2 shutting down"}}
			if !pipelining {
				sc.ext = withoutPipelining(nil)
			}
			s := newFakeServer(t, sc)
			res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(body, "a@example.test", "b@example.test", "c@example.test"))
			// 421: the server is closing. Every recipient fails with
			// it, pipelined or not, no message is sent, and the
			// connection is not reused (no QUIT into a closing channel).
			wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
			for _, r := range res {
				if r.Code != 421 || r.Err.Phase != "RCPT TO" {
					t.Errorf("%s", dump(res))
				}
			}
			want := "EHLO|MAIL|RCPT"
			if pipelining {
				want = "EHLO|MAIL|RCPT|RCPT|RCPT|DATA" // all written before the first reply
			}
			if got := s.Verbs(); got != want {
				t.Errorf("commands %s, want %s", got, want)
			}
		})
	}
}

// With PIPELINING, DATA goes out before the RCPT TO replies are in: a
// server that answers it with 354 although no recipient was accepted (as
// smtp-sink does) gets an empty message, and the connection is not reused.
// Without PIPELINING, DATA is not sent then.
func TestDATAWithoutRecipients(t *testing.T) {
	tests := []struct {
		name          string
		reply         map[string]string
		st            transport.Status
		code          int
		verbs, verbs1 string // with and without PIPELINING
		reused1       bool   // reused without PIPELINING
	}{
		{"MAIL refused", map[string]string{"MAIL": "550 5.7.1 not you"}, transport.StatusPermanent, 550, "EHLO|MAIL|RCPT|RCPT|DATA", "EHLO|MAIL", false},
		{"every RCPT refused", map[string]string{"RCPT": "550 5.1.1 no such user"}, transport.StatusPermanent, 550, "EHLO|MAIL|RCPT|RCPT|DATA", "EHLO|MAIL|RCPT|RCPT|RSET", true},
	}
	for _, tt := range tests {
		for _, pipelining := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/pipelining=%v", tt.name, pipelining), func(t *testing.T) {
				sc := script{laxData: true, reply: tt.reply}
				verbs, reused := tt.verbs, false
				if !pipelining {
					sc.ext = withoutPipelining(nil)
					verbs, reused = tt.verbs1, tt.reused1
				}
				s := newFakeServer(t, sc)
				c := newClient(t, nil)
				p := planFor(s.Addr)
				setMPC(p, 10)
				res := deliver(t, c, p, newMsg(body, "a@example.test", "b@example.test"))
				wantAll(t, res, tt.st, transport.ClassUnexpectedReply)
				if res[0].Code != tt.code {
					t.Errorf("code %d, want %d", res[0].Code, tt.code)
				}
				if got := s.Verbs(); got != verbs {
					t.Errorf("commands %s, want %s", got, verbs)
				}
				if empty := contains(s.Wire(), "DATA\r\n.\r\n"); empty != pipelining || contains(s.Wire(), marker) {
					t.Errorf("wire %q", s.Wire())
				}
				deliver(t, c, p, newMsg(body, "a@example.test"))
				if want := map[bool]int{true: 1, false: 2}[reused]; s.Conns() != want {
					t.Errorf("%d connections for two messages, want %d", s.Conns(), want)
				}
			})
		}
	}
}

func TestChunking(t *testing.T) {
	big := strings.Repeat("line of text\r\n.dot\r\n", 80000) // > 1 MiB: several chunks
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			sc := script{ext: append([]string{"CHUNKING"}, defaultExt...)}
			if !pipelining {
				sc.ext = withoutPipelining(sc.ext)
			}
			s := newFakeServer(t, sc)
			res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(big, "a@example.test", "b@example.test"))
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
			if got := s.Messages()[0].Data; string(got) != big {
				t.Errorf("data differs (%d vs %d bytes)", len(got), len(big))
			}
			cmds := strings.Join(s.Commands(), "|")
			if !strings.Contains(cmds, "BDAT 1048576|BDAT ") || !strings.Contains(cmds, " LAST") || strings.Contains(cmds, "DATA") {
				t.Errorf("commands %s", cmds)
			}
			if got, want := s.Verbs(), "EHLO|MAIL|RCPT|RCPT|BDAT|BDAT|QUIT"; got != want {
				t.Errorf("commands %s, want %s", got, want)
			}
		})
	}
}

func TestLMTP(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		for _, pipelining := range []bool{true, false} {
			t.Run(fmt.Sprintf("chunking=%v/pipelining=%v", chunking, pipelining), func(t *testing.T) {
				sc := script{lmtpMode: true,
					rcpt: map[string]string{"nouser@example.test": "550 5.1.1 unknown"},
					lmtp: map[string]string{"full@example.test": "452 4.2.2 over quota", "bad@example.test": "554 5.6.0 content"}}
				if chunking {
					sc.ext = append([]string{"CHUNKING"}, defaultExt...)
				}
				if !pipelining {
					sc.ext = withoutPipelining(sc.ext)
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
				want := "LHLO|MAIL|RCPT|RCPT|RCPT|RCPT|RCPT|DATA|QUIT"
				if chunking {
					want = "LHLO|MAIL|RCPT|RCPT|RCPT|RCPT|RCPT|BDAT|QUIT"
				}
				if got := s.Verbs(); got != want {
					t.Errorf("commands %s, want %s", got, want)
				}
			})
		}
	}
}
