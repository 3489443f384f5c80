package engine

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/postern-mta/postern/transport"
)

// BenchmarkObserve measures the per-recipient log line of a delivered
// recipient (what the soak's -log variant adds), with the JSON and text
// handlers writing to io.Discard, and with the level above Info (the
// line is skipped).
func BenchmarkObserve(b *testing.B) {
	res := []Result{{Route: "sink1", Result: transport.Result{
		Recipient: "user42@d1.dest.test", Status: transport.StatusDelivered,
		Code: 250, Enhanced: transport.EnhancedCode{2, 0, 0}, Text: "2.0.0 Ok: queued as 4Hq2x",
		Host: "127.0.0.1", Address: netip.MustParseAddrPort("127.0.0.1:2525"),
		Duration: 1234567 * time.Nanosecond,
	}}}
	msg := &Message{ID: "4Hq2x0000AB"}
	for _, c := range []struct {
		name string
		h    slog.Handler
	}{
		{"json", slog.NewJSONHandler(io.Discard, nil)},
		{"text", slog.NewTextHandler(io.Discard, nil)},
		{"disabled", slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := &Engine{opts: Options{Logger: slog.New(c.h)}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				e.observe(ctx, msg, res)
			}
		})
	}
}
