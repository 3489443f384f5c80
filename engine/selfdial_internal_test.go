package engine

import (
	"net/netip"
	"testing"
)

func TestIsSelfAddress(t *testing.T) {
	machine := func() []netip.Addr {
		return []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}
	}
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		self   []string
		remote string
		want   bool
	}{
		{[]string{"127.0.0.1:10025"}, "127.0.0.1:10025", true},
		{[]string{"127.0.0.1:10025"}, "127.0.0.1:25", false},
		{[]string{"127.0.0.1:10025"}, "127.0.0.2:10025", false},
		{[]string{"0.0.0.0:25"}, "192.0.2.7:25", true},
		{[]string{"0.0.0.0:25"}, "127.0.0.9:25", true},
		{[]string{"0.0.0.0:25"}, "192.0.2.8:25", false},
		{[]string{"[::]:25"}, "[2001:db8::7]:25", true},
		{[]string{"[::]:25"}, "[::ffff:192.0.2.7]:25", true},
		{[]string{"192.0.2.7:25"}, "[::ffff:192.0.2.7]:25", true},
		{[]string{"[::]:25"}, "[2001:db8::8]:25", false},
		{nil, "127.0.0.1:25", false},
	} {
		var self []netip.AddrPort
		for _, s := range c.self {
			self = append(self, ap(s))
		}
		if got := isSelfAddress(self, ap(c.remote), machine); got != c.want {
			t.Errorf("isSelfAddress(%v, %s) = %v, want %v", c.self, c.remote, got, c.want)
		}
	}
}
