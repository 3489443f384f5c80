package transport

import (
	"context"
	"net"
	"net/netip"
)

// Dialer opens the TCP connections of a [Client]. Tests and embedders
// replace it (a SOCKS proxy, a network namespace, a fault injector).
type Dialer interface {
	// DialContext connects to remote over network ("tcp4" or "tcp6"),
	// binding local first when it is valid (else the kernel chooses). The
	// connect timeout is in ctx.
	DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error)
}

// NetDialer is the default [Dialer], a net.Dialer that binds the source
// address before connecting.
type NetDialer struct{}

// DialContext implements [Dialer].
func (NetDialer) DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	var d net.Dialer
	if local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	return d.DialContext(ctx, network, remote.String())
}
