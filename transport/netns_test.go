//go:build linux

package transport_test

// Address-family order and fallback, inside network namespaces the test
// creates (testbed.md section 3). All addresses live only in those
// namespaces; the client dials from inside one of them.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

var (
	mx4a    = netip.MustParseAddr("192.0.2.25")
	mx4b    = netip.MustParseAddr("192.0.2.26")
	mx6a    = netip.MustParseAddr("2001:db8:1::25")
	mx6b    = netip.MustParseAddr("2001:db8:1::26")
	cli4    = netip.MustParseAddr("192.0.2.11")
	cli6    = netip.MustParseAddr("2001:db8:1::11")
	black4  = netip.MustParseAddr("198.51.100.25")
	black6  = netip.MustParseAddr("2001:db8:dead::25")
	sources = []netip.Addr{cli4, cli6}
)

func TestNetnsAddressOrder(t *testing.T) {
	np := smtpbed.NewNetPair(t)
	v4 := smtpbed.StartSink(t, smtpbed.SinkOptions{Host: mx4a.String(), Netns: np.Server}) // IPv4 only
	v6 := smtpbed.StartSink(t, smtpbed.SinkOptions{Host: mx6b.String(), Netns: np.Server}) // IPv6 only
	c := &transport.Client{Dialer: np.Client}
	defer c.Close()
	plan := func(timeouts transport.Timeouts, addrs ...netip.Addr) *transport.Plan {
		h := transport.Host{Name: "mx.example.test"}
		for _, a := range addrs {
			t := transport.Target{Addr: a, EHLOName: "client.example.org", Timeouts: timeouts}
			for _, s := range sources { // a source of the remote address's family
				if s.Is4() == a.Is4() {
					t.Source = s
				}
			}
			h.Targets = append(h.Targets, t)
		}
		return &transport.Plan{Hosts: []transport.Host{h}}
	}
	short := testTimeouts
	short.Connect = 300 * time.Millisecond

	tests := []struct {
		name     string
		addrs    []netip.Addr
		want     netip.Addr // the address that took the message
		client   string     // X-Client-Addr the sink saw
		sink     *smtpbed.Sink
		minDelay time.Duration
	}{
		{"IPv6 first, refused: fast fallback to IPv4", []netip.Addr{mx6a, mx4a}, mx4a, "192.0.2.11", v4, 0},
		{"IPv4 first", []netip.Addr{mx4a, mx6b}, mx4a, "192.0.2.11", v4, 0},
		{"IPv6 first, with IPv6 source", []netip.Addr{mx6b, mx4a}, mx6b, "ipv6:2001:db8:1::11", v6, 0},
		{"IPv4 refused: fallback to IPv6", []netip.Addr{mx4b, mx6b}, mx6b, "ipv6:2001:db8:1::11", v6, 0},
		{"IPv6 black hole: connect timeout, then IPv4", []netip.Addr{black6, mx4a}, mx4a, "192.0.2.11", v4, short.Connect},
		{"IPv4 black hole: connect timeout, then IPv6", []netip.Addr{black4, mx6b}, mx6b, "ipv6:2001:db8:1::11", v6, short.Connect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.sink.Messages(t))
			start := time.Now()
			// Refused addresses must fail at once: with a 2s connect
			// timeout, anything near it means a timeout was waited for.
			to := testTimeouts
			if tt.minDelay > 0 {
				to = short
			}
			res := deliver(t, c, plan(to, tt.addrs...), newMsg(body, "b@example.test"))
			el := time.Since(start)
			wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
			if res[0].Address != netip.AddrPortFrom(tt.want, 25) {
				t.Errorf("delivered via %v, want %v", res[0].Address, tt.want)
			}
			if el < tt.minDelay || tt.minDelay == 0 && el > time.Second {
				t.Errorf("took %v (connect timeout %v)", el, to.Connect)
			}
			msgs := tt.sink.WaitMessages(t, before+1)
			if len(msgs) != before+1 {
				t.Fatalf("%d messages", len(msgs))
			}
			if got := msgs[before].ClientAddr; got != tt.client {
				t.Errorf("sink saw client %s, want %s", got, tt.client)
			}
		})
	}
	t.Run("everything unreachable", func(t *testing.T) {
		p := plan(short, black6, mx6a)
		p2 := plan(short, black4, mx4b)
		p2.Hosts[0].Name = "mx2.example.test"
		p.Hosts = append(p.Hosts, p2.Hosts[0])
		start := time.Now()
		res := deliver(t, c, p, newMsg(body, "a@example.test", "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassConnection)
		if res[0].Host != "mx2.example.test" || res[0].Address.Addr() != mx4b {
			t.Errorf("last failure from %s %v", res[0].Host, res[0].Address)
		}
		if el := time.Since(start); el < 2*short.Connect || el > 10*short.Connect {
			t.Errorf("took %v", el)
		}
	})
}
