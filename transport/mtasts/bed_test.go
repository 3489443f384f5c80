//go:build linux

package mtasts

// The test bed of the fetch and Source tests: a real nginx serving policy
// hosts on 192.0.2.25:443 inside a pair of network namespaces the test
// creates (testbed.md sections 3 and 5), certificates from a throwaway CA,
// and a Fetcher that resolves through a fixed table and dials from the
// client namespace, recording every dial.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/httpbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// TestMain points the proxy variables at a port where nothing listens: a
// fetch that took its proxy from the environment would fail every fetch
// test. It must happen before the first request (net/http reads the
// environment once).
func TestMain(m *testing.M) {
	for _, v := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		os.Setenv(v, "http://127.0.0.1:9")
	}
	os.Unsetenv("NO_PROXY")
	os.Unsetenv("no_proxy")
	os.Exit(m.Run())
}

var (
	srv4    = netip.MustParseAddr("192.0.2.25")     // nginx
	srv6    = netip.MustParseAddr("2001:db8:1::25") // nothing listens: refused
	black4  = netip.MustParseAddr("198.51.100.25")  // SYNs vanish: connect times out
	policyP = "/.well-known/mta-sts.txt"
)

type bed struct {
	np  *smtpbed.NetPair
	ca  *smtpbed.CA
	srv *httpbed.Server

	mu     sync.Mutex
	dials  []netip.AddrPort
	onDial func() // called before each dial, when set
}

// hosts is the bed's DNS: names not listed resolve to the refused IPv6
// address first, then nginx.
var hosts = map[string][]netip.Addr{
	"mta-sts.nothing.test":   {srv6},
	"mta-sts.blackhole.test": {black4},
}

// newBed makes the namespaces and the CA; start starts nginx.
func newBed(t *testing.T) *bed {
	return &bed{np: smtpbed.NewNetPair(t), ca: smtpbed.NewCA(t)}
}

// start starts nginx with the default site (any name; a certificate for
// names) and the given sites.
func (b *bed) start(t *testing.T, names []string, defaultSite httpbed.Site, sites ...httpbed.Site) {
	t.Helper()
	leaf := b.ca.Issue(t, names...)
	defaultSite.CertFile, defaultSite.KeyFile = leaf.CertFile, leaf.KeyFile
	b.srv = httpbed.Start(t, httpbed.Options{Host: srv4.String(), Netns: b.np.Server, Site: defaultSite, Sites: sites})
}

func (b *bed) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == "mta-sts.nxdomain.test" {
		return nil, errors.New("NXDOMAIN")
	}
	if a, ok := hosts[host]; ok {
		return a, nil
	}
	return []netip.Addr{srv6, srv4}, nil
}

func (b *bed) dial(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	b.mu.Lock()
	b.dials = append(b.dials, remote)
	hook := b.onDial
	b.mu.Unlock()
	if hook != nil {
		hook()
	}
	return b.np.Client.DialContext(ctx, network, remote, local)
}

// fetcher returns a Fetcher into the bed.
func (b *bed) fetcher() *Fetcher {
	return &Fetcher{LookupHost: b.lookup, Dial: b.dial, RootCAs: b.ca.Pool, Timeout: 20 * time.Second}
}

// dialed returns the dials so far and forgets them.
func (b *bed) dialed() []netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dials
	b.dials = nil
	return d
}

// policyOfSize is a valid policy (mx mx.example.test, max_age 86400) of
// exactly n bytes, padded with an extension field.
func policyOfSize(n int) []byte {
	base := "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\nx: "
	return []byte(base + strings.Repeat("a", n-len(base)-1) + "\n")
}

func policyText(mode Mode, maxAge int, mx ...string) []byte {
	s := fmt.Sprintf("version: STSv1\r\nmode: %s\r\n", mode)
	for _, m := range mx {
		s += "mx: " + m + "\r\n"
	}
	return []byte(s + fmt.Sprintf("max_age: %d\r\n", maxAge))
}
