package smtpd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// PROXY protocol (HAProxy's "The PROXY protocol", versions 1 and 2): a load
// balancer in front of the relay sends one header before the client's
// bytes, naming the client's address. Only the parts a TCP listener needs
// are read: v1 TCP4/TCP6/UNKNOWN, v2 PROXY/LOCAL over INET/INET6 stream
// (other v2 families count as LOCAL, as the protocol document allows); v2
// TLVs are skipped.

// proxyV2Sig starts every v2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	proxyV1Max = 107  // the longest v1 line, CRLF included
	proxyV2Max = 4096 // the most v2 address+TLV bytes read (TLVs are skipped)
)

// proxyHeader is a parsed PROXY header.
type proxyHeader struct {
	Version int
	// Local: the header names no client (v1 UNKNOWN, v2 LOCAL or an
	// unsupported family); the connection's own address stands.
	Local    bool
	Src, Dst netip.AddrPort
}

var errProxy = errors.New("bad PROXY protocol header")

// readProxyHeader reads one header from r and nothing after it.
func readProxyHeader(r *bufio.Reader) (proxyHeader, error) {
	b, err := r.Peek(len(proxyV2Sig))
	if err != nil && len(b) < 6 {
		return proxyHeader{}, fmt.Errorf("%w: %w", errProxy, err)
	}
	switch {
	case bytes.Equal(b, proxyV2Sig):
		return readProxyV2(r)
	case bytes.HasPrefix(b, []byte("PROXY ")):
		return readProxyV1(r)
	}
	return proxyHeader{}, fmt.Errorf("%w: neither v1 nor v2 signature", errProxy)
}

func readProxyV1(r *bufio.Reader) (proxyHeader, error) {
	line := make([]byte, 0, proxyV1Max)
	for {
		c, err := r.ReadByte()
		if err != nil {
			return proxyHeader{}, fmt.Errorf("%w: v1: %w", errProxy, err)
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
		if len(line) >= proxyV1Max {
			return proxyHeader{}, fmt.Errorf("%w: v1 line longer than %d bytes", errProxy, proxyV1Max)
		}
	}
	s, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return proxyHeader{}, fmt.Errorf("%w: v1 line does not end in CRLF", errProxy)
	}
	f := strings.Split(s, " ")
	if len(f) >= 2 && f[0] == "PROXY" && f[1] == "UNKNOWN" {
		return proxyHeader{Version: 1, Local: true}, nil
	}
	if len(f) != 6 || f[0] != "PROXY" || (f[1] != "TCP4" && f[1] != "TCP6") {
		return proxyHeader{}, fmt.Errorf("%w: v1: want PROXY TCP4|TCP6|UNKNOWN src dst sport dport", errProxy)
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sport, err3 := parseProxyPort(f[4])
	dport, err4 := parseProxyPort(f[5])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: v1: %w", errProxy, err)
	}
	v4 := f[1] == "TCP4"
	if src.Is4() != v4 || dst.Is4() != v4 || src.Zone() != "" || dst.Zone() != "" {
		return proxyHeader{}, fmt.Errorf("%w: v1: addresses do not match %s", errProxy, f[1])
	}
	return proxyHeader{Version: 1, Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)}, nil
}

// parseProxyPort reads a v1 port: decimal, 0-65535, no sign, no leading
// zero.
func parseProxyPort(s string) (uint16, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad port %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

func readProxyV2(r *bufio.Reader) (proxyHeader, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: v2: %w", errProxy, err)
	}
	verCmd, fam := hdr[12], hdr[13]
	n := int(binary.BigEndian.Uint16(hdr[14:16]))
	if verCmd>>4 != 2 {
		return proxyHeader{}, fmt.Errorf("%w: v2: version %d", errProxy, verCmd>>4)
	}
	cmd := verCmd & 0x0f
	if cmd > 1 {
		return proxyHeader{}, fmt.Errorf("%w: v2: unknown command %d", errProxy, cmd)
	}
	if n > proxyV2Max {
		return proxyHeader{}, fmt.Errorf("%w: v2: %d address bytes, more than %d", errProxy, n, proxyV2Max)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: v2: %w", errProxy, err)
	}
	h := proxyHeader{Version: 2}
	if cmd == 0 { // LOCAL: the balancer's own connection (health check)
		h.Local = true
		return h, nil
	}
	switch fam {
	case 0x11: // AF_INET, STREAM
		if n < 12 {
			return proxyHeader{}, fmt.Errorf("%w: v2: %d bytes for TCP over IPv4, want 12", errProxy, n)
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(payload[0:4])), binary.BigEndian.Uint16(payload[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(payload[4:8])), binary.BigEndian.Uint16(payload[10:12]))
	case 0x21: // AF_INET6, STREAM
		if n < 36 {
			return proxyHeader{}, fmt.Errorf("%w: v2: %d bytes for TCP over IPv6, want 36", errProxy, n)
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(payload[0:16])), binary.BigEndian.Uint16(payload[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(payload[16:32])), binary.BigEndian.Uint16(payload[34:36]))
	default: // UNSPEC, UNIX, datagram: keep the connection's address
		h.Local = true
	}
	return h, nil
}
