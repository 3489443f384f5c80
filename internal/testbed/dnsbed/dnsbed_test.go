package dnsbed

import (
	"context"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// The bed serves what its documentation promises: AD for the signed
// zone, none for the unsigned one, SERVFAIL for the wrong anchor, extra
// zones (reverse ones included, in place of Unbound's built-in answers for
// loopback), and SetRecord changes show at Knot at once.
func TestBed(t *testing.T) {
	start := time.Now()
	v6, err := mdns.ReverseAddr("::1")
	if err != nil {
		t.Fatal(err)
	}
	v6 = strings.TrimSuffix(v6, ".")
	b := Start(t, Options{Records: map[string][]string{Insecure: {"extra IN A 127.0.0.99"}},
		Zones: map[string][]string{"0.0.127.in-addr.arpa": {"2 IN PTR mx1.example.test."}, v6: {"@ IN PTR mx1.example.test."}}})
	t.Logf("bed ready in %v", time.Since(start))
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		ad     bool
		answer int
	}{
		{"_25._tcp.mx1." + Signed, mdns.TypeTLSA, mdns.RcodeSuccess, true, 1},
		{"_25._tcp.mx1." + Insecure, mdns.TypeTLSA, mdns.RcodeSuccess, false, 1},
		{"extra." + Insecure, mdns.TypeA, mdns.RcodeSuccess, false, 1},
		{"_25._tcp.mx1." + Bogus, mdns.TypeTLSA, mdns.RcodeServerFailure, false, 0},
		{"nosuch." + Signed, mdns.TypeA, mdns.RcodeNameError, true, 0},
		{"2.0.0.127.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, false, 1},
		{"1.0.0.127.in-addr.arpa", mdns.TypePTR, mdns.RcodeNameError, false, 0}, // not Unbound's "localhost"
		{v6, mdns.TypePTR, mdns.RcodeSuccess, false, 1},
	} {
		m, err := ask(ctx, b.Unbound, tc.name, tc.qtype, true)
		if err != nil {
			t.Fatal(err)
		}
		answers := 0
		for _, rr := range m.Answer {
			if rr.Header().Rrtype == tc.qtype {
				answers++
			}
			if ptr, ok := rr.(*mdns.PTR); ok && ptr.Ptr != "mx1.example.test." {
				t.Errorf("%s: PTR %s, want the extra zone's mx1.example.test.", tc.name, ptr.Ptr)
			}
		}
		if m.Rcode != tc.rcode || m.AuthenticatedData != tc.ad || answers != tc.answer {
			t.Errorf("%s: rcode %s AD %v answers %d; want %s %v %d", tc.name, mdns.RcodeToString[m.Rcode],
				m.AuthenticatedData, answers, mdns.RcodeToString[tc.rcode], tc.ad, tc.answer)
		}
	}
	b.SetRecord(t, Signed, "changed", 2, "A", "127.0.0.42")
	m, err := ask(ctx, b.Knot, "changed."+Signed, mdns.TypeA, false)
	if err != nil || len(m.Answer) == 0 {
		t.Fatalf("after SetRecord: %v %v", m, err)
	}
	a, ok := m.Answer[0].(*mdns.A)
	if !ok || a.A.String() != "127.0.0.42" || a.Hdr.Ttl != 2 {
		t.Errorf("after SetRecord: %v", m.Answer)
	}
}
