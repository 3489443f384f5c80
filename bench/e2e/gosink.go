package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// tlsSink is the STARTTLS sink (-worker sink): smtp-sink cannot offer
// STARTTLS, and a Postfix smtpd that queues and discards every message
// costs milliseconds of CPU per message (see the Postfix rows), which would
// make the sink the bottleneck of a client sending thousands per second.
// It speaks enough SMTP (RFC 5321) for a client that pipelines (RFC 2920)
// and upgrades with STARTTLS (RFC 3207), discards every message, and counts
// what the table reports: sessions, messages and TLS handshakes, full or
// resumed (RFC 8446 section 2.2: a client that kept a session ticket).
type tlsSink struct {
	cfg *tls.Config // nil: STARTTLS is not offered
	// sessions counts ended sessions, like smtp-sink's sess=, so that
	// the parent's readiness probe and settle logic work for both sinks.
	sessions, quits, messages, full, resumed atomic.Int64
}

// sinkWorker runs the sink on addr until SIGTERM, printing its counters
// (smtp-sink -c style, plus full= and resumed=) whenever they change.
func sinkWorker(addr, certFile, keyFile string) int {
	k := &tlsSink{}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			return 1
		}
		k.cfg = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()

	reported := make(chan struct{})
	go func() { k.report(ctx, 10*time.Millisecond); close(reported) }()
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		go k.serve(c)
	}
	<-reported
	// Open sessions end with the process; this last line is final.
	fmt.Fprint(os.Stdout, k.line())
	return 0
}

// report prints the counters every interval when they changed.
func (k *tlsSink) report(ctx context.Context, interval time.Duration) {
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		if line := k.line(); line != last {
			fmt.Fprint(os.Stdout, line)
			last = line
		}
	}
}

func (k *tlsSink) line() string {
	return fmt.Sprintf("sess=%d quit=%d mesg=%d full=%d resumed=%d\n",
		k.sessions.Load(), k.quits.Load(), k.messages.Load(), k.full.Load(), k.resumed.Load())
}

// serve runs one SMTP session. Replies are buffered and flushed only when
// no further pipelined command is waiting in the read buffer (RFC 2920
// section 3.1), so a pipelined MAIL/RCPT/DATA group costs one write.
func (k *tlsSink) serve(nc net.Conn) {
	defer k.sessions.Add(1)
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 64<<10)
	w := bufio.NewWriterSize(nc, 4<<10)
	w.WriteString("220 sink.bench.test ESMTP postern bench sink\r\n")
	var inTLS, mail bool
	rcpts := 0
	for {
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			return // EOF, or a command line over 64 KiB
		}
		switch verbOf(line) {
		case "EHLO":
			w.WriteString("250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n")
			if k.cfg != nil && !inTLS {
				w.WriteString("250-STARTTLS\r\n")
			}
			w.WriteString("250 ENHANCEDSTATUSCODES\r\n")
			mail, rcpts = false, 0
		case "HELO":
			w.WriteString("250 sink.bench.test\r\n")
			mail, rcpts = false, 0
		case "MAIL":
			mail, rcpts = true, 0
			w.WriteString("250 2.1.0 Ok\r\n")
		case "RCPT":
			if !mail {
				w.WriteString("503 5.5.1 MAIL first\r\n")
				continue
			}
			rcpts++
			w.WriteString("250 2.1.5 Ok\r\n")
		case "DATA":
			if rcpts == 0 {
				w.WriteString("503 5.5.1 RCPT first\r\n")
				continue
			}
			w.WriteString("354 End data with <CR><LF>.<CR><LF>\r\n")
			if w.Flush() != nil || readData(r) != nil {
				return
			}
			k.messages.Add(1)
			mail, rcpts = false, 0
			w.WriteString("250 2.0.0 Ok: discarded\r\n")
		case "RSET":
			mail, rcpts = false, 0
			w.WriteString("250 2.0.0 Ok\r\n")
		case "NOOP":
			w.WriteString("250 2.0.0 Ok\r\n")
		case "QUIT":
			k.quits.Add(1)
			w.WriteString("221 2.0.0 Bye\r\n")
			_ = w.Flush()
			return
		case "STARTTLS":
			if k.cfg == nil || inTLS {
				w.WriteString("502 5.5.1 STARTTLS not available\r\n")
				continue
			}
			w.WriteString("220 2.0.0 Ready to start TLS\r\n")
			// Anything pipelined after STARTTLS would be plaintext
			// smuggled into the TLS session (RFC 3207 section 4.2).
			if w.Flush() != nil || r.Buffered() > 0 {
				return
			}
			tc := tls.Server(nc, k.cfg)
			if err := tc.Handshake(); err != nil {
				return
			}
			if tc.ConnectionState().DidResume {
				k.resumed.Add(1)
			} else {
				k.full.Add(1)
			}
			r.Reset(tc)
			w.Reset(tc)
			inTLS, mail, rcpts = true, false, 0
		default:
			w.WriteString("502 5.5.2 Command not recognized\r\n")
		}
	}
}

// verbOf returns the command word of line in upper case.
func verbOf(line []byte) string {
	end := bytes.IndexAny(line, " \r\n")
	if end < 0 {
		end = len(line)
	}
	return strings.ToUpper(string(line[:end]))
}

// readData reads a message up to the line ".", discarding it. Lines
// longer than the buffer arrive in pieces; only a piece that starts a
// line can be the end.
func readData(r *bufio.Reader) error {
	atStart := true
	for {
		l, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
		if atStart && (string(l) == ".\r\n" || string(l) == ".\n") {
			return nil
		}
		atStart = err == nil
	}
}
