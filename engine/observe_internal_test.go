package engine

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport"
)

// TestObserveAtWarn: a handler at WARN gets the deferred and bounced
// lines and not the sent ones (the lever docs/embedding.md names).
func TestObserveAtWarn(t *testing.T) {
	var buf strings.Builder
	e := &Engine{opts: Options{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}}
	res := []Result{
		{Result: transport.Result{Recipient: "a@x.test", Status: transport.StatusDelivered, Code: 250}},
		{Result: transport.Result{Recipient: "b@x.test", Status: transport.StatusTemporary, Code: 451}},
		{Result: transport.Result{Recipient: "c@x.test", Status: transport.StatusPermanent, Code: 550}},
	}
	e.observe(context.Background(), &Message{ID: "W1"}, res)
	out := buf.String()
	if strings.Contains(out, "a@x.test") || !strings.Contains(out, `"to":"b@x.test","status":"deferred"`) ||
		!strings.Contains(out, `"to":"c@x.test","status":"bounced"`) || strings.Count(out, "\n") != 2 {
		t.Errorf("log at WARN:\n%s\nwant the deferred and bounced lines only", out)
	}
}
