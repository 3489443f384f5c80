package transport_test

// Hosts that fail, answer garbage, drop the connection or fall silent:
// moving on to the next address or host, and the results when none is
// left.

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

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
					setShortTimeouts(p)
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
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("RCPT per recipient then drop/pipelining=%v", pipelining), func(t *testing.T) {
			sc := script{rcpt: map[string]string{"gone@example.test": "550 5.1.1 no"}, drop: map[string]bool{".": true}}
			if !pipelining {
				sc.ext = withoutPipelining(nil)
			}
			s := newFakeServer(t, sc)
			res := deliver(t, newClient(t, nil), planFor(s.Addr), newMsg(body, "a@example.test", "gone@example.test"))
			wantStatus(t, res, transport.StatusTemporary, transport.StatusPermanent)
		})
	}
}

func TestFailover(t *testing.T) {
	c := newClient(t, nil)
	t.Run("next address, then next host", func(t *testing.T) {
		good := newFakeServer(t, script{})
		p := planFor(closedPort(t), good.Addr)
		p.Hosts[0].Targets = append(p.Hosts[0].Targets, target(netip.MustParseAddr("127.0.0.1")))
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
		p.Hosts[0].Targets = append(p.Hosts[0].Targets, p.Hosts[0].Targets[0])
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

// Every target tried is an attempt, in order, shared by the results: the
// failed host first (with its error), then the one that took the message.
func TestAttempts(t *testing.T) {
	bad := newFakeServer(t, script{greeting: "554 5.7.1 go away"})
	good := newFakeServer(t, script{})
	res := deliver(t, newClient(t, nil), planFor(bad.Addr, good.Addr), newMsg(body, "a@example.test", "b@example.test"))
	wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
	for _, r := range res {
		if len(r.Attempts) != 2 {
			t.Fatalf("%s: %d attempts, want 2: %+v", r.Recipient, len(r.Attempts), r.Attempts)
		}
		first, second := r.Attempts[0], r.Attempts[1]
		if first.Host != 0 || first.Err == nil || first.Err.Code != 554 || first.Address != bad.Addr || !first.Source.Addr().IsLoopback() {
			t.Errorf("first attempt = %+v, want host 0 refused with 554 at %v, from a loopback source", first, bad.Addr)
		}
		if second.Host != 1 || second.Err != nil || second.Address != good.Addr {
			t.Errorf("second attempt = %+v, want host 1 accepted at %v", second, good.Addr)
		}
	}
}
