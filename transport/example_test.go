package transport_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/postern-mta/postern/transport"
)

// Deliver a message to two recipients on an SMTP server. The engine
// normally builds the Plan from the policy and DNS; here it is written by
// hand, pointing at a small in-process server that refuses one recipient.
func Example() {
	addr := startExampleServer() // 127.0.0.1:port

	c := &transport.Client{}
	defer c.Close()

	plan := &transport.Plan{
		Hosts: []transport.Host{{
			Name:       "mx1.example.test",
			Preference: 10,
			Targets: []transport.Target{{
				Addr:     addr.Addr(),
				EHLOName: "mta.example.org",
				Timeouts: transport.Timeouts{Connect: 5 * time.Second, Data: 30 * time.Second},
			}},
			Port:                  int(addr.Port()),
			StartTLS:              transport.StartTLSOptional, // the server offers none: plaintext
			MessagesPerConnection: 20,
		}},
	}
	body := "From: a@example.org\r\nTo: b@example.test\r\nSubject: hello\r\n\r\nHi!\r\n"
	msg := &transport.Message{
		From: "a@example.org",
		Recipients: []transport.Recipient{
			{Address: "b@example.test"},
			{Address: "nobody@example.test"},
		},
		Body: strings.NewReader(body),
		Size: int64(len(body)),
	}

	for _, r := range c.Deliver(context.Background(), plan, msg) {
		fmt.Println(r.Recipient, r.Status, r.Code, r.Enhanced, r.Text)
		if r.Err != nil {
			fmt.Println("  temporary:", r.Err.Temporary(), "class:", r.Class)
		}
	}
	// Output:
	// b@example.test delivered 250 2.0.0 queued
	// nobody@example.test permanent 550 5.1.1 no such user
	//   temporary: false class: unexpected-reply
}

// startExampleServer runs a minimal SMTP server for the example.
func startExampleServer() netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprint(c, "220 mx1.example.test ESMTP\r\n")
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(l)); {
					case strings.HasPrefix(cmd, "EHLO"):
						fmt.Fprint(c, "250-mx1.example.test\r\n250 ENHANCEDSTATUSCODES\r\n")
					case strings.HasPrefix(cmd, "RCPT TO:<NOBODY@"):
						fmt.Fprint(c, "550 5.1.1 no such user\r\n")
					case cmd == "DATA":
						fmt.Fprint(c, "354 go ahead\r\n")
						for l != ".\r\n" {
							if l, err = r.ReadString('\n'); err != nil {
								return
							}
						}
						fmt.Fprint(c, "250 2.0.0 queued\r\n")
					case cmd == "QUIT":
						fmt.Fprint(c, "221 2.0.0 bye\r\n")
						return
					default:
						fmt.Fprint(c, "250 2.0.0 ok\r\n")
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}
