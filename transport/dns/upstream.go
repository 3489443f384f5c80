package dns

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Server is one upstream resolver.
type Server struct {
	// Proto is "udp", "tcp" or "tls" (DNS over TLS, RFC 7858). With "udp"
	// and Config.TCPOnError, a question whose answer is truncated, or whose
	// UDP exchange fails other than by timing out, is asked again over TCP.
	Proto string
	// Addr is the server's IP address and port.
	Addr netip.AddrPort
	// ServerName is the name the TLS certificate is checked against
	// ("tls" only); empty means the certificate must name the IP address.
	ServerName string
}

// String returns the server in the form [ParseServer] reads, such as
// "udp://127.0.0.1:53" or "tls://1.1.1.1:853#cloudflare-dns.com".
func (s Server) String() string {
	out := s.Proto + "://" + s.Addr.String()
	if s.ServerName != "" {
		out += "#" + s.ServerName
	}
	return out
}

// trustAD reports whether the AD bit in answers from s can be believed.
// A validating resolver's AD bit is only as good as the path from it: an
// attacker on the path can set it on a plain UDP or TCP answer. We accept
// it only from loopback (the resolver runs on this machine) or over DNS
// over TLS (the path is authenticated), as RFC 6698 section 4.1 and
// RFC 7672 section 2.1.1 require of a DANE client's resolver.
func trustAD(s Server) bool {
	return s.Proto == "tls" || s.Addr.Addr().Unmap().IsLoopback()
}

// ParseServer reads an upstream address: "udp://IP:PORT", "tcp://IP:PORT",
// "tls://IP:PORT#server-name", or a bare "IP" or "IP:PORT" (UDP). The port
// defaults to 53 (853 for tls); IPv6 addresses with a port are bracketed,
// "udp://[::1]:53". Host names are not accepted: resolving the resolver
// would need a resolver.
func ParseServer(s string) (Server, error) {
	in := s
	s = strings.TrimSpace(s)
	fail := func(format string, args ...any) (Server, error) {
		return Server{}, fmt.Errorf("dns: server %q: %s", in, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("empty")
	}
	srv := Server{Proto: "udp"}
	if i := strings.Index(s, "://"); i >= 0 {
		srv.Proto = strings.ToLower(s[:i])
		s = s[i+3:]
		switch srv.Proto {
		case "udp", "tcp", "tls":
		default:
			return fail("unknown scheme %q (want udp://, tcp:// or tls://)", srv.Proto)
		}
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		if srv.Proto != "tls" {
			return fail("a #server-name is only meaningful with tls://")
		}
		srv.ServerName = strings.TrimSuffix(strings.ToLower(s[i+1:]), ".")
		s = s[:i]
		if srv.ServerName == "" {
			return fail("empty server name after #")
		}
	}
	port := uint16(53)
	if srv.Proto == "tls" {
		port = 853
	}
	if strings.Count(s, "[") != strings.Count(s, "]") {
		return fail("unbalanced brackets")
	}
	bare := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		bare = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(bare); err == nil {
		srv.Addr = netip.AddrPortFrom(a.Unmap(), port)
		return srv, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return fail("IPv6 address with a port must be bracketed, like [::1]:53")
		}
		host := s
		if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
			host = s[:i]
			if _, perr := strconv.ParseUint(s[i+1:], 10, 16); perr != nil {
				return fail("bad port %q", s[i+1:])
			}
		}
		if _, aerr := netip.ParseAddr(strings.Trim(host, "[]")); aerr != nil {
			return fail("%q is not an IP address (host names are not allowed here)", host)
		}
		return fail("%v", err)
	}
	if ap.Port() == 0 {
		return fail("port 0")
	}
	srv.Addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return srv, nil
}

// resolvConf is what we use of resolv.conf(5).
type resolvConf struct {
	servers  []Server
	timeout  time.Duration // 0: not set
	attempts int           // 0: not set
	rotate   bool
}

// readResolvConf parses a resolv.conf file. See parseResolvConf.
func readResolvConf(path string) (resolvConf, error) {
	f, err := os.Open(path)
	if err != nil {
		return resolvConf{}, fmt.Errorf("dns: %w", err)
	}
	defer f.Close()
	return parseResolvConf(f, path)
}

// parseResolvConf reads "nameserver" lines and "options timeout:N
// attempts:N rotate" as glibc does (timeout capped at 30s, attempts at 5;
// at most 3 name servers are used, like glibc's MAXNS). As an extension
// taken from OpenBSD, a nameserver may carry a port: "nameserver
// [127.0.0.1]:5300". With no nameserver line, 127.0.0.1:53 is used, as
// glibc does. Other lines and options are ignored; "trust-ad" in
// particular does not widen which servers' AD bit is trusted.
func parseResolvConf(r io.Reader, name string) (resolvConf, error) {
	var rc resolvConf
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 || len(rc.servers) >= 3 {
				continue
			}
			addr := f[1]
			if i := strings.IndexByte(addr, '%'); i >= 0 && !strings.HasPrefix(addr, "[") {
				addr = addr[:i] // drop an IPv6 zone: we do not dial link-local with zones
			}
			// OpenBSD style "[IP]:PORT"; the brackets may hold an IPv4 address.
			if ip, port, ok := strings.Cut(strings.TrimPrefix(addr, "["), "]:"); ok && strings.HasPrefix(addr, "[") {
				if a, err := netip.ParseAddr(ip); err == nil {
					addr = netip.AddrPortFrom(a, 0).String()
					addr = addr[:len(addr)-1] + port
				}
			}
			srv, err := ParseServer("udp://" + addr)
			if err != nil {
				return rc, fmt.Errorf("%s:%d: %w", name, line, err)
			}
			rc.servers = append(rc.servers, srv)
		case "options":
			for _, o := range f[1:] {
				k, v, _ := strings.Cut(o, ":")
				switch k {
				case "timeout":
					if n, err := strconv.Atoi(v); err == nil && n >= 0 {
						rc.timeout = time.Duration(min(max(n, 1), 30)) * time.Second
					}
				case "attempts":
					if n, err := strconv.Atoi(v); err == nil && n >= 0 {
						rc.attempts = min(max(n, 1), 5)
					}
				case "rotate":
					rc.rotate = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return rc, fmt.Errorf("dns: %s: %w", name, err)
	}
	if len(rc.servers) == 0 {
		rc.servers = []Server{{Proto: "udp", Addr: netip.MustParseAddrPort("127.0.0.1:53")}}
	}
	return rc, nil
}
