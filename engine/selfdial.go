package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/postern-mta/postern/transport"
)

// selfDialer refuses to connect to this MTA's own listening addresses
// (Options.SelfAddresses): the transport turns the refusal into a
// permanent loop failure.
type selfDialer struct {
	transport.Dialer
	self []netip.AddrPort
}

// DialContext dials remote unless it is one of the MTA's own addresses.
func (d selfDialer) DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	if isSelfAddress(d.self, remote, localAddrs) {
		return nil, fmt.Errorf("refusing to connect to %s: %w", remote, transport.ErrLoop)
	}
	if d.Dialer == nil {
		return transport.NetDialer{}.DialContext(ctx, network, remote, local)
	}
	return d.Dialer.DialContext(ctx, network, remote, local)
}

// isSelfAddress reports whether remote is one of self. An unspecified
// address in self (a listener on 0.0.0.0 or ::) matches any address of
// this machine (as machine lists them) on its port.
func isSelfAddress(self []netip.AddrPort, remote netip.AddrPort, machine func() []netip.Addr) bool {
	ra := remote.Addr().Unmap()
	var mine []netip.Addr
	for _, s := range self {
		if s.Port() != remote.Port() {
			continue
		}
		sa := s.Addr().Unmap()
		if !sa.IsUnspecified() {
			if sa == ra {
				return true
			}
			continue
		}
		if ra.IsLoopback() {
			return true
		}
		if mine == nil {
			mine = machine()
		}
		for _, a := range mine {
			if a == ra {
				return true
			}
		}
	}
	return false
}

// localAddrs lists this machine's interface addresses.
func localAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}
