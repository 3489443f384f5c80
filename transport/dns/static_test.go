package dns

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func loadStatic(t testing.TB, secure bool) *Static {
	t.Helper()
	s, err := NewStatic("testdata/static.zone", secure)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestStaticMX(t *testing.T) {
	s := loadStatic(t, true)
	ctx := context.Background()
	r, err := s.LookupMX(ctx, "Example.TEST.")
	if err != nil {
		t.Fatal(err)
	}
	want := []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}}
	if !reflect.DeepEqual(r.Records, want) || r.NullMX || !r.Secure {
		t.Fatalf("MX = %+v", r)
	}
	if r.Info.TTL != 300*time.Second || r.Info.Cached || r.Info.Server != "" {
		t.Fatalf("Info = %+v", r.Info)
	}
	r, err = s.LookupMX(ctx, "nullmx.example.test")
	if err != nil || !r.NullMX || len(r.Records) != 0 {
		t.Fatalf("null MX = %+v, %v", r, err)
	}
}

func TestStaticTable(t *testing.T) {
	ctx := context.Background()
	s := loadStatic(t, false)
	type lookup func(name string) (any, error)
	a := func(n string) (any, error) { r, err := s.LookupA(ctx, n); return r.Addrs, err }
	aaaa := func(n string) (any, error) { r, err := s.LookupAAAA(ctx, n); return r.Addrs, err }
	txt := func(n string) (any, error) { r, err := s.LookupTXT(ctx, n); return r.Records, err }
	mx := func(n string) (any, error) { r, err := s.LookupMX(ctx, n); return r.Records, err }
	tlsa := func(n string) (any, error) { r, err := s.LookupTLSA(ctx, n); return r.Records, err }
	hash := []byte{0xb9, 0x84, 0x25, 0x15, 0xc5, 0xe3, 0x3e, 0xae, 0x9b, 0x0e, 0x79, 0x44, 0xc4, 0xec, 0x2d, 0x22,
		0x49, 0x19, 0x18, 0x9c, 0xa8, 0x2d, 0x8f, 0xd0, 0x56, 0x0e, 0x2b, 0x8b, 0xcf, 0x6e, 0xd1, 0x58}
	tests := []struct {
		name    string
		do      lookup
		q       string
		want    any
		wantErr error
	}{
		{"A", a, "mx1.example.test", addrs("127.0.0.2"), nil},
		{"A two records", a, "mx2.example.test", addrs("127.0.0.3", "127.0.0.4"), nil},
		{"AAAA", aaaa, "mx1.example.test", addrs("::1"), nil},
		{"NXDOMAIN", a, "nosuch.example.test", nil, ErrNotFound},
		{"NODATA", aaaa, "mx2.example.test", nil, ErrNoData},
		{"NODATA at apex", a, "example.test", nil, ErrNoData},
		{"empty non-terminal is NODATA", a, "b.deep.example.test", nil, ErrNoData},
		{"below a leaf is NXDOMAIN", a, "x.a.b.deep.example.test", nil, ErrNotFound},
		{"outside the zone", a, "example.org", nil, ErrNotFound},
		{"CNAME", a, "alias.example.test", addrs("127.0.0.2"), nil},
		{"CNAME chain", aaaa, "alias2.example.test", addrs("::1"), nil},
		{"CNAME to NODATA", txt, "alias.example.test", nil, ErrNoData},
		{"CNAME to NXDOMAIN", a, "dangling.example.test", nil, ErrNotFound},
		{"CNAME loop", a, "loop1.example.test", nil, ErrTemporary},
		{"wildcard", a, "anything.wild.example.test", addrs("127.0.0.9"), nil},
		{"wildcard deeper", a, "x.y.wild.example.test", addrs("127.0.0.9"), nil},
		{"existing name not covered", a, "exists.wild.example.test", nil, ErrNoData},
		{"TXT", txt, "_mta-sts.example.test", []string{"v=STSv1; id=20260101T000000;"}, nil},
		{"TXT joined", txt, "long.example.test", []string{"part one, part two", "second record"}, nil},
		{"TLSA", tlsa, "_25._tcp.mx1.example.test", []TLSA{{3, 1, 1, hash}}, nil},
		{"TLSA absent", tlsa, "_25._tcp.mx2.example.test", nil, ErrNotFound},
		{"MX relative, upper-case target", mx, "EXAMPLE.test", []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}}, nil},
		{"MX NODATA", mx, "mx1.example.test", nil, ErrNoData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.do(tc.q)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				var de *Error
				if !errors.As(err, &de) || de.Name != normalize(tc.q) {
					t.Fatalf("err = %#v, want *Error naming %s", err, tc.q)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStaticSecureFlagAndTTL(t *testing.T) {
	ctx := context.Background()
	for _, secure := range []bool{true, false} {
		s := loadStatic(t, secure)
		r, err := s.LookupA(ctx, "mx2.example.test")
		if err != nil {
			t.Fatal(err)
		}
		if r.Secure != secure {
			t.Errorf("secure=%v: Secure = %v", secure, r.Secure)
		}
		if r.Info.TTL != 60*time.Second { // smallest TTL of the RRset
			t.Errorf("TTL = %v, want 60s", r.Info.TTL)
		}
	}
	// Through a CNAME the TTL is the smallest along the chain.
	r, err := loadStatic(t, false).LookupA(ctx, "alias2.example.test")
	if err != nil || r.Info.TTL != 30*time.Second {
		t.Fatalf("alias2 TTL = %v, %v", r.Info.TTL, err)
	}
}

func TestStaticNegativeTTL(t *testing.T) {
	s := loadStatic(t, false)
	r, err := s.query(context.Background(), "nosuch.example.test", 1)
	if !errors.Is(err, ErrNotFound) || r == nil || !r.hasTTL || r.ttl != 120 {
		t.Fatalf("negative = %+v, %v; want TTL 120 (SOA minimum)", r, err)
	}
}

func TestStaticParseErrors(t *testing.T) {
	tests := []struct{ zone, want string }{
		{"$ORIGIN x.test.\n@ IN A 1.2.3\n", "policy-zone.txt:2:12: dns: static zone: bad A A: \"1.2.3\""},
		{"$ORIGIN x.test.\n\n@ IN MX ten mx\n", "policy-zone.txt:3:"},
		{"$ORIGIN x.test.\na IN CNAME b\na IN A 127.0.0.1\n", "a.x.test has a CNAME and other data"},
		{"$ORIGIN x.test.\na IN TLSA 3 1 1 zz\n", "TLSA"},
	}
	for _, tc := range tests {
		_, err := NewStaticFromReader(strings.NewReader(tc.zone), "policy-zone.txt", false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("zone %q: err = %v, want it to contain %q", tc.zone, err, tc.want)
		}
	}
	if _, err := NewStatic("testdata/does-not-exist.zone", false); err == nil {
		t.Error("missing file: no error")
	}
}
