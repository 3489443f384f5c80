package dns

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/dnsbed"
)

// TestRealServers runs against Knot and a validating Unbound, started
// once for all the subtests.
func TestRealServers(t *testing.T) {
	// A TXT record too big for a 1232-byte UDP answer.
	big := strings.Repeat(`"`+strings.Repeat("x", 200)+`" `, 10)
	bed := dnsbed.Start(t, dnsbed.Options{Records: map[string][]string{dnsbed.Signed: {"big IN TXT " + big}}})
	ctx := context.Background()
	unbound := customClient(t, Config{EDNS: true, DNSSEC: true, TCPOnError: true}, "udp://"+bed.Unbound)
	hash, _ := hex.DecodeString(dnsbed.TLSAHash)

	t.Run("signed zone is secure", func(t *testing.T) {
		mx, err := unbound.LookupMX(ctx, "example.test")
		if err != nil {
			t.Fatal(err)
		}
		if want := []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}}; !sameMX(mx.Records, want) || !mx.Secure {
			t.Errorf("MX = %+v", mx)
		}
		if mx.Info.TTL <= 0 || mx.Info.TTL > 5*time.Second || mx.Info.Server != "udp://"+bed.Unbound {
			t.Errorf("MX info = %+v (unbound caps TTLs at 5s)", mx.Info)
		}
		a, err := unbound.LookupA(ctx, "mx1.example.test")
		if err != nil || !reflect.DeepEqual(a.Addrs, addrs("127.0.0.2")) || !a.Secure {
			t.Errorf("A = %+v, %v", a, err)
		}
		aaaa, err := unbound.LookupAAAA(ctx, "mx6.example.test")
		if err != nil || !reflect.DeepEqual(aaaa.Addrs, addrs("2001:db8:1::25")) || !aaaa.Secure {
			t.Errorf("AAAA = %+v, %v", aaaa, err)
		}
		tlsa, err := unbound.LookupTLSA(ctx, "_25._tcp.mx1.example.test")
		if err != nil || !reflect.DeepEqual(tlsa.Records, []TLSA{{3, 1, 1, hash}}) || !tlsa.Secure {
			t.Errorf("TLSA = %+v, %v", tlsa, err)
		}
		txt, err := unbound.LookupTXT(ctx, "_smtp._tls.example.test")
		if err != nil || !reflect.DeepEqual(txt.Records, []string{"v=TLSRPTv1; rua=mailto:tlsrpt@example.test"}) || !txt.Secure {
			t.Errorf("TXT = %+v, %v", txt, err)
		}
		null, err := unbound.LookupMX(ctx, "nullmx.example.test")
		if err != nil || !null.NullMX || len(null.Records) != 0 || !null.Secure {
			t.Errorf("null MX = %+v, %v", null, err)
		}
	})

	t.Run("NXDOMAIN and NODATA", func(t *testing.T) {
		if _, err := unbound.LookupA(ctx, "nosuch.example.test"); !errors.Is(err, ErrNotFound) {
			t.Errorf("nosuch: err = %v, want NXDOMAIN", err)
		}
		if _, err := unbound.LookupAAAA(ctx, "mx2.example.test"); !errors.Is(err, ErrNoData) {
			t.Errorf("mx2 AAAA: err = %v, want NODATA", err)
		}
		if _, err := unbound.LookupTLSA(ctx, "_25._tcp.mx2.insecure.test"); !errors.Is(err, ErrNotFound) {
			t.Errorf("TLSA in unsigned zone: err = %v, want NXDOMAIN", err)
		}
		if _, err := unbound.LookupMX(ctx, "mx1.insecure.test"); !errors.Is(err, ErrNoData) {
			t.Errorf("MX at a host: err = %v, want NODATA", err)
		}
	})

	t.Run("unsigned zone is not secure", func(t *testing.T) {
		mx, err := unbound.LookupMX(ctx, "insecure.test")
		if err != nil || len(mx.Records) != 2 || mx.Secure {
			t.Errorf("MX = %+v, %v", mx, err)
		}
		tlsa, err := unbound.LookupTLSA(ctx, "_25._tcp.mx1.insecure.test")
		if err != nil || len(tlsa.Records) != 1 || tlsa.Secure {
			t.Errorf("TLSA = %+v, %v", tlsa, err)
		}
	})

	t.Run("wrong trust anchor is bogus", func(t *testing.T) {
		_, err := unbound.LookupTLSA(ctx, "_25._tcp.mx1.bogus.test")
		var de *Error
		if !errors.Is(err, ErrBogus) || !errors.As(err, &de) || de.Server != "udp://"+bed.Unbound {
			t.Fatalf("err = %v, want Bogus from unbound", err)
		}
		t.Logf("bogus: %v", err)
	})

	t.Run("DNSSEC off means never secure", func(t *testing.T) {
		c := customClient(t, Config{EDNS: true}, "udp://"+bed.Unbound)
		mx, err := c.LookupMX(ctx, "example.test")
		if err != nil || mx.Secure {
			t.Errorf("MX = %+v, %v", mx, err)
		}
	})

	t.Run("authoritative server sets no AD", func(t *testing.T) {
		c := customClient(t, Config{EDNS: true, DNSSEC: true}, "udp://"+bed.Knot)
		mx, err := c.LookupMX(ctx, "example.test")
		if err != nil || len(mx.Records) != 2 || mx.Secure {
			t.Errorf("MX from knot = %+v, %v", mx, err)
		}
	})

	t.Run("TCP", func(t *testing.T) {
		c := customClient(t, Config{EDNS: true, DNSSEC: true}, "tcp://"+bed.Unbound)
		tlsa, err := c.LookupTLSA(ctx, "_25._tcp.mx1.example.test")
		if err != nil || !tlsa.Secure || len(tlsa.Records) != 1 {
			t.Errorf("TLSA over TCP = %+v, %v", tlsa, err)
		}
	})

	t.Run("truncated UDP answer repeated over TCP", func(t *testing.T) {
		txt, err := unbound.LookupTXT(ctx, "big.example.test")
		if err != nil || len(txt.Records) != 1 || len(txt.Records[0]) != 2000 || !txt.Secure {
			t.Fatalf("big TXT = %d records, %v", len(txt.Records), err)
		}
		c := customClient(t, Config{EDNS: true, DNSSEC: true, TCPOnError: false}, "udp://"+bed.Unbound)
		if _, err := c.LookupTXT(ctx, "big.example.test"); !errors.Is(err, ErrTemporary) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("without TCP fallback: err = %v", err)
		}
	})

	t.Run("system resolver from resolv.conf", func(t *testing.T) {
		conf := filepath.Join(t.TempDir(), "resolv.conf")
		ns := "nameserver [" + strings.Replace(bed.Unbound, ":", "]:", 1) + "\noptions timeout:2 attempts:1\n"
		if err := os.WriteFile(conf, []byte(ns), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.ResolvConf = conf
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.(*Cache).Close()
		mx, err := r.LookupMX(ctx, "example.test")
		if err != nil || !mx.Secure || len(mx.Records) != 2 || mx.Info.Cached {
			t.Fatalf("MX = %+v, %v", mx, err)
		}
		mx, err = r.LookupMX(ctx, "example.test")
		if err != nil || !mx.Secure || !mx.Info.Cached {
			t.Errorf("second MX = %+v, %v (want cached)", mx, err)
		}
	})

	// The cache keeps the old answer until its TTL runs out, then asks
	// again and gets the new one. Knot is asked directly (it has no cache
	// of its own) and the cache runs on a fake clock, so no sleeping.
	t.Run("TTL respected across a zone change", func(t *testing.T) {
		bed.SetRecord(t, dnsbed.Signed, "ttl", 2, "A", "127.0.0.10")
		clock := newFakeClock()
		knot := customClient(t, Config{EDNS: true, DNSSEC: true}, "udp://"+bed.Knot)
		c := NewCache(knot, CacheConfig{Now: clock.Now, NoPrefetch: true})
		defer c.Close()
		get := func() AddrResult {
			t.Helper()
			r, err := c.LookupA(ctx, "ttl.example.test")
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := get(); !reflect.DeepEqual(r.Addrs, addrs("127.0.0.10")) || r.Info.TTL != 2*time.Second || r.Info.Cached {
			t.Fatalf("first: %+v", r)
		}
		bed.SetRecord(t, dnsbed.Signed, "ttl", 2, "A", "127.0.0.11")
		clock.Advance(1900 * time.Millisecond)
		if r := get(); !reflect.DeepEqual(r.Addrs, addrs("127.0.0.10")) || !r.Info.Cached {
			t.Fatalf("before expiry: %+v, want the old, cached answer", r)
		}
		clock.Advance(100 * time.Millisecond)
		if r := get(); !reflect.DeepEqual(r.Addrs, addrs("127.0.0.11")) || r.Info.Cached {
			t.Fatalf("at expiry: %+v, want the new answer", r)
		}
		// A negative answer is kept for its SOA-derived TTL (300s here,
		// capped by NegativeTTL): a record added meanwhile stays hidden.
		if _, err := c.LookupA(ctx, "later.example.test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("later: err = %v", err)
		}
		bed.SetRecord(t, dnsbed.Signed, "later", 60, "A", "127.0.0.12")
		clock.Advance(299 * time.Second)
		if _, err := c.LookupA(ctx, "later.example.test"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("negative entry expired early: err = %v", err)
		}
		clock.Advance(time.Second)
		if r, err := c.LookupA(ctx, "later.example.test"); err != nil || !reflect.DeepEqual(r.Addrs, addrs("127.0.0.12")) {
			t.Fatalf("after the negative TTL: %+v, %v", r, err)
		}
	})
}

// sameMX compares MX lists ignoring order (a resolver may rotate them).
func sameMX(a, b []MX) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[MX]int{}
	for _, m := range a {
		seen[m]++
	}
	for _, m := range b {
		seen[m]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}
