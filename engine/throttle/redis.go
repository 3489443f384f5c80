package throttle

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	_ "embed" // the Lua scripts
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisOptions configure [NewRedis]; [ParseURL] makes them from a URL.
type RedisOptions struct {
	// Addrs are host:port addresses: one means a single node, several a
	// Redis Cluster (they are seeds: the client learns the others).
	Addrs []string
	// Cluster forces Cluster mode with a single seed address.
	Cluster bool
	// Username and Password authenticate (AUTH / HELLO). The password
	// comes from the policy's secret; it is never logged nor put in an
	// error.
	Username string
	Password string
	// DB selects a database; single node only (a Cluster has only 0).
	DB int
	// TLS, when set, makes every connection TLS (rediss://); a config
	// without ServerName verifies each node's host name.
	TLS *tls.Config
	// Prefix starts every key the store writes; default
	// "postern:throttle:". It may not hold "{" or "}" (see [Redis]).
	Prefix string
	// LeaseTTL is how long a lease lives without being renewed: a process
	// that dies frees its slots after this long. Default 30s; leases are
	// renewed every LeaseTTL/3, so keep it well above Timeout.
	LeaseTTL time.Duration
	// Dial, when set, opens the connections (TLS, when set, runs on top).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds each command, connecting included; default 2s.
	Timeout time.Duration
}

// String describes the options without the password, so that they can
// be logged.
func (o RedisOptions) String() string {
	pw := ""
	if o.Password != "" {
		pw = " password=<hidden>"
	}
	return fmt.Sprintf("redis addrs=%s cluster=%t user=%q%s db=%d tls=%t prefix=%q lease-ttl=%s timeout=%s",
		strings.Join(o.Addrs, ","), o.Cluster || len(o.Addrs) > 1, o.Username, pw, o.DB, o.TLS != nil,
		o.Prefix, o.LeaseTTL, o.Timeout)
}

// The defaults of RedisOptions, and the constants of the scripts.
const (
	defaultRedisPrefix   = "postern:throttle:"
	defaultRedisLeaseTTL = 30 * time.Second
	defaultRedisTimeout  = 2 * time.Second
	// redisHoldKeep is how long a key's average hold time outlives its
	// last release: a key idle longer starts again from defaultHold.
	redisHoldKeep = time.Hour
)

// The scripts, each run as the shared functions followed by its body.
var (
	//go:embed redis_common.lua
	redisCommonLua string
	//go:embed redis_acquire.lua
	redisAcquireLua string
	//go:embed redis_release.lua
	redisReleaseLua string
	//go:embed redis_renew.lua
	redisRenewLua string
	//go:embed redis_peek.lua
	redisPeekLua string

	acquireScript = redis.NewScript(redisCommonLua + redisAcquireLua)
	releaseScript = redis.NewScript(redisCommonLua + redisReleaseLua)
	renewScript   = redis.NewScript(redisCommonLua + redisRenewLua)
	peekScript    = redis.NewScript(redisCommonLua + redisPeekLua)
)

// Redis is a Store shared by every MTA of a fleet through one Redis server
// or a Redis Cluster. All the counting happens in Lua scripts, on Redis's
// clock (TIME): the clients' clocks never matter.
//
// An acquire is one round trip: one EVALSHA (EVAL when the server lost
// the script) that drops expired leases, then takes the concurrency slot
// and the rate token atomically. A release is a second round trip. A
// throttle key K has four Redis keys, all starting with the hash tag
// "{Prefix+K}" so that one script touches one Cluster slot:
//
//	{Prefix+K}:l  sorted set: lease id -> expiry (ms)
//	{Prefix+K}:s  sorted set: lease id -> start (ms)
//	{Prefix+K}:b  hash {tk, ts}: the token bucket (absent: full)
//	{Prefix+K}:h  moving average of hold times (ms)
//
// Each has a TTL, so an idle key vanishes: the lease sets after LeaseTTL,
// the bucket when it would be full again, the average an hour after the
// last release. A lease id is 128 random bits. While a lease is held, one
// goroutine per store renews all the store's leases every LeaseTTL/3, in
// one pipeline (one script call per throttle key); a process killed with
// -9 stops renewing and its slots free after LeaseTTL. A lease that
// expired anyway (Redis unreachable for a whole LeaseTTL) is not brought
// back: its slot may have gone to another process, so for the rest of
// that delivery the key can have one more in flight than its limit.
//
// It needs Redis 7.0 or later: PEXPIRE ... GT, EVALSHA_RO, and scripts
// that read TIME and then write (effects replication, the only mode since
// 7.0). After a server restart or failover the scripts are sent again
// (EVALSHA answers NOSCRIPT, then EVAL): two round trips, once per node.
//
// A concurrency refusal waits for the oldest live lease to end: its start
// plus the average hold time of the key's leases released (not refunded)
// so far, one second when there is none yet, at least 10ms. A rate
// refusal waits until one token is due; when both refuse, the longer wait
// wins.
//
// In a Cluster, replication is asynchronous: a master that fails over may
// lose its last writes, so for a moment after a failover the counts can
// be low (more granted than the limit), never stuck high for longer than
// LeaseTTL.
//
// The client is github.com/redis/go-redis/v9 rather than rueidis: it is
// the most used and maintained Go client, and it gives what this store
// needs without more — one UniversalClient for a single node and Cluster
// (slot routing, MOVED/ASK, topology reload, which the store also asks
// for when a command fails, to follow a failover at once), scripts sent
// by EVALSHA with the EVAL fallback, and per-node pipelines in a
// Cluster. The strengths of rueidis (client-side caching,
// auto-pipelining) do not serve a store that makes one script call per
// acquire.
type Redis struct {
	c       redis.UniversalClient
	where   string // the addresses, for errors
	prefix  string
	ttl     time.Duration
	timeout time.Duration

	mu     sync.Mutex
	held   map[string]map[string]struct{} // base key -> ids of the leases to renew
	closed bool

	stop      chan struct{} // closed by Close: the renewer ends
	done      chan struct{} // closed by the renewer when it has ended
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Redis)(nil)

// NewRedis makes a store with o; it does no network I/O (the client
// connects on first use), so a Redis that is down shows up as ErrStore
// errors of Acquire, Peek and Ping.
func NewRedis(o RedisOptions) (*Redis, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	r := &Redis{
		where:   strings.Join(o.Addrs, ","),
		prefix:  o.Prefix,
		ttl:     o.LeaseTTL,
		timeout: o.Timeout,
		held:    map[string]map[string]struct{}{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.c = redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:         o.Addrs,
		IsClusterMode: o.Cluster,
		Username:      o.Username,
		Password:      o.Password,
		DB:            o.DB,
		Dialer:        o.dialer(),
		ClientName:    "postern-throttle",
		DialTimeout:   o.Timeout,
		// One dial per attempt: a refused or failed connection is reported
		// at once, with its cause, rather than retried until Timeout.
		DialerRetries: 1,
		ReadTimeout:   o.Timeout,
		WriteTimeout:  o.Timeout,
		// The caller's context (bounded by Timeout) bounds retries and
		// redirects too, so an acquire never outlasts it.
		ContextTimeoutEnabled: true,
		// Nothing but the commands: no CLIENT SETINFO (Redis < 7.2 lacks
		// it) nor maintenance notifications (a Redis Enterprise feature).
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	go r.renewLoop()
	return r, nil
}

// fill checks o and applies the defaults.
func (o *RedisOptions) fill() error {
	if len(o.Addrs) == 0 {
		return errors.New("throttle: redis: no address")
	}
	if (o.Cluster || len(o.Addrs) > 1) && o.DB != 0 {
		return fmt.Errorf("throttle: redis: database %d: a Redis Cluster has only database 0", o.DB)
	}
	if o.DB < 0 {
		return fmt.Errorf("throttle: redis: database %d: negative", o.DB)
	}
	if o.Prefix == "" {
		o.Prefix = defaultRedisPrefix
	}
	// The hash tag of a key runs from its first "{" to the next "}": a
	// brace in the prefix would move it off the throttle key.
	if strings.ContainsAny(o.Prefix, "{}") {
		return fmt.Errorf("throttle: redis: prefix %q: may not hold { or }", o.Prefix)
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = defaultRedisLeaseTTL
	}
	if o.LeaseTTL < 30*time.Millisecond {
		return fmt.Errorf("throttle: redis: lease TTL %s: at least 30ms", o.LeaseTTL)
	}
	if o.Timeout == 0 {
		o.Timeout = defaultRedisTimeout
	}
	if o.Timeout < 0 {
		return fmt.Errorf("throttle: redis: timeout %s: negative", o.Timeout)
	}
	return nil
}

// dialer opens a connection with o.Dial (or TCP) and, when o.TLS is set,
// runs the TLS handshake on it, within the context's deadline.
func (o *RedisOptions) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := o.Dial
	if dial == nil {
		d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}}
		dial = d.DialContext
	}
	if o.TLS == nil {
		return dial
	}
	base := o.TLS
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := base.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		return tc, nil
	}
}

// keys returns the Redis keys of throttle key base (as made by r.base):
// leases, starts, bucket, hold.
func keys(base string) []string {
	return []string{base + ":l", base + ":s", base + ":b", base + ":h"}
}

// base is the hash tag shared by the Redis keys of key.
func (r *Redis) base(key string) string { return "{" + r.prefix + key + "}" }

// millis converts d for the scripts, rounding up: a period or TTL never
// becomes 0.
func millis(d time.Duration) int64 { return int64((d + time.Millisecond - 1) / time.Millisecond) }

// Acquire takes a slot and a token for key in one round trip, bounded by
// Timeout (and ctx); a limit with neither makes no round trip. Errors of
// Redis wrap ErrStore. An acquire that timed out may still have run on
// the server: its token is spent, and its slot, which nobody renews,
// frees after LeaseTTL.
func (r *Redis) Acquire(ctx context.Context, key string, lim Limit) (Grant, error) {
	if err := checkRedis(ctx, "acquire", key, lim); err != nil {
		return Grant{}, err
	}
	if lim.Concurrency == 0 && lim.Rate.Count == 0 {
		return Grant{Lease: NewLease(nil)}, nil
	}
	if r.isClosed() {
		return Grant{}, r.errClosed("acquire", key)
	}
	id := ""
	if lim.Concurrency > 0 {
		id = rand.Text()
	}
	base := r.base(key)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := acquireScript.Run(ctx, r.c, keys(base), id, lim.Concurrency, lim.Rate.Count,
		millis(lim.Rate.Period), millis(r.ttl), millis(waitFloor), millis(defaultHold)).Slice()
	if err != nil {
		return Grant{}, r.fail("acquire", key, err)
	}
	if len(res) == 3 {
		class, _ := res[1].(string)
		wait, _ := res[2].(int64)
		return Grant{Class: Class(class), Wait: time.Duration(wait) * time.Millisecond}, nil
	}
	if len(res) != 1 || res[0] != int64(1) {
		return Grant{}, r.fail("acquire", key, fmt.Errorf("unexpected answer %v", res))
	}
	if id != "" && !r.hold(base, id) {
		// Close ran meanwhile and released what it knew of: try to give
		// this one back too (else it expires after LeaseTTL).
		r.release(base, id, lim.Rate, false)
		return Grant{}, r.errClosed("acquire", key)
	}
	return Grant{Lease: NewLease(func(refund bool) {
		if !r.isClosed() { // Close released it already
			r.release(base, id, lim.Rate, refund)
		}
	})}, nil
}

// Peek reports key's usage in one read-only round trip (EVALSHA_RO).
func (r *Redis) Peek(ctx context.Context, key string, lim Limit) (Usage, error) {
	if err := checkRedis(ctx, "peek", key, lim); err != nil {
		return Usage{}, err
	}
	if r.isClosed() {
		return Usage{}, r.errClosed("peek", key)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := peekScript.RunRO(ctx, r.c, keys(r.base(key)), lim.Concurrency, lim.Rate.Count,
		millis(lim.Rate.Period), millis(waitFloor), millis(defaultHold)).Slice()
	if err != nil {
		return Usage{}, r.fail("peek", key, err)
	}
	u, err := parseUsage(res)
	if err != nil {
		return Usage{}, r.fail("peek", key, err)
	}
	return u, nil
}

// parseUsage reads the peek script's answer.
func parseUsage(res []any) (Usage, error) {
	if len(res) != 4 {
		return Usage{}, fmt.Errorf("unexpected answer %v", res)
	}
	inUse, ok1 := res[0].(int64)
	tk, ok2 := res[1].(string)
	class, ok3 := res[2].(string)
	wait, ok4 := res[3].(int64)
	tokens, err := strconv.ParseFloat(tk, 64)
	if !ok1 || !ok2 || !ok3 || !ok4 || err != nil {
		return Usage{}, fmt.Errorf("unexpected answer %v", res)
	}
	return Usage{InUse: int(inUse), Tokens: tokens, Class: Class(class), Wait: time.Duration(wait) * time.Millisecond}, nil
}

// Ping checks that every master answers (the one server, or each master
// of a Cluster), within Timeout.
func (r *Redis) Ping(ctx context.Context) error {
	if r.isClosed() {
		return r.errClosed("ping", "")
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var err error
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			if err := c.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", c.Options().Addr, err)
			}
			return nil
		})
	} else {
		err = r.c.Ping(ctx).Err()
	}
	if err != nil {
		r.refreshSlots()
		return fmt.Errorf("%w: redis: ping %s: %w", ErrStore, r.where, err)
	}
	return nil
}

// checkRedis refuses a cancelled context and a limit no store could count.
func checkRedis(ctx context.Context, op, key string, lim Limit) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("throttle: redis: %s %q: %w", op, key, err)
	}
	if lim.Concurrency < 0 || lim.Rate.Count < 0 || (lim.Rate.Count > 0 && lim.Rate.Period <= 0) {
		return fmt.Errorf("throttle: redis: %s %q: invalid limit (concurrency %d, rate %d per %s)",
			op, key, lim.Concurrency, lim.Rate.Count, lim.Rate.Period)
	}
	return nil
}

// fail wraps an error of Redis (connection, timeout, script) in ErrStore
// with what failed and where. In a Cluster it also asks for the slot map
// again: go-redis reloads it only every minute or on MOVED, and a master
// that died answers no MOVED, so without this the client would keep
// sending to it for up to a minute after its replica took over.
func (r *Redis) fail(op, key string, err error) error {
	r.refreshSlots()
	return fmt.Errorf("%w: redis %s: %s %q: %w", ErrStore, r.where, op, key, err)
}

// refreshSlots reloads a Cluster's slot map in the background (go-redis
// coalesces the requests: one reload at a time, then a 200ms pause).
func (r *Redis) refreshSlots() {
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

func (r *Redis) errClosed(op, key string) error {
	return fmt.Errorf("%w: redis %s: %s %q: store closed", ErrStore, r.where, op, key)
}
