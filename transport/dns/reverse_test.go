package dns

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/dnsbed"
)

// v6Loopback is the reverse name of ::1.
const v6Loopback = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"

// ReverseName follows RFC 1035 section 3.5 and RFC 3596 section 2.5.
func TestReverseName(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"127.0.0.1", "1.0.0.127.in-addr.arpa"},
		{"192.0.2.10", "10.2.0.192.in-addr.arpa"},
		{"::ffff:192.0.2.10", "10.2.0.192.in-addr.arpa"}, // IPv4-mapped: the IPv4 name
		{"::1", v6Loopback},
		{"2001:db8::567:89ab", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
		{"fe80::1%eth0", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa"},
	} {
		got, err := ReverseName(netip.MustParseAddr(tc.ip))
		if err != nil || got != tc.want {
			t.Errorf("ReverseName(%s) = %q, %v; want %q", tc.ip, got, err, tc.want)
		}
	}
	if _, err := ReverseName(netip.Addr{}); err == nil {
		t.Error("ReverseName(zero Addr): no error")
	}
}

// reverseZone is a static zone with reverse records for 192.0.2.0/24 and
// 2001:db8::/32, in the shapes real reverse zones take.
const reverseZone = `$ORIGIN 2.0.192.in-addr.arpa.
$TTL 3600
@    IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 120
@    IN NS  ns1.example.test.
10   IN PTR Mail.Example.TEST.
11   IN PTR a.example.test.
11   IN PTR b.example.test.
12   IN TXT "a name with no PTR"
; RFC 2317 classless delegation: the PTR sits behind a CNAME.
13   IN CNAME 13.0-63
13.0-63 600 IN PTR classless.example.test.
$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa.
@    IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 120
b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR v6.example.test.
`

func reverseStatic(t *testing.T) *Static {
	t.Helper()
	s, err := NewStaticFromReader(strings.NewReader(reverseZone), "reverse.zone", false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A static zone answers PTR questions like the others: names normalised,
// CNAMEs followed, NXDOMAIN and NODATA with the SOA's negative TTL.
func TestStaticPTR(t *testing.T) {
	s := reverseStatic(t)
	ctx := context.Background()
	for _, tc := range []struct {
		ip    string
		names []string
		ttl   time.Duration
	}{
		{"192.0.2.10", []string{"mail.example.test"}, time.Hour},
		{"::ffff:192.0.2.10", []string{"mail.example.test"}, time.Hour},
		{"192.0.2.11", []string{"a.example.test", "b.example.test"}, time.Hour},
		{"192.0.2.13", []string{"classless.example.test"}, 600 * time.Second},
		{"2001:db8::567:89ab", []string{"v6.example.test"}, time.Hour},
	} {
		r, err := s.LookupPTR(ctx, netip.MustParseAddr(tc.ip))
		if err != nil {
			t.Errorf("%s: %v", tc.ip, err)
			continue
		}
		if got := slices.Sorted(slices.Values(r.Names)); !reflect.DeepEqual(got, tc.names) || r.Info.TTL != tc.ttl || r.Secure {
			t.Errorf("%s: %+v; want names %v, TTL %v", tc.ip, r, tc.names, tc.ttl)
		}
	}

	r, err := s.LookupPTR(ctx, netip.MustParseAddr("192.0.2.99"))
	var de *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &de) || de.Type != "PTR" || de.Name != "99.2.0.192.in-addr.arpa" {
		t.Errorf("no PTR: err = %v, want NotFound for PTR 99.2.0.192.in-addr.arpa", err)
	}
	if len(r.Names) != 0 || r.Info.TTL != 120*time.Second {
		t.Errorf("no PTR: result %+v, want no names and the SOA's negative TTL", r)
	}
	if _, err := s.LookupPTR(ctx, netip.MustParseAddr("192.0.2.12")); !errors.Is(err, ErrNoData) {
		t.Errorf("TXT only: err = %v, want NoData", err)
	}
	if _, err := s.LookupPTR(ctx, netip.Addr{}); !errors.Is(err, ErrNotFound) || !errors.Is(err, errNotIP) {
		t.Errorf("zero Addr: err = %v, want NotFound (not an IP address)", err)
	}
	if !s.Immediate("10.2.0.192.in-addr.arpa", "PTR") {
		t.Error("Static.Immediate(PTR) = false")
	}
}

// Reverse lookups against real servers: Knot serving reverse zones for
// loopback, asked directly and through a (non-validating for these zones)
// Unbound; the Cache counts them as it counts the other questions.
func TestRealPTR(t *testing.T) {
	bed := dnsbed.Start(t, dnsbed.Options{Zones: map[string][]string{
		"0.0.127.in-addr.arpa": {
			"2 IN PTR mx1.example.test.",
			"5 IN PTR a.example.test.",
			"5 IN PTR b.example.test.",
			"9 IN CNAME 9.sub",
			"9.sub 60 IN PTR Nine.Example.TEST.",
		},
		v6Loopback: {"@ IN PTR mx1.example.test."},
	}})
	ctx := context.Background()
	for _, server := range []string{"udp://" + bed.Unbound, "udp://" + bed.Knot, "tcp://" + bed.Knot} {
		c := customClient(t, Config{EDNS: true, DNSSEC: true, TCPOnError: true}, server)
		for _, tc := range []struct {
			ip    string
			names []string
		}{
			{"127.0.0.2", []string{"mx1.example.test"}},
			{"::ffff:127.0.0.2", []string{"mx1.example.test"}},
			{"::1", []string{"mx1.example.test"}},
			{"127.0.0.5", []string{"a.example.test", "b.example.test"}},
			{"127.0.0.9", []string{"nine.example.test"}},
		} {
			r, err := c.LookupPTR(ctx, netip.MustParseAddr(tc.ip))
			if err != nil {
				t.Errorf("%s: PTR %s: %v", server, tc.ip, err)
				continue
			}
			if got := slices.Sorted(slices.Values(r.Names)); !reflect.DeepEqual(got, tc.names) || r.Secure ||
				r.Info.Server != server || r.Info.TTL <= 0 || r.Info.Cached {
				t.Errorf("%s: PTR %s = %+v; want names %v, not secure, from the server", server, tc.ip, r, tc.names)
			}
		}
		_, err := c.LookupPTR(ctx, netip.MustParseAddr("127.0.0.3"))
		var de *Error
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &de) || de.Type != "PTR" || de.Name != "3.0.0.127.in-addr.arpa" || de.Server != server {
			t.Errorf("%s: PTR 127.0.0.3: err = %v, want NotFound", server, err)
		}
	}

	t.Run("cache", func(t *testing.T) {
		knot := customClient(t, Config{EDNS: true}, "udp://"+bed.Knot)
		clock := newFakeClock()
		c := NewCache(knot, CacheConfig{Now: clock.Now, NoPrefetch: true})
		defer c.Close()
		ip := netip.MustParseAddr("127.0.0.2")
		if c.Immediate("2.0.0.127.in-addr.arpa", "PTR") {
			t.Error("Immediate before the first question")
		}
		r, err := c.LookupPTR(ctx, ip)
		if err != nil || !reflect.DeepEqual(r.Names, []string{"mx1.example.test"}) || r.Info.Cached || r.Info.TTL != 300*time.Second {
			t.Fatalf("first: %+v, %v", r, err)
		}
		clock.Advance(100 * time.Second)
		r, err = c.LookupPTR(ctx, ip)
		if err != nil || !reflect.DeepEqual(r.Names, []string{"mx1.example.test"}) || !r.Info.Cached || r.Info.TTL != 200*time.Second {
			t.Fatalf("second: %+v, %v; want the cached answer, 200s left", r, err)
		}
		if !c.Immediate("2.0.0.127.in-addr.arpa", "PTR") {
			t.Error("Immediate after the answer was cached = false")
		}
		// An address without PTR: NXDOMAIN, cached for the SOA's 300s.
		none := netip.MustParseAddr("127.0.0.3")
		for i := range 2 {
			if _, err := c.LookupPTR(ctx, none); !errors.Is(err, ErrNotFound) {
				t.Fatalf("no PTR (%d): err = %v", i, err)
			}
		}
		if st := c.Stats(); st.Hits != 2 || st.Misses != 2 || st.Upstream != 2 || st.Entries != 2 {
			t.Errorf("stats = %+v; want 2 hits, 2 misses, 2 upstream questions, 2 entries", st)
		}
		// The PTR entry is its own: an A question for the same name is
		// another entry, asked upstream.
		if _, err := c.LookupA(ctx, "2.0.0.127.in-addr.arpa"); !errors.Is(err, ErrNoData) {
			t.Errorf("A at the reverse name: err = %v, want NoData", err)
		}
		if st := c.Stats(); st.Upstream != 3 {
			t.Errorf("upstream questions = %d, want 3", st.Upstream)
		}
	})
}
