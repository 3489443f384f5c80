package throttle

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// hold records a lease to renew; false when the store is closed.
func (r *Redis) hold(base, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	ids := r.held[base]
	if ids == nil {
		ids = map[string]struct{}{}
		r.held[base] = ids
	}
	ids[id] = struct{}{}
	return true
}

// forget stops renewing a lease.
func (r *Redis) forget(base, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ids := r.held[base]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(r.held, base)
		}
	}
}

func (r *Redis) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// release ends a lease (Lease.Release): the renewal stops, then one round
// trip frees the slot and learns the hold time, or, with refund, gives
// the token back and learns nothing (the delivery never ran). A lease without a slot and without a refund needs no round
// trip. Release cannot report an error: when Redis does not answer, the
// slot frees when the lease expires (it is no longer renewed) and the
// refund is lost.
func (r *Redis) release(base, id string, rate Rate, refund bool) {
	if id != "" {
		r.forget(base, id)
	}
	if id == "" && !(refund && rate.Count > 0) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	flag := "0"
	if refund {
		flag = "1"
	}
	_ = releaseScript.Run(ctx, r.c, keys(base), id, flag, rate.Count, millis(rate.Period),
		1.0/holdWeight, millis(redisHoldKeep)).Err()
}

// renewLoop renews the held leases every LeaseTTL/3 until Close.
func (r *Redis) renewLoop() {
	defer close(r.done)
	t := time.NewTicker(r.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.renew()
		}
	}
}

// renewal is the renew script call for the leases of one throttle key.
type renewal struct {
	base string
	args []any // lease TTL ms, ids...
	cmd  *redis.Cmd
}

// renew pushes the expiry of every held lease forward, in one pipeline of
// one script call per throttle key (go-redis splits it by Cluster node).
// Leases the script reports lost (they expired first) are forgotten.
func (r *Redis) renew() {
	batch := r.renewals()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	_, _ = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range batch {
			b := &batch[i]
			b.cmd = renewScript.EvalSha(ctx, p, keys(b.base)[:2], b.args...)
		}
		return nil
	})
	for _, b := range batch {
		if errors.Is(b.cmd.Err(), redis.ErrNoScript) || redis.HasErrorPrefix(b.cmd.Err(), "NOSCRIPT") {
			// The node lost its scripts (restart, failover): send it.
			b.cmd = renewScript.Run(ctx, r.c, keys(b.base)[:2], b.args...)
		}
		lost, err := b.cmd.StringSlice()
		if err != nil {
			r.refreshSlots()
			continue // tried again next tick; the lease expires if it keeps failing
		}
		for _, id := range lost {
			r.forget(b.base, id)
		}
	}
}

// renewals snapshots the held leases, grouped by throttle key.
func (r *Redis) renewals() []renewal {
	ttl := strconv.FormatInt(millis(r.ttl), 10)
	r.mu.Lock()
	defer r.mu.Unlock()
	batch := make([]renewal, 0, len(r.held))
	for base, ids := range r.held {
		args := make([]any, 0, 1+len(ids))
		args = append(args, ttl)
		for id := range ids {
			args = append(args, id)
		}
		batch = append(batch, renewal{base: base, args: args})
	}
	return batch
}

// Close stops the renewal, releases the leases still held (best effort,
// one pipeline: they count no hold time and refund nothing) and closes
// the client. Acquire, Peek and Ping then fail with ErrStore; releasing
// a lease afterwards does nothing. Only the first call counts.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		held := r.held
		r.held = nil
		r.mu.Unlock()
		close(r.stop)
		<-r.done
		r.drop(held)
		r.closeErr = r.c.Close()
	})
	return r.closeErr
}

// drop removes leases from Redis without learning from them.
func (r *Redis) drop(held map[string]map[string]struct{}) {
	if len(held) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	_, _ = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for base, ids := range held {
			members := make([]any, 0, len(ids))
			for id := range ids {
				members = append(members, id)
			}
			k := keys(base)
			p.ZRem(ctx, k[0], members...)
			p.ZRem(ctx, k[1], members...)
		}
		return nil
	})
}
