//go:build linux

package smtpbed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"golang.org/x/sys/unix"
)

// NetPair is two network namespaces, a client side and a server side,
// joined by a veth, with these addresses (all only inside the namespaces):
//
//	client: 192.0.2.10, 192.0.2.11, 2001:db8:1::10, 2001:db8:1::11
//	server: 192.0.2.25, 192.0.2.26, 2001:db8:1::25, 2001:db8:1::26
//
// and, on the client side, black holes (SYNs vanish, so connects time out)
// for 198.51.100.0/24 and 2001:db8:dead::/64 (a NOARP veth whose peer stays
// down: testbed.md section 3).
type NetPair struct {
	Client, Server *Netns
}

// Netns is one network namespace made by [NewNetPair].
type Netns struct {
	Name string
}

var nsSeq atomic.Int32

// NewNetPair creates the namespaces and removes them when the test ends.
// It needs root and iproute2: otherwise the test is skipped, or fails when
// POSTERN_REQUIRE_PEERS=1.
func NewNetPair(t testing.TB) *NetPair {
	t.Helper()
	ip := testbed.Require(t, "ip")
	if os.Geteuid() != 0 {
		msg := "network namespace tests need root (ip netns add); run the tests as root"
		if os.Getenv("POSTERN_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Short unique names: interface names are limited to 15 bytes.
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, nsSeq.Add(1))
	p := &NetPair{Client: &Netns{"pt" + id + "c"}, Server: &Netns{"pt" + id + "s"}}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	c, s := p.Client.Name, p.Server.Name
	run("netns", "add", c)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", c).Run() })
	run("netns", "add", s)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", s).Run() })
	vc, vs, bx, by := "pc"+id, "ps"+id, "px"+id, "py"+id
	run("link", "add", vc, "netns", c, "type", "veth", "peer", "name", vs, "netns", s)
	for _, ns := range []string{c, s} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", c, "link", "set", vc, "up")
	run("-n", s, "link", "set", vs, "up")
	for _, a := range []string{"192.0.2.10/24", "192.0.2.11/24"} {
		run("-n", c, "addr", "add", a, "dev", vc)
	}
	for _, a := range []string{"2001:db8:1::10/64", "2001:db8:1::11/64"} {
		run("-n", c, "-6", "addr", "add", a, "dev", vc, "nodad")
	}
	for _, a := range []string{"192.0.2.25/24", "192.0.2.26/24"} {
		run("-n", s, "addr", "add", a, "dev", vs)
	}
	for _, a := range []string{"2001:db8:1::25/64", "2001:db8:1::26/64"} {
		run("-n", s, "-6", "addr", "add", a, "dev", vs, "nodad")
	}
	run("-n", c, "link", "add", bx, "type", "veth", "peer", "name", by)
	run("-n", c, "link", "set", bx, "arp", "off")
	run("-n", c, "link", "set", bx, "up")
	run("-n", c, "-6", "route", "add", "2001:db8:dead::/64", "dev", bx)
	run("-n", c, "route", "add", "198.51.100.0/24", "dev", bx)
	return p
}

// ExecPrefix is the argv prefix that runs a program inside the namespace.
func (n *Netns) ExecPrefix() []string {
	return []string{"/usr/sbin/ip", "netns", "exec", n.Name}
}

// DialContext connects from inside the namespace, binding local when it is
// valid. Its signature matches transport.Dialer.
//
// The socket is created by a goroutine locked to an OS thread that has
// entered the namespace (a socket keeps the namespace it was created in);
// the thread then returns to its own namespace. It must not simply die
// with the goroutine: a child process started with Pdeathsig (as
// testbed.Start does) from that thread earlier would be killed with it.
func (n *Netns) DialContext(ctx context.Context, network string, remote netip.AddrPort, local netip.Addr) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		defer orig.Close()
		if err := n.enter(); err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		var d net.Dialer
		if local.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
		}
		c, err := d.DialContext(ctx, network, remote.String())
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: stay locked, and the thread ends with the goroutine
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// DialReady is a ready check for testbed.WaitFor that connects to addr
// from inside the namespace.
func (n *Netns) DialReady(addr netip.AddrPort) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		network := "tcp4"
		if addr.Addr().Is6() {
			network = "tcp6"
		}
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		c, err := n.DialContext(ctx, network, addr, netip.Addr{})
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// enter moves the calling thread into the namespace.
func (n *Netns) enter() error {
	f, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", n.Name, err)
	}
	return nil
}
