package redisbed

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestServerStopRestart starts one server, checks it holds nothing on
// disk-backed persistence, stops it (clients then fail) and restarts it
// on the same address (clients work again).
func TestServerStopRestart(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client(t)
	for _, kv := range [][2]string{{"save", ""}, {"appendonly", "no"}, {"bind", "127.0.0.1"}} {
		got, err := c.ConfigGet(ctx, kv[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got[kv[0]] != kv[1] {
			t.Errorf("CONFIG GET %s = %q, want %q", kv[0], got[kv[0]], kv[1])
		}
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET on a stopped server succeeded")
	}
	s.Restart(t)
	// Nothing was persisted: the key is gone after the restart.
	if err := s.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart: %v, want redis.Nil (nothing persisted)", err)
	}
}

// TestPassword checks that a server with a password refuses a client
// without it.
func TestPassword(t *testing.T) {
	s := Start(t, Options{Password: "s3cret"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with the password: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING without the password succeeded")
	}
}

// TestCluster builds a 3-master cluster with a replica each, checks the
// slots are spread over the three masters, kills the master of a key and
// waits for its replica to take over.
func TestCluster(t *testing.T) {
	c := StartCluster(t, ClusterOptions{Replicas: 1})
	if got := len(c.Masters(t)); got != 3 {
		t.Fatalf("%d masters, want 3", got)
	}
	old := c.MasterOf(t, "some-key")
	old.Kill(t)
	c.WaitHealthy(t)
	now := c.MasterOf(t, "some-key")
	if now == old {
		t.Fatalf("slot of some-key still served by the killed node %s", old.Addr)
	}
	if got := len(c.Masters(t)); got != 3 {
		t.Fatalf("%d masters after the failover, want 3", got)
	}
}

// TestMonitor checks that Monitor reports a client's commands with its
// address, and the commands a script runs as "lua", and nothing twice.
func TestMonitor(t *testing.T) {
	s := Start(t, Options{})
	m := s.Monitor(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil { // connects first: HELLO is not counted below
		t.Fatal(err)
	}
	m.Next(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{"k"}).Err(); err != nil {
		t.Fatal(err)
	}
	got := m.Next(t)
	if len(got) != 3 || got[0].Name != "set" || got[1].Name != "eval" || got[2] != (Command{Client: "lua", Name: "get"}) ||
		got[0].Client == "lua" || got[0].Client != got[1].Client {
		t.Fatalf("commands %+v, want set and eval from the client, get from lua", got)
	}
	if got := m.Next(t); len(got) != 0 {
		t.Fatalf("commands %+v after nothing was sent", got)
	}
}
