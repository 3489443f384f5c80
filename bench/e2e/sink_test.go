package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
)

// startTestSink runs a tlsSink with the benchmark's certificates on
// loopback; every ended session sends on the returned channel.
func startTestSink(t *testing.T) (string, *tlsSink, *tls.Config, <-chan struct{}) {
	t.Helper()
	files, err := makeTLSFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.cert, files.key)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := loadPool(files.ca)
	if err != nil {
		t.Fatal(err)
	}
	k := &tlsSink{cfg: &tls.Config{Certificates: []tls.Certificate{cert}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ended := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { k.serve(c); ended <- struct{}{} }()
		}
	}()
	client := &tls.Config{RootCAs: pool, ServerName: sinkName, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	return ln.Addr().String(), k, client, ended
}

// TestSinkCountsFullAndResumedHandshakes: two STARTTLS sessions from a
// client with a session cache are one full handshake and one resumed, and
// the certificate verifies against the CA under the sink's name.
func TestSinkCountsFullAndResumedHandshakes(t *testing.T) {
	addr, k, client, ended := startTestSink(t)
	for i := range 2 {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("STARTTLS not offered")
		}
		if err := c.StartTLS(client); err != nil {
			t.Fatalf("session %d: STARTTLS: %v", i, err)
		}
		if ok, _ := c.Extension("STARTTLS"); ok {
			t.Error("STARTTLS offered again inside TLS")
		}
		if err := c.Mail("a@sender.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("b@dest.test"); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(w, "Subject: x\r\n\r\nbody\r\n")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		<-ended
	}
	got := fmt.Sprint(k.sessions.Load(), k.quits.Load(), k.messages.Load(), k.full.Load(), k.resumed.Load())
	if got != "2 2 2 1 1" {
		t.Errorf("sessions quits messages full resumed = %s, want 2 2 2 1 1", got)
	}
}

// TestSinkPipelinedGroup: a pipelined group is answered in order, with the
// state checks (RCPT before MAIL, DATA before RCPT), and a message with a
// dot-stuffed line and a line longer than the read buffer ends only at
// the lone dot.
func TestSinkPipelinedGroup(t *testing.T) {
	addr, k, _, ended := startTestSink(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	var codes []string
	read := func(n int) {
		for range n {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			codes = append(codes, l[:4])
		}
	}
	read(1)
	fmt.Fprint(c, "EHLO x\r\nRCPT TO:<b@dest.test>\r\nDATA\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n")
	read(10)
	long := strings.Repeat("x", 100<<10)
	fmt.Fprint(c, "..\r\n"+long+"\r\n"+long[:64<<10]+".\r\n.\r\nQUIT\r\n")
	read(2)
	<-ended
	want := "220 ,250-,250-,250-,250-,250 ,503 ,503 ,250 ,250 ,354 ,250 ,221 "
	if got := strings.Join(codes, ","); got != want {
		t.Errorf("replies %s, want %s", got, want)
	}
	if n := k.messages.Load(); n != 1 {
		t.Errorf("messages = %d, want 1", n)
	}
}
