package dns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

var testRecords = []string{
	"example.test. 300 IN MX 10 MX1.example.test.",
	"example.test. 300 IN MX 20 mx2.example.test.",
	"mx1.example.test. 120 IN A 127.0.0.2",
	"mx1.example.test. 300 IN A 127.0.0.3",
	"mx1.example.test. 300 IN AAAA ::1",
	"_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 0102030405",
	"example.test. 300 IN TXT \"v=spf1 \" \"-all\"",
	"nullmx.example.test. 300 IN MX 0 .",
	"alias.example.test. 100 IN CNAME mx1.example.test.",
	"loop1.example.test. 300 IN CNAME loop2.example.test.",
	"loop2.example.test. 300 IN CNAME loop1.example.test.",
}

func TestClientAnswers(t *testing.T) {
	srv := startServer(t, zoneHandler(t, true, testRecords...))
	c := customClient(t, Config{EDNS: true, DNSSEC: true}, "udp://"+srv.addr)
	ctx := context.Background()

	mx, err := c.LookupMX(ctx, "Example.Test.")
	if err != nil {
		t.Fatal(err)
	}
	if want := []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}}; !reflect.DeepEqual(mx.Records, want) {
		t.Errorf("MX = %v, want %v", mx.Records, want)
	}
	if !mx.Secure || mx.Info.Server != "udp://"+srv.addr || mx.Info.TTL != 300*time.Second || mx.Info.Cached {
		t.Errorf("MX result = %+v", mx)
	}

	a, err := c.LookupA(ctx, "mx1.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Addrs, addrs("127.0.0.2", "127.0.0.3")) || a.Info.TTL != 120*time.Second {
		t.Errorf("A = %+v (want both addresses, TTL 120s = the smallest)", a)
	}
	aaaa, err := c.LookupAAAA(ctx, "mx1.example.test")
	if err != nil || !reflect.DeepEqual(aaaa.Addrs, addrs("::1")) {
		t.Errorf("AAAA = %+v, %v", aaaa, err)
	}
	tlsa, err := c.LookupTLSA(ctx, "_25._tcp.mx1.example.test")
	if err != nil || !reflect.DeepEqual(tlsa.Records, []TLSA{{3, 1, 1, []byte{1, 2, 3, 4, 5}}}) {
		t.Errorf("TLSA = %+v, %v", tlsa, err)
	}
	txt, err := c.LookupTXT(ctx, "example.test")
	if err != nil || !reflect.DeepEqual(txt.Records, []string{"v=spf1 -all"}) {
		t.Errorf("TXT = %+v, %v", txt, err)
	}
	null, err := c.LookupMX(ctx, "nullmx.example.test")
	if err != nil || !null.NullMX || len(null.Records) != 0 {
		t.Errorf("null MX = %+v, %v", null, err)
	}
	// The query carried EDNS0 with a 1232-byte buffer and DO, and AD.
	q := srv.last()
	opt := q.IsEdns0()
	if opt == nil || opt.UDPSize() != 1232 || !opt.Do() || !q.AuthenticatedData || !q.RecursionDesired {
		t.Errorf("query flags: opt=%v ad=%v rd=%v", opt, q.AuthenticatedData, q.RecursionDesired)
	}
}

func TestClientNegative(t *testing.T) {
	srv := startServer(t, zoneHandler(t, false, testRecords...))
	c := customClient(t, Config{}, "udp://"+srv.addr)
	ctx := context.Background()

	_, err := c.LookupA(ctx, "nosuch.example.test")
	var de *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &de) {
		t.Fatalf("NXDOMAIN: err = %v", err)
	}
	if de.Name != "nosuch.example.test" || de.Type != "A" || de.Server != "udp://"+srv.addr {
		t.Errorf("NXDOMAIN error fields: %+v", de)
	}
	if msg := err.Error(); !strings.Contains(msg, "A nosuch.example.test") || !strings.Contains(msg, "NXDOMAIN") {
		t.Errorf("message %q lacks name, type or kind", msg)
	}
	if _, err := c.LookupAAAA(ctx, "mx2.example.test."); !errors.Is(err, ErrNotFound) {
		t.Errorf("mx2 has no records at all: err = %v", err)
	}
	if _, err := c.LookupTXT(ctx, "mx1.example.test"); !errors.Is(err, ErrNoData) {
		t.Errorf("NODATA: err = %v", err)
	}
	// The negative TTL is the SOA's MINIMUM (60) as it is below its TTL.
	r, err := c.query(ctx, "mx1.example.test", mdns.TypeTXT)
	if r == nil || !r.hasTTL || r.ttl != 60 || !errors.Is(err, ErrNoData) {
		t.Errorf("negative response = %+v, %v", r, err)
	}
	if _, err := c.LookupA(ctx, "bad..name"); !errors.Is(err, ErrNotFound) || srv.queries() != 4 {
		t.Errorf("invalid name: err = %v, queries = %d (an invalid name must not be sent)", err, srv.queries())
	}
}

func TestClientSecureNeedsDNSSECAndAD(t *testing.T) {
	withAD := startServer(t, zoneHandler(t, true, testRecords...))
	withoutAD := startServer(t, zoneHandler(t, false, testRecords...))
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		srv    *testServer
		dnssec bool
		want   bool
	}{
		{"AD from loopback, DNSSEC on", withAD, true, true},
		{"AD from loopback, DNSSEC off", withAD, false, false},
		{"no AD", withoutAD, true, false},
	} {
		c := customClient(t, Config{EDNS: true, DNSSEC: tc.dnssec}, tc.srv.addr)
		r, err := c.LookupA(ctx, "mx1.example.test")
		if err != nil {
			t.Fatal(err)
		}
		if r.Secure != tc.want {
			t.Errorf("%s: Secure = %v, want %v", tc.name, r.Secure, tc.want)
		}
	}
	// Without EDNS there is no OPT record (and so no DO bit).
	c := customClient(t, Config{DNSSEC: true}, withAD.addr)
	if _, err := c.LookupA(ctx, "mx1.example.test"); err != nil {
		t.Fatal(err)
	}
	if withAD.last().IsEdns0() != nil {
		t.Error("EDNS off, but the query had an OPT record")
	}
}

func TestTrustAD(t *testing.T) {
	for _, tc := range []struct {
		server string
		want   bool
	}{
		{"udp://192.0.2.1:53", false},
		{"tcp://192.0.2.1:53", false},
		{"udp://[2001:db8::1]:53", false},
		{"udp://127.0.0.1:53", true},
		{"udp://127.0.0.53:53", true},
		{"tcp://[::1]:53", true},
		{"udp://[::ffff:127.0.0.1]:53", true},
		{"tls://192.0.2.1:853#dns.example", true},
		{"tls://1.1.1.1#cloudflare-dns.com", true},
	} {
		s, err := ParseServer(tc.server)
		if err != nil {
			t.Fatal(err)
		}
		if got := trustAD(s); got != tc.want {
			t.Errorf("trustAD(%s) = %v, want %v", tc.server, got, tc.want)
		}
	}
}

// A plain-UDP answer with AD from a non-loopback address must not be
// Secure. No traffic may leave loopback, so the Client's only server is
// labelled 192.0.2.1 (the trust decision looks at the label) while it
// still dials the loopback test server.
func TestClientDoesNotTrustADFromRemoteUDP(t *testing.T) {
	srv := startServer(t, zoneHandler(t, true, testRecords...))
	c := customClient(t, Config{EDNS: true, DNSSEC: true}, srv.addr)
	// Keep dialing the loopback server, but label it as 192.0.2.1.
	c.servers[0].Addr = netip.MustParseAddrPort("192.0.2.1:53")
	r, err := c.LookupA(context.Background(), "mx1.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if r.Secure {
		t.Error("AD over plain UDP from 192.0.2.1 was trusted")
	}
	if srv.queries() != 1 {
		t.Fatalf("the test server saw %d queries, want 1", srv.queries())
	}
}

func TestClientFailures(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		h       handlerFunc
		wantErr error
		wantMsg string
	}{
		{"SERVFAIL", rcodeHandler(mdns.RcodeServerFailure), ErrTemporary, "SERVFAIL"},
		{"REFUSED", rcodeHandler(mdns.RcodeRefused), ErrTemporary, "REFUSED"},
		{"FORMERR", rcodeHandler(mdns.RcodeFormatError), ErrTemporary, "FORMERR"},
		{"wrong question", func(w mdns.ResponseWriter, q *mdns.Msg, _ bool) {
			m := new(mdns.Msg)
			m.SetReply(q)
			m.Question[0].Name = "other.test."
			_ = w.WriteMsg(m)
		}, ErrTemporary, "another question"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.h)
			c := customClient(t, Config{EDNS: true}, "udp://"+srv.addr)
			_, err := c.LookupMX(ctx, "example.test")
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.wantErr, tc.wantMsg)
			}
			var de *Error
			if !errors.As(err, &de) || de.Server != "udp://"+srv.addr || de.Name != "example.test" || de.Type != "MX" {
				t.Errorf("error fields: %+v", de)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	srv := startServer(t, silentHandler)
	c := customClient(t, Config{Timeout: 150 * time.Millisecond, Attempts: 2}, "udp://"+srv.addr)
	start := time.Now()
	_, err := c.LookupA(context.Background(), "example.test")
	el := time.Since(start)
	var ne net.Error
	if !errors.Is(err, ErrTemporary) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a Temporary timeout", err)
	}
	if srv.udpQ.Load() != 2 {
		t.Errorf("server saw %d UDP questions, want 2 (two attempts)", srv.udpQ.Load())
	}
	// A timeout cannot fire early; the upper bound is only there to catch
	// a timeout that is not applied at all (generous for a loaded machine).
	if el < 300*time.Millisecond || el > 20*time.Second {
		t.Errorf("took %v, want about 2 x 150ms", el)
	}
	// With TCPOnError a timeout is still not asked again over TCP: see
	// TestClientNoTCPAfterUDPTimeout.
}

// listenUDPAndTCP opens a UDP socket and a TCP listener on the same free
// port of 127.0.0.1.
func listenUDPAndTCP(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
}

// waitOn receives from ch, failing the test if nothing comes within a
// generous bound (a safety net, not a timing assertion).
func waitOn[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("gave up waiting for %s", what)
		panic("unreachable")
	}
}

// A UDP exchange that times out is not repeated over TCP, even with
// TCPOnError: a server that does not answer would cost its timeout twice.
// The UDP socket swallows the question; a TCP listener on the same port
// records who connects. After the lookup, the test connects itself: the
// kernel queues connections in order, so the first one accepted must be
// the test's own, or the client tried TCP.
func TestClientNoTCPAfterUDPTimeout(t *testing.T) {
	pc, l := listenUDPAndTCP(t)
	t.Cleanup(func() { pc.Close(); l.Close() })
	gotUDP := make(chan struct{}, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			gotUDP <- struct{}{}
		}
	}()
	// Accepted connections stay open (and silent) until the test ends.
	accepted := make(chan string, 16)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			accepted <- conn.RemoteAddr().String()
		}
	}()

	c := customClient(t, Config{Timeout: 200 * time.Millisecond, Attempts: 1, TCPOnError: true}, "udp://"+pc.LocalAddr().String())
	_, err := c.LookupA(context.Background(), "example.test")
	var ne net.Error
	if !errors.Is(err, ErrTemporary) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a Temporary timeout", err)
	}
	if strings.Contains(err.Error(), "TCP") {
		t.Errorf("err = %v mentions TCP", err)
	}
	waitOn(t, gotUDP, "the UDP question")

	marker, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	if first := waitOn(t, accepted, "the test's own TCP connection"); first != marker.LocalAddr().String() {
		t.Errorf("a TCP connection from %s came before the test's own (%s): the client retried over TCP after a timeout",
			first, marker.LocalAddr())
	}
}

// A UDP exchange that fails otherwise, here with "connection refused"
// (nothing listens on the UDP port), is repeated over TCP with TCPOnError.
func TestClientTCPAfterUDPRefused(t *testing.T) {
	pc, l := listenUDPAndTCP(t)
	addr := pc.LocalAddr().String()
	pc.Close() // the UDP port is free now: a question to it is refused
	s := &testServer{addr: addr}
	serve(t, &mdns.Server{Listener: l, Handler: s.wrap(zoneHandler(t, false, testRecords...))})
	ctx := context.Background()

	// Without TCPOnError the refusal is the answer (which shows the UDP
	// question was indeed refused).
	c := customClient(t, Config{Timeout: 200 * time.Millisecond}, "udp://"+addr)
	if _, err := c.LookupMX(ctx, "example.test"); !errors.Is(err, ErrTemporary) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("without TCPOnError: err = %v, want Temporary, connection refused", err)
	}
	if s.streamQ.Load() != 0 {
		t.Fatalf("without TCPOnError: %d TCP questions", s.streamQ.Load())
	}
	c = customClient(t, Config{Timeout: 200 * time.Millisecond, TCPOnError: true}, "udp://"+addr)
	r, err := c.LookupMX(ctx, "example.test")
	if err != nil || len(r.Records) != 2 {
		t.Fatalf("with TCPOnError: %+v, %v", r, err)
	}
	if s.streamQ.Load() != 1 {
		t.Errorf("TCP questions = %d, want 1", s.streamQ.Load())
	}
}

// RFC 6604: with RCODE NXDOMAIN only the CNAMEs of the answer count.
// Records of the asked type beside an NXDOMAIN are ignored: the name does
// not exist, whatever else the reply says.
func TestClientNXDOMAINIgnoresAnswerRecords(t *testing.T) {
	ctx := context.Background()
	hostile := func(records ...string) handlerFunc {
		var answer []mdns.RR
		for _, s := range records {
			rr, err := mdns.NewRR(s)
			if err != nil {
				t.Fatalf("bad test record %q: %v", s, err)
			}
			answer = append(answer, rr)
		}
		soa, _ := mdns.NewRR("test. 300 IN SOA ns.test. host.test. 1 3600 600 86400 60")
		return func(w mdns.ResponseWriter, q *mdns.Msg, _ bool) {
			m := new(mdns.Msg)
			m.SetRcode(q, mdns.RcodeNameError)
			m.Answer = answer
			m.Ns = []mdns.RR{soa}
			_ = w.WriteMsg(m)
		}
	}
	for _, tc := range []struct {
		name    string
		records []string
		via     string // the "via CNAME" cause wanted, "" for none
	}{
		{"A record", []string{"www.hostile.test. 300 IN A 127.0.0.9"}, ""},
		{"CNAME chain", []string{
			"www.hostile.test. 300 IN CNAME b.hostile.test.",
			"b.hostile.test. 300 IN CNAME gone.hostile.test.",
			"gone.hostile.test. 300 IN A 127.0.0.9",
		}, "via CNAME gone.hostile.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, hostile(tc.records...))
			c := customClient(t, Config{}, "udp://"+srv.addr)
			r, err := c.LookupA(ctx, "www.hostile.test")
			if !errors.Is(err, ErrNotFound) || len(r.Addrs) != 0 {
				t.Fatalf("got %v, %v; want NXDOMAIN and no address", r.Addrs, err)
			}
			if tc.via != "" && !strings.HasSuffix(err.Error(), ": "+tc.via) {
				t.Errorf("err = %v, want it to end with %q", err, tc.via)
			}
			if tc.via == "" && strings.Contains(err.Error(), "via CNAME") {
				t.Errorf("err = %v mentions a CNAME", err)
			}
			if srv.queries() != 1 {
				t.Errorf("%d questions, want 1 (an NXDOMAIN ends the search)", srv.queries())
			}
			// Negative results carry the negative TTL and the server.
			if r.Info.TTL != 60*time.Second || r.Info.Server != "udp://"+srv.addr || r.Info.Cached {
				t.Errorf("Info = %+v, want TTL 60s from the server", r.Info)
			}
		})
	}
}

func TestClientContextCancel(t *testing.T) {
	srv := startServer(t, silentHandler)
	c := customClient(t, Config{Timeout: 10 * time.Second}, "udp://"+srv.addr)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the question is with the server: the lookup is
		// then waiting for an answer that never comes.
		for deadline := time.Now().Add(30 * time.Second); srv.udpQ.Load() == 0 && time.Now().Before(deadline); {
			runtime.Gosched()
		}
		cancel()
	}()
	_, err := c.LookupA(ctx, "example.test")
	// Without the cancellation the lookup would end at its 10 s timeout,
	// with a deadline error, not this one.
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrTemporary) {
		t.Fatalf("err = %v, want Temporary wrapping context.Canceled", err)
	}
}

func TestClientTruncatedUDP(t *testing.T) {
	h := zoneHandler(t, false, testRecords...)
	srv := startServer(t, func(w mdns.ResponseWriter, q *mdns.Msg, udp bool) {
		if udp {
			m := new(mdns.Msg)
			m.SetReply(q)
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		h(w, q, udp)
	})
	ctx := context.Background()
	c := customClient(t, Config{EDNS: true, TCPOnError: true}, "udp://"+srv.addr)
	r, err := c.LookupMX(ctx, "example.test")
	if err != nil || len(r.Records) != 2 {
		t.Fatalf("MX over TCP fallback = %+v, %v", r, err)
	}
	if srv.udpQ.Load() != 1 || srv.streamQ.Load() != 1 {
		t.Errorf("udp=%d tcp=%d, want 1 and 1", srv.udpQ.Load(), srv.streamQ.Load())
	}
	c = customClient(t, Config{EDNS: true, TCPOnError: false}, "udp://"+srv.addr)
	if _, err := c.LookupMX(ctx, "example.test"); !errors.Is(err, ErrTemporary) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("without TCP fallback: err = %v", err)
	}
	// A tcp:// server is asked over TCP only.
	c = customClient(t, Config{}, "tcp://"+srv.addr)
	before := srv.udpQ.Load()
	if _, err := c.LookupMX(ctx, "example.test"); err != nil || srv.udpQ.Load() != before {
		t.Errorf("tcp:// server: err = %v, udp questions +%d", err, srv.udpQ.Load()-before)
	}
}

func TestClientFailover(t *testing.T) {
	ctx := context.Background()
	bad := startServer(t, rcodeHandler(mdns.RcodeServerFailure))
	good := startServer(t, zoneHandler(t, false, testRecords...))
	// A port nobody listens on: UDP gets "connection refused".
	l, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := l.LocalAddr().String()
	l.Close()

	c := customClient(t, Config{Attempts: 1}, "udp://"+dead, "udp://"+bad.addr, "udp://"+good.addr)
	r, err := c.LookupMX(ctx, "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if r.Info.Server != "udp://"+good.addr {
		t.Errorf("answered by %s, want the third server", r.Info.Server)
	}
	if bad.queries() != 2 { // the question, and its CD-bit check
		t.Errorf("failing server saw %d questions, want 2", bad.queries())
	}
	// Without rotate the first server is always tried first.
	if _, err := c.LookupMX(ctx, "example.test"); err != nil || bad.queries() != 4 {
		t.Errorf("second lookup: %v, failing server saw %d", err, bad.queries())
	}
}

func TestClientBogus(t *testing.T) {
	ctx := context.Background()
	good := zoneHandler(t, true, testRecords...)
	ede := startServer(t, func(w mdns.ResponseWriter, q *mdns.Msg, _ bool) {
		m := new(mdns.Msg)
		m.SetRcode(q, mdns.RcodeServerFailure)
		m.SetEdns0(1232, true)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeSignatureExpired, ExtraText: "signature expired"})
		_ = w.WriteMsg(m)
	})
	cd := startServer(t, func(w mdns.ResponseWriter, q *mdns.Msg, udp bool) {
		if q.CheckingDisabled {
			good(w, q, udp)
			return
		}
		rcodeHandler(mdns.RcodeServerFailure)(w, q, udp)
	})
	other := startServer(t, good)
	for _, tc := range []struct {
		name string
		srv  *testServer
		want string
	}{
		{"EDE", ede, "extended error 7 (Signature Expired): signature expired"},
		{"CD retry", cd, "checking disabled"},
	} {
		// The next server would answer, but bogus is final: no fallback.
		c := customClient(t, Config{EDNS: true, DNSSEC: true}, tc.srv.addr, other.addr)
		_, err := c.LookupTLSA(ctx, "_25._tcp.mx1.example.test")
		if !errors.Is(err, ErrBogus) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want Bogus mentioning %q", tc.name, err, tc.want)
		}
		if other.queries() != 0 {
			t.Errorf("%s: fell back to the next server after a bogus answer", tc.name)
		}
	}
	// A SERVFAIL that goes away by itself is not bogus.
	var n atomic.Int64
	flaky := startServer(t, func(w mdns.ResponseWriter, q *mdns.Msg, udp bool) {
		if n.Add(1) == 1 {
			rcodeHandler(mdns.RcodeServerFailure)(w, q, udp)
			return
		}
		good(w, q, udp)
	})
	c := customClient(t, Config{EDNS: true, DNSSEC: true}, flaky.addr)
	r, err := c.LookupTLSA(ctx, "_25._tcp.mx1.example.test")
	if err != nil || len(r.Records) != 1 || !r.Secure {
		t.Errorf("transient SERVFAIL: %+v, %v", r, err)
	}
}

func TestClientCNAME(t *testing.T) {
	ctx := context.Background()
	// An answer that carries the whole chain.
	chain := startServer(t, func(w mdns.ResponseWriter, q *mdns.Msg, _ bool) {
		m := new(mdns.Msg)
		m.SetReply(q)
		for _, s := range []string{
			"www.chain.test. 50 IN CNAME B.chain.test.",
			"b.chain.test. 300 IN CNAME c.chain.test.",
			"c.chain.test. 300 IN A 127.0.0.7",
			"unrelated.test. 300 IN A 127.0.0.8",
		} {
			rr, _ := mdns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})
	c := customClient(t, Config{}, chain.addr)
	r, err := c.LookupA(ctx, "www.chain.test")
	if err != nil || !reflect.DeepEqual(r.Addrs, addrs("127.0.0.7")) || r.Info.TTL != 50*time.Second {
		t.Fatalf("in-answer chain: %+v, %v", r, err)
	}
	if chain.queries() != 1 {
		t.Errorf("in-answer chain took %d questions", chain.queries())
	}

	// An answer that ends in a CNAME: the target is asked for.
	srv := startServer(t, zoneHandler(t, false, testRecords...))
	c = customClient(t, Config{}, srv.addr)
	r, err = c.LookupA(ctx, "alias.example.test")
	if err != nil || !reflect.DeepEqual(r.Addrs, addrs("127.0.0.2", "127.0.0.3")) || r.Info.TTL != 100*time.Second {
		t.Fatalf("re-queried chain: %+v, %v", r, err)
	}
	if r.Canonical != "mx1.example.test" {
		t.Errorf("Canonical through a CNAME = %q, want mx1.example.test", r.Canonical)
	}
	if srv.queries() != 2 {
		t.Errorf("re-queried chain took %d questions, want 2", srv.queries())
	}
	if r, _ := c.LookupA(ctx, "mx1.example.test"); r.Canonical != "" {
		t.Errorf("Canonical without a CNAME = %q, want empty", r.Canonical)
	}
	_, err = c.LookupA(ctx, "loop1.example.test")
	if !errors.Is(err, ErrTemporary) || !strings.Contains(err.Error(), "CNAME chain longer than 8") {
		t.Errorf("CNAME loop: err = %v", err)
	}
	if q := srv.queries(); q > 12 {
		t.Errorf("CNAME loop cost %d questions", q)
	}
}

func TestClientRotateFromResolvConf(t *testing.T) {
	a := startServer(t, zoneHandler(t, false, testRecords...))
	b := startServer(t, zoneHandler(t, false, testRecords...))
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	body := "# test\nsearch example.test\nnameserver [" + strings.Replace(a.addr, ":", "]:", 1) +
		"\nnameserver [" + strings.Replace(b.addr, ":", "]:", 1) + "\noptions timeout:1 attempts:3 rotate ndots:2\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(Config{Kind: KindSystem, ResolvConf: conf})
	if err != nil {
		t.Fatal(err)
	}
	if c.attempts != 3 || c.udp.Timeout != time.Second || !c.rotate || len(c.servers) != 2 {
		t.Fatalf("from resolv.conf: attempts=%d timeout=%v rotate=%v servers=%v", c.attempts, c.udp.Timeout, c.rotate, c.Servers())
	}
	for i := 0; i < 4; i++ {
		if _, err := c.LookupA(context.Background(), "mx1.example.test"); err != nil {
			t.Fatal(err)
		}
	}
	if a.queries() != 2 || b.queries() != 2 {
		t.Errorf("rotate: a=%d b=%d, want 2 and 2", a.queries(), b.queries())
	}
	// Explicit Config values win over resolv.conf.
	c, err = NewClient(Config{Kind: KindSystem, ResolvConf: conf, Timeout: 3 * time.Second, Attempts: 1})
	if err != nil || c.attempts != 1 || c.udp.Timeout != 3*time.Second {
		t.Fatalf("override: %v attempts=%d timeout=%v", err, c.attempts, c.udp.Timeout)
	}
}

func TestParseResolvConf(t *testing.T) {
	rc, err := parseResolvConf(strings.NewReader(
		"nameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver ::1\nnameserver 10.0.0.4\noptions timeout:99 attempts:0\n"), "rc")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range rc.servers {
		got = append(got, s.String())
	}
	want := []string{"udp://10.0.0.1:53", "udp://[fe80::1]:53", "udp://[::1]:53"} // at most 3, as glibc
	if !reflect.DeepEqual(got, want) || rc.timeout != 30*time.Second || rc.attempts != 1 || rc.rotate {
		t.Errorf("got %v timeout=%v attempts=%d rotate=%v", got, rc.timeout, rc.attempts, rc.rotate)
	}
	rc, err = parseResolvConf(strings.NewReader("# empty\n"), "rc")
	if err != nil || len(rc.servers) != 1 || rc.servers[0].String() != "udp://127.0.0.1:53" {
		t.Errorf("no nameserver: %v %v", rc.servers, err)
	}
	_, err = parseResolvConf(strings.NewReader("\nnameserver dns.example\n"), "/etc/resolv.conf")
	if err == nil || !strings.HasPrefix(err.Error(), "/etc/resolv.conf:2: ") {
		t.Errorf("bad nameserver: err = %v", err)
	}
}

func TestParseServer(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"udp://127.0.0.1:5300", "udp://127.0.0.1:5300", ""},
		{"tcp://127.0.0.1:53", "tcp://127.0.0.1:53", ""},
		{"TLS://9.9.9.9#DNS.Quad9.net.", "tls://9.9.9.9:853#dns.quad9.net", ""},
		{"tls://[2606:4700::1111]:853#cloudflare-dns.com", "tls://[2606:4700::1111]:853#cloudflare-dns.com", ""},
		{"tls://127.0.0.1:8853", "tls://127.0.0.1:8853", ""},
		{"192.0.2.1", "udp://192.0.2.1:53", ""},
		{"192.0.2.1:5353", "udp://192.0.2.1:5353", ""},
		{"::1", "udp://[::1]:53", ""},
		{"udp://[::1]:53", "udp://[::1]:53", ""},
		{" 127.0.0.1 ", "udp://127.0.0.1:53", ""},
		{"", "", "empty"},
		{"https://1.1.1.1/dns-query", "", "unknown scheme \"https\""},
		{"udp://dns.google:53", "", "\"dns.google\" is not an IP address"},
		{"dns.google", "", "not an IP address"},
		{"udp://127.0.0.1:99999", "", "bad port"},
		{"udp://127.0.0.1:0", "", "port 0"},
		{"udp://[::1]", "udp://[::1]:53", ""},
		{"udp://[::1", "", "unbalanced brackets"},
		{"udp://[127.0.0.1]:53", "", "square brackets"},
		{"udp://127.0.0.1#name", "", "only meaningful with tls://"},
		{"tls://127.0.0.1#", "", "empty server name"},
	} {
		s, err := ParseServer(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "dns: server ") {
				t.Errorf("ParseServer(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || s.String() != tc.want {
			t.Errorf("ParseServer(%q) = %s, %v; want %s", tc.in, s, err, tc.want)
		}
	}
}

func TestNewClientKinds(t *testing.T) {
	// Built, never contacted.
	for kind, want := range map[Kind][]string{
		KindCloudflare: {"tls://1.1.1.1:853#cloudflare-dns.com", "tls://1.0.0.1:853#cloudflare-dns.com"},
		KindGoogle:     {"tls://8.8.8.8:853#dns.google", "tls://8.8.4.4:853#dns.google"},
		KindQuad9:      {"tls://9.9.9.9:853#dns.quad9.net", "tls://149.112.112.112:853#dns.quad9.net"},
	} {
		c, err := NewClient(Config{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range c.Servers() {
			got = append(got, s.String())
			if !trustAD(s) {
				t.Errorf("%s: AD from %s would not be trusted", kind, s)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: servers %v, want %v", kind, got, want)
		}
		if c.servers[0].tls.TLSConfig.ServerName != strings.Split(want[0], "#")[1] {
			t.Errorf("%s: TLS server name %q", kind, c.servers[0].tls.TLSConfig.ServerName)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Kind: "opendns"}, `unknown resolver "opendns"`},
		{Config{Kind: KindCustom}, "needs at least one server"},
		{Config{Kind: KindCustom, Servers: []string{"nope"}}, `server "nope"`},
		{Config{Kind: KindGoogle, Servers: []string{"127.0.0.1"}}, "fixed servers"},
		{Config{Kind: KindSystem, Servers: []string{"127.0.0.1"}}, "from resolv.conf"},
		{Config{Kind: KindSystem, ResolvConf: "/nonexistent/resolv.conf"}, "no such file"},
		{Config{Kind: KindStatic}, "NewStatic"},
	} {
		if _, err := NewClient(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClient(%+v) err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Config{Kind: KindStatic}); err == nil || !strings.Contains(err.Error(), "zone file") {
		t.Errorf("static without zone file: %v", err)
	}
	r, err := New(Config{Kind: KindStatic, ZoneFile: "testdata/static.zone", Secure: true})
	if _, ok := r.(*Static); !ok || err != nil {
		t.Errorf("New(static) = %T, %v", r, err)
	}
	r, err = New(Config{Kind: KindCloudflare})
	if _, ok := r.(*Cache); !ok || err != nil {
		t.Errorf("New(cloudflare) = %T, %v", r, err)
	}
}

// testCA makes a throwaway CA and a server certificate for 127.0.0.1 and
// dot.test.
func testCA(t testing.TB) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Postern test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "dot.test"},
		DNSNames:     []string{"dot.test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestClientDoT(t *testing.T) {
	pool, cert := testCA(t)
	otherPool, _ := testCA(t)
	srv := startTLSServer(t, cert, zoneHandler(t, true, testRecords...))
	ctx := context.Background()

	for _, server := range []string{"tls://" + srv.addr + "#dot.test", "tls://" + srv.addr} {
		c := customClient(t, Config{EDNS: true, DNSSEC: true, RootCAs: pool}, server)
		r, err := c.LookupMX(ctx, "example.test")
		if err != nil {
			t.Fatalf("%s: %v", server, err)
		}
		if !r.Secure || len(r.Records) != 2 || r.Info.Server != server {
			t.Errorf("%s: %+v", server, r)
		}
	}
	// Wrong CA, or a name the certificate does not have: refused.
	for _, tc := range []struct {
		server string
		pool   *x509.CertPool
		target any
	}{
		{"tls://" + srv.addr + "#dot.test", otherPool, &x509.UnknownAuthorityError{}},
		{"tls://" + srv.addr + "#other.test", pool, &x509.HostnameError{}},
	} {
		before := srv.queries()
		c := customClient(t, Config{RootCAs: tc.pool}, tc.server)
		_, err := c.LookupMX(ctx, "example.test")
		if !errors.Is(err, ErrTemporary) || !errors.As(err, tc.target) {
			t.Errorf("%s: err = %v, want Temporary wrapping %T", tc.server, err, tc.target)
		}
		if srv.queries() != before {
			t.Errorf("%s: a question was sent over an unverified connection", tc.server)
		}
	}
}

// Validates: a resolver can prove a zone insecure only when it sets DO
// and trusts the AD bit of at least one of its servers.
func TestValidates(t *testing.T) {
	for _, tc := range []struct {
		servers []string
		dnssec  bool
		want    bool
	}{
		{[]string{"udp://127.0.0.1:53"}, true, true},
		{[]string{"udp://127.0.0.1:53"}, false, false},
		{[]string{"udp://192.0.2.1:53"}, true, false},
		{[]string{"udp://192.0.2.1:53", "tls://192.0.2.2:853#dns.example"}, true, true},
	} {
		c, err := NewClient(Config{Kind: KindCustom, Servers: tc.servers, DNSSEC: tc.dnssec})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Validates(); got != tc.want {
			t.Errorf("%v dnssec=%v: Validates = %v, want %v", tc.servers, tc.dnssec, got, tc.want)
		}
		if got := NewCache(c, CacheConfig{}).Validates(); got != tc.want {
			t.Errorf("%v dnssec=%v: Cache.Validates = %v, want %v", tc.servers, tc.dnssec, got, tc.want)
		}
	}
}
