package engine

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport/dns"
)

// The MTA-STS policy host is resolved with the policy's resolver, and,
// as for MX hosts, never at this machine or its link.
func TestMTASTSLookupHostDropsLocalAddresses(t *testing.T) {
	zone := `$TTL 300
$ORIGIN example.com.
@           IN SOA ns1 hostmaster 1 3600 600 604800 300
@           IN NS  ns1
ns1         IN A   192.0.2.53
mta-sts     IN A   192.0.2.33
mta-sts     IN A   127.0.0.1
mta-sts     IN AAAA 2001:db8::33
local       IN A   127.0.0.1
local       IN AAAA fe80::1
`
	res, err := dns.NewStaticFromReader(strings.NewReader(zone), "zone.txt", false)
	if err != nil {
		t.Fatal(err)
	}
	lookup := resolverLookupHost(res)
	got, err := lookup(context.Background(), "mta-sts.example.com")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.33"), netip.MustParseAddr("2001:db8::33")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("lookup = %v, %v; want %v (loopback dropped)", got, err, want)
	}
	if got, err := lookup(context.Background(), "local.example.com"); err == nil || !strings.Contains(err.Error(), "never connected to") {
		t.Errorf("only local addresses: %v, %v; want an error", got, err)
	}
	if _, err := lookup(context.Background(), "nosuch.example.com"); err == nil {
		t.Error("no such name: no error")
	}
}
