package engine_test

// The Redis throttle store as a policy gets it (limits.store), against a
// real redis-server: the counters are shared by two engines (two
// "processes"), the dry-run reads the use from Redis, and a stopped Redis
// follows limits.on-store-error — every recipient still gets one result.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/redisbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

func TestRedisStoreFromPolicy(t *testing.T) {
	rd := redisbed.Start(t, redisbed.Options{})
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	policy := func(onErr string) string {
		return oneRelayPolicy(sink.Addr, "limits:\n  throttles:\n    - name: per-domain\n      key: [rcpt_domain]\n      rate: 2/1h\n"+
			"  store: redis://"+rd.Addr+"/0\n  on-store-error: "+onErr+"\n")
	}
	a := newDeliverEngine(t, policy("defer"), engine.Options{})
	b := newDeliverEngine(t, policy("allow"), engine.Options{})
	msg := func(rcpt string) engine.Message { return engine.Message{From: "alice@sender.test", To: []string{rcpt}} }

	// Two tokens an hour for a.test, shared by both engines.
	wantResult(t, runDeliver(t, a, msg("u@a.test"), deliverBody), 0, transport.StatusDelivered, transport.ClassNone)
	wantResult(t, runDeliver(t, b, msg("v@a.test"), deliverBody), 0, transport.StatusDelivered, transport.ClassNone)
	res := runDeliver(t, a, msg("w@a.test"), deliverBody)
	wantResult(t, res, 0, transport.StatusTemporary, transport.ClassRate)
	if res[0].RetryAfter.IsZero() {
		t.Error("rate deferral without retry_after")
	}
	// The dry-run reads the bucket from Redis: nothing left, a wait.
	d, err := b.Evaluate(context.Background(), msg("x@a.test"), engine.WithTrace())
	if err != nil {
		t.Fatal(err)
	}
	th := d.Groups[0].Throttles[0]
	if th.StoreError != "" || th.WouldWait <= 0 {
		t.Errorf("dry-run throttle %+v, want a wait read from Redis", th)
	}

	// Redis stopped: defer gives a temporary result of class store,
	// allow delivers with a warning; one result each either way.
	rd.Stop(t)
	res = runDeliver(t, a, engine.Message{From: "alice@sender.test", To: []string{"y@b.test", "z@c.test"}}, deliverBody)
	for i := range res {
		wantResult(t, res, i, transport.StatusTemporary, engine.ClassStore)
		if res[i].RetryAfter.IsZero() || !strings.Contains(res[i].Text, "on-store-error: defer") {
			t.Errorf("result %d: %+v", i, res[i])
		}
	}
	res = runDeliver(t, b, msg("y@b.test"), deliverBody)
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
	if len(res[0].Warnings) == 0 || res[0].Warnings[0].Class != engine.ClassStore {
		t.Errorf("delivered unthrottled without a warning: %+v", res[0].Warnings)
	}
	if d, err := b.Evaluate(context.Background(), msg("x@a.test"), engine.WithTrace()); err != nil || d.Groups[0].Throttles[0].StoreError == "" {
		t.Errorf("dry-run with Redis down: %v %+v", err, d)
	}

	// Back: Redis restarted empty (the test bed persists nothing), and
	// deliveries go on once it answers.
	rd.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		res = runDeliver(t, a, msg("w@a.test"), deliverBody)
		if res[0].Class != engine.ClassStore {
			break
		}
	}
	wantResult(t, res, 0, transport.StatusDelivered, transport.ClassNone)
}
