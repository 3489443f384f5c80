package dns

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// testServer is an in-process DNS server on 127.0.0.1, UDP and TCP on the
// same port (TLS instead when started with startTLSServer).
type testServer struct {
	addr    string
	udpQ    atomic.Int64 // questions received over UDP
	streamQ atomic.Int64 // questions received over TCP or TLS
	mu      sync.Mutex
	seen    []*mdns.Msg // every question received
}

func (s *testServer) queries() int64 { return s.udpQ.Load() + s.streamQ.Load() }

func (s *testServer) last() *mdns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		return nil
	}
	return s.seen[len(s.seen)-1]
}

type handlerFunc func(w mdns.ResponseWriter, q *mdns.Msg, overUDP bool)

func (s *testServer) wrap(h handlerFunc) mdns.HandlerFunc {
	return func(w mdns.ResponseWriter, q *mdns.Msg) {
		udp := w.LocalAddr().Network() == "udp"
		if udp {
			s.udpQ.Add(1)
		} else {
			s.streamQ.Add(1)
		}
		s.mu.Lock()
		s.seen = append(s.seen, q.Copy())
		s.mu.Unlock()
		h(w, q, udp)
	}
}

func serve(t testing.TB, srv *mdns.Server) {
	t.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("test server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
}

// startServer starts a UDP+TCP server on 127.0.0.1 answering with h.
func startServer(t testing.TB, h handlerFunc) *testServer {
	t.Helper()
	s := &testServer{}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	s.addr = pc.LocalAddr().String()
	serve(t, &mdns.Server{PacketConn: pc, Handler: s.wrap(h)})
	serve(t, &mdns.Server{Listener: l, Handler: s.wrap(h)})
	return s
}

// startTLSServer starts a DNS-over-TLS server on 127.0.0.1 with cert.
func startTLSServer(t testing.TB, cert tls.Certificate, h handlerFunc) *testServer {
	t.Helper()
	s := &testServer{}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	serve(t, &mdns.Server{Listener: l, Net: "tcp-tls", Handler: s.wrap(h)})
	return s
}

// zoneHandler answers from records in zone-file syntax (absolute names);
// names without records get NXDOMAIN, names with other types NODATA, both
// with an SOA (negative TTL 60) in the authority section. It sets AD when
// ad is true.
func zoneHandler(t testing.TB, ad bool, records ...string) handlerFunc {
	t.Helper()
	byName := map[string][]mdns.RR{}
	for _, s := range records {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test record %q: %v", s, err)
		}
		n := strings.ToLower(rr.Header().Name)
		byName[n] = append(byName[n], rr)
	}
	soa, _ := mdns.NewRR("test. 300 IN SOA ns.test. host.test. 1 3600 600 86400 60")
	return func(w mdns.ResponseWriter, q *mdns.Msg, _ bool) {
		m := new(mdns.Msg)
		m.SetReply(q)
		m.RecursionAvailable = true
		m.AuthenticatedData = ad
		name := strings.ToLower(q.Question[0].Name)
		rrs, ok := byName[name]
		if !ok {
			m.Rcode = mdns.RcodeNameError
			m.Ns = []mdns.RR{soa}
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Question[0].Qtype || rr.Header().Rrtype == mdns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		if ok && len(m.Answer) == 0 {
			m.Ns = []mdns.RR{soa}
		}
		if o := q.IsEdns0(); o != nil {
			m.SetEdns0(o.UDPSize(), o.Do())
		}
		_ = w.WriteMsg(m)
	}
}

// rcodeHandler answers every question with rcode.
func rcodeHandler(rcode int) handlerFunc {
	return func(w mdns.ResponseWriter, q *mdns.Msg, _ bool) {
		m := new(mdns.Msg)
		m.SetRcode(q, rcode)
		_ = w.WriteMsg(m)
	}
}

// silentHandler never answers.
func silentHandler(mdns.ResponseWriter, *mdns.Msg, bool) {}

// customClient builds a Client for servers with short timeouts.
func customClient(t testing.TB, cfg Config, servers ...string) *Client {
	t.Helper()
	cfg.Kind = KindCustom
	cfg.Servers = servers
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 1
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
