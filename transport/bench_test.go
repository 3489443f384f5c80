package transport_test

import (
	"context"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport"
)

// BenchmarkDeliver2KB delivers a 2 KB message to one recipient over
// loopback to the in-process server, reusing connections (100 messages per
// connection), one delivery at a time.
func BenchmarkDeliver2KB(b *testing.B) {
	s := newFakeServer(b, script{noRecord: true})
	c := &transport.Client{}
	defer c.Close()
	p := planFor(s.Addr)
	setMPC(p, 100)
	msg := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 32)
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		res := c.Deliver(ctx, p, newMsg(msg, "b@example.test"))
		if res[0].Status != transport.StatusDelivered {
			b.Fatal(dump(res))
		}
	}
}

// BenchmarkDeliver2KBParallel is the same with concurrent deliveries
// sharing the pool.
func BenchmarkDeliver2KBParallel(b *testing.B) {
	s := newFakeServer(b, script{noRecord: true})
	c := &transport.Client{}
	defer c.Close()
	p := planFor(s.Addr)
	setMPC(p, 100)
	msg := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 32)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res := c.Deliver(context.Background(), p, newMsg(msg, "b@example.test"))
			if res[0].Status != transport.StatusDelivered {
				b.Error(dump(res))
				return
			}
		}
	})
}
