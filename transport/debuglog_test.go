package transport_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport"
)

// TestDebugRecords: with a logger at debug level the client logs each
// session's connection, reuse and transaction; at info level it logs
// none of them (and skips building them).
func TestDebugRecords(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf bytes.Buffer
		s := newFakeServer(t, script{noRecord: true})
		c := &transport.Client{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))}
		p := planFor(s.Addr)
		setMPC(p, 10)
		for range 2 {
			res := c.Deliver(context.Background(), p, newMsg("Subject: x\r\n\r\nhi\r\n", "b@example.test"))
			if res[0].Status != transport.StatusDelivered {
				t.Fatal(dump(res))
			}
		}
		c.Close()
		out := buf.String()
		for _, want := range []string{"transport: connected", "transport: reusing connection", "transport: transaction"} {
			if got := strings.Contains(out, want); got != (level == slog.LevelDebug) {
				t.Errorf("level %v: %q logged = %v\n%s", level, want, got, out)
			}
		}
	}
}
