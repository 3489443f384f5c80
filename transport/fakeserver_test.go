package transport_test

// Most tests of this package are loopback tests against the in-process
// fakeServer, which misbehaves on purpose at every phase.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a scriptable SMTP/LMTP server on 127.0.0.1 that misbehaves
// on request. It records every byte it receives on the wire (before any
// TLS), and the messages it accepted.
//
// Verbs used as keys in the script maps: CONNECT (the greeting), EHLO,
// HELO, LHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, "." (end of data), BDAT,
// RSET, QUIT.
type fakeServer struct {
	t    testing.TB
	ln   net.Listener
	Addr netip.AddrPort
	sc   script

	mu    sync.Mutex
	wire  bytes.Buffer // all bytes received, all connections
	msgs  []fakeMsg
	conns int
	cmds  []string // every command line received, in order
	// rsetWith: for each RSET, whether more commands had arrived with it
	// (in the same read: the client pipelined them).
	rsetWith []bool
	open     map[net.Conn]bool
	ev       chan struct{} // closed (and replaced) on every command and end of a session
	done     chan struct{}
}

// script says how the server behaves. The zero value is a well-behaved
// ESMTP server with PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, DSN,
// SMTPUTF8 and SIZE.
type script struct {
	greeting string            // default "220 fake.example ESMTP"
	ext      []string          // EHLO keywords; nil = the defaults above
	reply    map[string]string // verb → reply ("\r\n" added; may hold several lines)
	rcpt     map[string]string // recipient address → RCPT reply
	lmtp     map[string]string // recipient address → LMTP end-of-data reply
	drop     map[string]bool   // close the connection on receiving verb, without replying
	hang     map[string]bool   // never answer verb (the client's timeout must fire)
	tls      *tls.Config       // offer STARTTLS with this config
	hideTLS  bool              // with tls set: do not advertise STARTTLS
	lmtpMode bool              // LHLO instead of EHLO
	// tlsGarbage answers STARTTLS with 220 and then sends garbage instead
	// of a TLS handshake, so the client's handshake fails.
	tlsGarbage bool
	tlsHang    bool // answer STARTTLS with 220, then never speak TLS
	noRecord   bool // do not record wire bytes and messages (benchmarks)
	// firstConn applies only to the first connection; later ones use the
	// rest of the script (e.g. a handshake that fails only once).
	firstConn *script
	// hangAt never answers the n-th (from 1) occurrence of verb on a
	// connection, as hang does; the ones before it are answered.
	hangAt map[string]int
	// authEcho refuses AUTH with a 535 reply that repeats what the client
	// sent (the AUTH PLAIN line, or LOGIN's last line) and the decoded
	// password, as some servers do.
	authEcho bool
	// laxData answers DATA with 354 even when no recipient was accepted
	// (as smtp-sink does), and refuses what follows the data.
	laxData bool
}

type fakeMsg struct {
	From, Helo string
	MailLine   string
	RcptLines  []string
	Rcpts      []string
	Data       []byte // as on the wire after the DATA/BDAT framing: dot-stuffed, CRLF
	TLS        bool
	Remote     string
	ConnNo     int
}

var defaultExt = []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8", "SIZE 10000000"}

// withoutPipelining returns ext (nil: defaultExt) without PIPELINING.
func withoutPipelining(ext []string) []string {
	if ext == nil {
		ext = defaultExt
	}
	return slices.DeleteFunc(slices.Clone(ext), func(e string) bool { return e == "PIPELINING" })
}

func newFakeServer(t testing.TB, sc script) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, sc: sc, open: map[net.Conn]bool{}, ev: make(chan struct{}), done: make(chan struct{}),
		Addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	var wg sync.WaitGroup
	wg.Go(func() {
		n := 0
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n++
			sc := s.sc
			if n == 1 && sc.firstConn != nil {
				sc = *sc.firstConn
			}
			s.mu.Lock()
			s.conns++
			s.open[c] = true
			s.mu.Unlock()
			connNo := n
			wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.open, c)
					s.notify()
					s.mu.Unlock()
				}()
				s.serve(c, sc, connNo)
			})
		}
	})
	t.Cleanup(func() {
		close(s.done)
		ln.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

// recConn records what the client sends.
type recConn struct {
	net.Conn
	s *fakeServer
}

func (r recConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if r.s.sc.noRecord {
		return n, err
	}
	r.s.mu.Lock()
	r.s.wire.Write(p[:n])
	r.s.mu.Unlock()
	return n, err
}

func (s *fakeServer) Wire() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.wire.Bytes())
}

func (s *fakeServer) Messages() []fakeMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fakeMsg(nil), s.msgs...)
}

func (s *fakeServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *fakeServer) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

// RSETPipelined reports, for each RSET received, whether the commands
// after it arrived in the same read (pipelined with it).
func (s *fakeServer) RSETPipelined() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.rsetWith...)
}

// Verbs returns the verb of every command received ("MAIL" for "MAIL
// FROM:<...>"), in order, joined by "|".
func (s *fakeServer) Verbs() string {
	var v []string
	for _, c := range s.Commands() {
		verb, _, _ := strings.Cut(c, " ")
		verb, _, _ = strings.Cut(verb, ":")
		v = append(v, strings.ToUpper(verb))
	}
	return strings.Join(v, "|")
}

// notify wakes up waitUntil; s.mu must be held.
func (s *fakeServer) notify() {
	close(s.ev)
	s.ev = make(chan struct{})
}

// waitUntil waits until cond (called with s.mu held) is true, re-checking
// it each time the server records a command or ends a session. The test
// fails if that takes more than 10s: the deadline only bounds a test that
// is already broken, it decides nothing.
func (s *fakeServer) waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ev := cond(), s.ev
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ev:
		case <-deadline.C:
			t.Fatalf("fake server: gave up waiting for %s; commands so far: %q", what, s.Commands())
		}
	}
}

// waitCommand waits until the server has received a command starting with
// prefix.
func (s *fakeServer) waitCommand(t testing.TB, prefix string) {
	t.Helper()
	s.waitUntil(t, "a command "+prefix, func() bool {
		for _, c := range s.cmds {
			if strings.HasPrefix(c, prefix) {
				return true
			}
		}
		return false
	})
}

// hasCommand reports whether the server received a command starting with
// one of the prefixes (case-insensitive: "MAIL" also finds "mail from:").
func (s *fakeServer) hasCommand(prefixes ...string) bool {
	for _, c := range s.Commands() {
		for _, p := range prefixes {
			if len(c) >= len(p) && strings.EqualFold(c[:len(p)], p) {
				return true
			}
		}
	}
	return false
}

func (s *fakeServer) serve(nc net.Conn, sc script, connNo int) {
	var conn net.Conn = recConn{nc, s}
	br := bufio.NewReader(conn)
	inTLS := false
	send := func(r string) bool {
		if !strings.HasSuffix(r, "\n") {
			r += "\r\n"
		}
		_, err := io.WriteString(conn, r)
		return err == nil
	}
	hang := func() {
		// Answer nothing; wait for the client to give up (or the test to
		// end).
		_, _ = io.Copy(io.Discard, br)
	}
	get := func(verb, def string) string {
		if r, ok := sc.reply[verb]; ok {
			return r
		}
		return def
	}
	if sc.drop["CONNECT"] {
		return
	}
	if sc.hang["CONNECT"] {
		hang()
		return
	}
	greeting := sc.greeting
	if greeting == "" {
		greeting = "220 fake.example ESMTP"
	}
	if !send(greeting) {
		return
	}
	var cur *fakeMsg
	helo := ""
	seen := map[string]int{} // occurrences of each verb on this connection
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if strings.HasPrefix(verb, "MAIL") || strings.HasPrefix(verb, "RCPT") {
			verb = verb[:4]
		}
		if !sc.noRecord {
			s.mu.Lock()
			s.cmds = append(s.cmds, line)
			if verb == "RSET" {
				s.rsetWith = append(s.rsetWith, br.Buffered() > 0)
			}
			s.notify()
			s.mu.Unlock()
		}
		seen[verb]++
		if sc.drop[verb] {
			return
		}
		if sc.hang[verb] || sc.hangAt[verb] == seen[verb] {
			hang()
			return
		}
		switch verb {
		case "EHLO", "LHLO":
			helo = arg
			if r, ok := sc.reply[verb]; ok {
				send(r)
				continue
			}
			ext := sc.ext
			if ext == nil {
				ext = defaultExt
			}
			if sc.tls != nil && !inTLS && !sc.hideTLS {
				ext = append(append([]string(nil), ext...), "STARTTLS")
			}
			var b strings.Builder
			b.WriteString("250")
			if len(ext) > 0 {
				b.WriteString("-")
			} else {
				b.WriteString(" ")
			}
			b.WriteString("fake.example\r\n")
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				b.WriteString("250" + sep + e + "\r\n")
			}
			send(b.String())
		case "HELO":
			helo = arg
			send(get("HELO", "250 fake.example"))
		case "STARTTLS":
			r := get("STARTTLS", "220 2.0.0 go ahead")
			send(r)
			if sc.tlsHang {
				hang()
				return
			}
			if sc.tlsGarbage {
				// Wait for the ClientHello, then answer with garbage.
				_, _ = br.Read(make([]byte, 1))
				send("this is not TLS at all")
				return
			}
			if !strings.HasPrefix(r, "220") || sc.tls == nil {
				continue
			}
			tc := tls.Server(nc, sc.tls)
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				return
			}
			_ = tc.SetDeadline(time.Time{})
			conn, inTLS = tc, true
			br = bufio.NewReader(conn)
		case "AUTH":
			last := line // what the client sent last
			if strings.HasPrefix(strings.ToUpper(arg), "LOGIN") {
				send("334 VXNlcm5hbWU6")
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
				send("334 UGFzc3dvcmQ6")
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				last = strings.TrimRight(l, "\r\n")
			}
			if sc.authEcho {
				blob := last[strings.LastIndexByte(last, ' ')+1:]
				dec, _ := base64.StdEncoding.DecodeString(blob)
				pass := dec[bytes.LastIndexByte(dec, 0)+1:]
				send("535-5.7.8 you sent: " + last + "\r\n535 5.7.8 password " + string(pass) + " is wrong")
				continue
			}
			send(get("AUTH", "235 2.7.0 ok"))
		case "MAIL":
			r := get("MAIL", "250 2.1.0 ok")
			if strings.HasPrefix(r, "250") {
				from, _, _ := strings.Cut(strings.TrimPrefix(arg, "FROM:<"), ">")
				cur = &fakeMsg{From: from, Helo: helo, MailLine: line, TLS: inTLS, Remote: nc.RemoteAddr().String(), ConnNo: connNo}
			}
			send(r)
		case "RCPT":
			to, _, _ := strings.Cut(strings.TrimPrefix(arg, "TO:<"), ">")
			r, ok := sc.rcpt[to]
			if !ok {
				r = get("RCPT", "250 2.1.5 ok")
			}
			if cur == nil {
				r = "503 5.5.1 need MAIL"
			} else if strings.HasPrefix(r, "25") {
				cur.Rcpts = append(cur.Rcpts, to)
				cur.RcptLines = append(cur.RcptLines, line)
			}
			send(r)
		case "DATA":
			r := get("DATA", "354 go ahead")
			empty := cur == nil || len(cur.Rcpts) == 0
			if empty && !sc.laxData {
				r = "554 5.5.1 no valid recipients"
			}
			send(r)
			if !strings.HasPrefix(r, "354") {
				continue
			}
			var data []byte
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data = append(data, l...)
			}
			if sc.drop["."] {
				return
			}
			seen["."]++
			if sc.hang["."] || sc.hangAt["."] == seen["."] {
				hang()
				return
			}
			if empty { // laxData
				send("554 5.5.1 no valid recipients")
				cur = nil
				continue
			}
			cur.Data = data
			s.finish(sc, cur, send)
			cur = nil
		case "BDAT":
			f := strings.Fields(arg)
			n, err := strconv.Atoi(f[0])
			if err != nil || cur == nil {
				send("501 5.5.4 bad BDAT")
				return
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			cur.Data = append(cur.Data, buf...)
			if len(f) > 1 && strings.EqualFold(f[1], "LAST") {
				s.finish(sc, cur, send)
				cur = nil
			} else {
				send(get("BDAT", "250 2.0.0 chunk ok"))
			}
		case "RSET":
			cur = nil
			send(get("RSET", "250 2.0.0 ok"))
		case "QUIT":
			send("221 2.0.0 bye")
			return
		case "NOOP":
			send("250 2.0.0 ok")
		default:
			send("502 5.5.2 unknown command")
		}
	}
}

// finish ends a transaction: records the message and sends the reply (one
// per recipient for LMTP).
func (s *fakeServer) finish(sc script, m *fakeMsg, send func(string) bool) {
	r := sc.reply["."]
	if r == "" {
		r = "250 2.0.0 queued"
	}
	if strings.HasPrefix(r, "2") && !sc.noRecord {
		s.mu.Lock()
		s.msgs = append(s.msgs, *m)
		s.mu.Unlock()
	}
	if !sc.lmtpMode {
		send(r)
		return
	}
	for _, rc := range m.Rcpts {
		if lr, ok := sc.lmtp[rc]; ok {
			send(lr)
		} else {
			send(r)
		}
	}
}
