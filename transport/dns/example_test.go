package dns_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/postern-mta/postern/transport/dns"
)

// A Static resolver answers from a zone file, for offline dry-runs.
func ExampleNewStaticFromReader() {
	zone := `
$ORIGIN example.test.
$TTL 300
@      IN SOA ns1 hostmaster 1 3600 600 86400 300
@      IN MX  10 mx1
mx1    IN A   192.0.2.25
nomail IN MX  0 .
`
	r, err := dns.NewStaticFromReader(strings.NewReader(zone), "example.zone", true)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	mx, _ := r.LookupMX(ctx, "example.test")
	fmt.Println(mx.Records, mx.Secure, mx.Info.TTL)
	null, _ := r.LookupMX(ctx, "nomail.example.test")
	fmt.Println("null MX:", null.NullMX)
	_, err = r.LookupMX(ctx, "nosuch.example.test")
	fmt.Println(errors.Is(err, dns.ErrNotFound), err)
	_, err = r.LookupAAAA(ctx, "mx1.example.test")
	fmt.Println(errors.Is(err, dns.ErrNoData), err)
	// Output:
	// [{mx1.example.test 10}] true 5m0s
	// null MX: true
	// true dns: MX nosuch.example.test: not found (NXDOMAIN)
	// true dns: AAAA mx1.example.test: no data (NODATA)
}

// New builds a cached network resolver from a policy's dns block; it
// contacts nothing until asked.
func ExampleNew() {
	cfg := dns.DefaultConfig()
	cfg.Kind = dns.KindCustom
	cfg.Servers = []string{"udp://127.0.0.1:5300", "tls://127.0.0.1:853#resolver.example"}
	cfg.Cache.Size = 10000
	r, err := dns.New(cfg)
	if err != nil {
		panic(err)
	}
	c := r.(*dns.Cache)
	defer c.Close()
	fmt.Printf("%T %+v\n", r, c.Stats())
	// Output:
	// *dns.Cache {Hits:0 Misses:0 Upstream:0 Collapsed:0 Errors:0 Stale:0 Prefetches:0 Entries:0}
}

func ExampleParseServer() {
	for _, s := range []string{"192.0.2.53", "tcp://[2001:db8::53]:5353", "tls://9.9.9.9#dns.quad9.net", "udp://dns.example"} {
		srv, err := dns.ParseServer(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(srv)
	}
	// Output:
	// udp://192.0.2.53:53
	// tcp://[2001:db8::53]:5353
	// tls://9.9.9.9:853#dns.quad9.net
	// dns: server "udp://dns.example": "dns.example" is not an IP address (host names are not allowed here)
}
