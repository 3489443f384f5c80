package smtpd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proxyV2 encodes a v2 header (cmd 1 PROXY, 0 LOCAL) with extra TLV bytes.
func proxyV2(cmd byte, src, dst netip.AddrPort, tlv []byte) []byte {
	var b bytes.Buffer
	b.Write(proxyV2Sig)
	b.WriteByte(0x20 | cmd)
	var addrs []byte
	switch {
	case cmd == 0:
		b.WriteByte(0x00)
	case src.Addr().Is4():
		b.WriteByte(0x11)
		addrs = append(append(addrs, src.Addr().AsSlice()...), dst.Addr().AsSlice()...)
	default:
		b.WriteByte(0x21)
		addrs = append(append(addrs, src.Addr().AsSlice()...), dst.Addr().AsSlice()...)
	}
	if addrs != nil {
		addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	}
	addrs = append(addrs, tlv...)
	b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(addrs))))
	b.Write(addrs)
	return b.Bytes()
}

func TestReadProxyHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name string
		in   string
		want proxyHeader // Version 0: an error
	}{
		{"v1 tcp4", "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n", proxyHeader{1, false, ap("192.0.2.7:56324"), ap("198.51.100.1:25")}},
		{"v1 tcp6", "PROXY TCP6 2001:db8::7 2001:db8::1 65535 587\r\n", proxyHeader{1, false, ap("[2001:db8::7]:65535"), ap("[2001:db8::1]:587")}},
		{"v1 unknown", "PROXY UNKNOWN\r\n", proxyHeader{Version: 1, Local: true}},
		{"v1 unknown with addresses", "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", proxyHeader{Version: 1, Local: true}},
		{"v2 tcp4 + TLV", string(proxyV2(1, ap("192.0.2.7:1234"), ap("10.0.0.1:25"), []byte{0x04, 0, 1, 'x'})), proxyHeader{2, false, ap("192.0.2.7:1234"), ap("10.0.0.1:25")}},
		{"v2 tcp6", string(proxyV2(1, ap("[2001:db8::7]:1"), ap("[2001:db8::1]:25"), nil)), proxyHeader{2, false, ap("[2001:db8::7]:1"), ap("[2001:db8::1]:25")}},
		{"v2 local", string(proxyV2(0, netip.AddrPort{}, netip.AddrPort{}, nil)), proxyHeader{Version: 2, Local: true}},
		{"v2 unix family is local", string(proxyV2Sig) + "\x21\x31\x00\x00", proxyHeader{Version: 2, Local: true}},

		{"v1 tcp4 with v6 address", "PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n", proxyHeader{}},
		{"v1 bad port", "PROXY TCP4 192.0.2.7 192.0.2.1 65536 25\r\n", proxyHeader{}},
		{"v1 leading zero port", "PROXY TCP4 192.0.2.7 192.0.2.1 025 25\r\n", proxyHeader{}},
		{"v1 double space", "PROXY TCP4  192.0.2.7 192.0.2.1 1 25\r\n", proxyHeader{}},
		{"v1 LF only", "PROXY TCP4 192.0.2.7 192.0.2.1 1 25\n", proxyHeader{}},
		{"v1 too long", "PROXY UNKNOWN " + strings.Repeat("x", 100) + "\r\n", proxyHeader{}},
		{"v1 truncated", "PROXY TCP4 192.0.2.7", proxyHeader{}},
		{"no header", "EHLO client.example\r\n", proxyHeader{}},
		{"v2 version 1", string(proxyV2Sig) + "\x11\x11\x00\x0c" + strings.Repeat("\x00", 12), proxyHeader{}},
		{"v2 command 2", string(proxyV2Sig) + "\x22\x11\x00\x0c" + strings.Repeat("\x00", 12), proxyHeader{}},
		{"v2 short tcp4", string(proxyV2Sig) + "\x21\x11\x00\x04" + "\x01\x02\x03\x04", proxyHeader{}},
		{"v2 huge length", string(proxyV2Sig) + "\x21\x11\xff\xff", proxyHeader{}},
		{"v2 truncated", string(proxyV2Sig) + "\x21\x11\x00\x0c\x01", proxyHeader{}},
		{"empty", "", proxyHeader{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const after = "220 after"
			r := bufio.NewReader(strings.NewReader(tc.in + after))
			got, err := readProxyHeader(r)
			if tc.want.Version == 0 {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != after {
				t.Errorf("read past the header: left %q", rest)
			}
		})
	}
}

func FuzzProxyHeader(f *testing.F) {
	ap := netip.MustParseAddrPort
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 587\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(proxyV2(1, ap("192.0.2.7:1234"), ap("10.0.0.1:25"), []byte{1, 0, 2, 'h', '2'}))
	f.Add(proxyV2(1, ap("[2001:db8::7]:1"), ap("[2001:db8::1]:25"), nil))
	f.Add(proxyV2(0, netip.AddrPort{}, netip.AddrPort{}, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		cr := &countingReader{r: bytes.NewReader(in)}
		h, err := readProxyHeader(bufio.NewReaderSize(cr, 512))
		if cr.n > 16+proxyV2Max+512 {
			t.Fatalf("read %d bytes: unbounded", cr.n)
		}
		if err != nil || h.Local {
			return
		}
		// A header that parses says the same once written again.
		var again []byte
		if h.Version == 1 {
			fam := "TCP4"
			if !h.Src.Addr().Is4() {
				fam = "TCP6"
			}
			again = fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", fam, h.Src.Addr(), h.Dst.Addr(), h.Src.Port(), h.Dst.Port())
		} else {
			again = proxyV2(1, h.Src, h.Dst, nil)
		}
		h2, err := readProxyHeader(bufio.NewReader(bytes.NewReader(again)))
		if err != nil || h2 != h {
			t.Fatalf("%q parsed as %+v; written again %q parses as %+v, %v", in, h, again, h2, err)
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func proxyConfig(trusted string) Config {
	cfg := baseConfig()
	cfg.Listeners[0].ProxyTrusted = []netip.Prefix{netip.MustParsePrefix(trusted)}
	cfg.Networks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	return cfg
}

func TestProxyTrustedPeerGivesClientAddress(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			te := start(t, proxyConfig("127.0.0.1/32"))
			hdr := func(src string) string {
				if v == 1 {
					return "PROXY TCP4 " + src + " 127.0.0.1 40000 25\r\n"
				}
				return string(proxyV2(1, netip.AddrPortFrom(netip.MustParseAddr(src), 40000), netip.MustParseAddrPort("127.0.0.1:25"), nil))
			}
			c := dialNoGreeting(t, te.addr())
			c.send(hdr("192.0.2.7"))
			c.expect("220 ")
			c.ehlo()
			if r := c.transaction("a@example.test", "b@example.org", simpleBody); !strings.HasPrefix(r, "250 ") {
				t.Fatalf("client in Networks through the balancer: %q", r)
			}
			m := te.store.messages()[0]
			if m.env.ClientIP != "192.0.2.7" || !strings.Contains(string(m.body), "(unknown [192.0.2.7])") {
				t.Errorf("ClientIP %q, body %q", m.env.ClientIP, m.body)
			}
			outside := dialNoGreeting(t, te.addr())
			outside.send(hdr("198.51.100.9"))
			outside.expect("220 ")
			outside.ehlo()
			outside.cmd("MAIL FROM:<a@example.test>", "250")
			outside.cmd("RCPT TO:<b@example.org>", "554 5.7.1")
		})
	}
}

func TestProxyLocalKeepsPeerAddress(t *testing.T) {
	cfg := proxyConfig("127.0.0.1/32")
	cfg.Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	te := start(t, cfg)
	c := dialNoGreeting(t, te.addr())
	c.send(string(proxyV2(0, netip.AddrPort{}, netip.AddrPort{}, nil)))
	c.expect("220 ")
	c.ehlo()
	c.transaction("a@example.test", "b@example.org", simpleBody)
	if m := te.store.messages(); len(m) != 1 || m[0].env.ClientIP != "127.0.0.1" {
		t.Fatalf("stored %+v", m)
	}
}

func TestProxyRefusals(t *testing.T) {
	t.Run("untrusted peer", func(t *testing.T) {
		te := start(t, proxyConfig("10.0.0.0/8"))
		c := dialNoGreeting(t, te.addr())
		c.send("PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
		if b := closedSilently(t, c); len(b) != 0 {
			t.Errorf("untrusted peer got %q; want a silent close", b)
		}
	})
	t.Run("trusted peer without header", func(t *testing.T) {
		te := start(t, proxyConfig("127.0.0.0/8"))
		c := dialNoGreeting(t, te.addr())
		c.send("EHLO client.example\r\n")
		if b := closedSilently(t, c); len(b) != 0 {
			t.Errorf("got %q; want a silent close", b)
		}
	})
	t.Run("trusted peer silent", func(t *testing.T) {
		cfg := proxyConfig("127.0.0.0/8")
		cfg.ProxyHeaderTimeout = 50 * time.Millisecond
		te := start(t, cfg)
		c := dialNoGreeting(t, te.addr())
		if b := closedSilently(t, c); len(b) != 0 {
			t.Errorf("got %q; want a close at the header timeout", b)
		}
	})
}

// closedSilently reads until the server closes (an RST, when it closed
// with our bytes unread, counts as a close) and returns what came.
func closedSilently(t *testing.T, c *client) []byte {
	t.Helper()
	b, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("waiting for the close: %v", err)
	}
	return b
}

func TestConnectionCaps(t *testing.T) {
	t.Run("per IP", func(t *testing.T) {
		cfg := baseConfig()
		cfg.Listeners[0].MaxConnectionsPerIP = 1
		te := start(t, cfg)
		first := dialFrom(t, "127.0.0.11", te.addr())
		second := dialWith(t, dialerFrom("127.0.0.11"), te.addr())
		second.expect("421 4.7.0 relay.test too many connections")
		if !second.closed() {
			t.Errorf("refused connection left open")
		}
		dialFrom(t, "127.0.0.12", te.addr()) // another address is fine
		first.cmd("QUIT", "221")
		if !first.closed() {
			t.Fatal("QUIT did not close")
		}
		dialFrom(t, "127.0.0.11", te.addr()) // the slot is free again
	})
	t.Run("per listener", func(t *testing.T) {
		cfg := baseConfig()
		cfg.Listeners[0].MaxConnections = 2
		te := start(t, cfg)
		dialFrom(t, "127.0.0.11", te.addr())
		dialFrom(t, "127.0.0.12", te.addr())
		third := dialWith(t, dialerFrom("127.0.0.13"), te.addr())
		third.expect("421 4.7.0 relay.test too many connections")
		if got := te.counter(t, "postern_relay_sessions", map[string]string{"listener": "mta"}); got != 2 {
			t.Errorf("postern_relay_sessions = %v, want 2", got)
		}
	})
	// Behind PROXY the client is the address the header names; an IPv6
	// client is its /84 block. Three connections in turn, one allowed
	// per client.
	for _, c := range []struct {
		name    string
		headers [3]string
		want    [3]string
	}{
		{"per IP behind PROXY", [3]string{"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25", "PROXY TCP4 192.0.2.8 127.0.0.1 40000 25",
			"PROXY TCP4 192.0.2.7 127.0.0.1 40001 25"}, [3]string{"220 ", "220 ", "421 4.7.0"}},
		// The second is another address of the same /84: the same
		// client; the third is in the next /84, another client.
		{"per IPv6 block behind PROXY", [3]string{"PROXY TCP6 2001:db8:1:2:3:4000::7 2001:db8::1 40000 25",
			"PROXY TCP6 2001:db8:1:2:3:4fff:1:9 2001:db8::1 40001 25", "PROXY TCP6 2001:db8:1:2:3:5000::7 2001:db8::1 40002 25"},
			[3]string{"220 ", "421 4.7.0", "220 "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := proxyConfig("127.0.0.1/32")
			cfg.Listeners[0].MaxConnectionsPerIP = 1
			te := start(t, cfg)
			for i, h := range c.headers {
				conn := dialNoGreeting(t, te.addr())
				conn.send(h + "\r\n")
				conn.expect(c.want[i])
			}
		})
	}
}

func TestClientBlock(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4abc:5:6", "2001:db8:1:2:3:4000::"},
		{"2001:db8:1:2:3:4fff:ffff:ffff", "2001:db8:1:2:3:4000::"},
		{"fe80::1%eth0", "fe80::"},
		{"::1", "::"},
	} {
		if got := clientBlock(netip.MustParseAddr(c.in)); got != netip.MustParseAddr(c.want) {
			t.Errorf("clientBlock(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
