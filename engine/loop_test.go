package engine_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// TestLoopByName delivers to a real smtp-sink that greets as "smtp-sink"
// (its default name): with that name in Options.SelfNames the delivery
// fails permanently as a loop (554 5.4.6, class loop) and nothing reaches
// the sink; without it the same delivery succeeds.
func TestLoopByName(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	policy := oneRelayPolicy(sink.Addr, "tls:\n  starttls: disable\n")
	msg := engine.Message{ID: "L1", From: "s@sender.test", To: []string{"a@dest.test", "b@dest.test"}}

	e := newDeliverEngine(t, policy, engine.Options{SelfNames: []string{"SMTP-Sink."}})
	res := runDeliver(t, e, msg, deliverBody)
	for _, r := range res {
		if r.Status != transport.StatusPermanent || r.Class != transport.ClassLoop || r.Code != 554 || r.Enhanced != (transport.EnhancedCode{5, 4, 6}) ||
			!strings.Contains(r.Text, "loops back to myself") {
			t.Errorf("%s: %d %s %s %q, want a permanent 554 5.4.6 loop", r.Recipient, r.Code, r.Enhanced, r.Class, r.Text)
		}
	}
	if got := sink.Messages(t); len(got) != 0 {
		t.Errorf("the sink received %d messages from a looping delivery", len(got))
	}

	plain := newDeliverEngine(t, policy, engine.Options{SelfNames: []string{"relay.example.net"}})
	if res := runDeliver(t, plain, msg, deliverBody); res[0].Status != transport.StatusDelivered {
		t.Fatalf("with another name: %s", formatResults(res))
	}
}

// TestLoopByAddress: a relay route to one of Options.SelfAddresses fails
// as a loop without a connection (the counting proxy in front of the
// sink sees none); other addresses are delivered to.
func TestLoopByAddress(t *testing.T) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	proxy := startCountingProxy(t, sink.Addr)
	policy := oneRelayPolicy(proxy.Addr, "tls:\n  starttls: disable\n")
	msg := engine.Message{ID: "L2", From: "s@sender.test", To: []string{"a@dest.test"}}

	e := newDeliverEngine(t, policy, engine.Options{SelfAddresses: []netip.AddrPort{proxy.Addr}})
	res := runDeliver(t, e, msg, deliverBody)
	if r := res[0]; r.Status != transport.StatusPermanent || r.Class != transport.ClassLoop || r.Code != 554 || r.Err == nil || r.Err.Phase != "connect" {
		t.Fatalf("delivery to our own address: %s", formatResults(res))
	}
	if _, total := proxy.Stats(); total != 0 {
		t.Fatalf("%d connections to our own address, want none", total)
	}

	// A wildcard listener on the proxy's port covers loopback too.
	wild := newDeliverEngine(t, policy, engine.Options{SelfAddresses: []netip.AddrPort{netip.AddrPortFrom(netip.IPv6Unspecified(), proxy.Addr.Port())}})
	if res := runDeliver(t, wild, msg, deliverBody); res[0].Class != transport.ClassLoop {
		t.Fatalf("wildcard listener on the same port: %s", formatResults(res))
	}

	// Another port of the same address is somebody else.
	other := newDeliverEngine(t, policy, engine.Options{SelfAddresses: []netip.AddrPort{netip.AddrPortFrom(proxy.Addr.Addr(), proxy.Addr.Port()+1)}})
	if res := runDeliver(t, other, msg, deliverBody); res[0].Status != transport.StatusDelivered {
		t.Fatalf("our listener on another port: %s", formatResults(res))
	}
	if _, total := proxy.Stats(); total != 1 {
		t.Fatalf("%d connections, want the one delivery", total)
	}
}
