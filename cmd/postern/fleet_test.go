//go:build linux

package main

// A fleet: separate `postern send` processes (the binary that
// posternBinary builds once with `go build`) share their throttles through
// a real Redis — one redis-server, and a Redis Cluster of three masters —
// as the MTAs of a fleet do. The receiver is a real smtp-sink behind a
// small TCP proxy that only counts the connections open through it at
// once: what a concurrency limit promises the receiver is what the proxy
// sees.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/throttle"
	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/redisbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
)

const (
	// fleetPasswordEnv names the variable the fleet's policies read the
	// Redis password from (limits.store.password: {env: ...}); every
	// Redis of these tests requires it, as a fleet's would.
	fleetPasswordEnv = "POSTERN_FLEET_REDIS_PASSWORD"
	fleetPassword    = "fleet-redis-pw-5d1c"
	// fleetHolderEnv, set, makes TestFleetLeaseHolderProcess the
	// lease holder that the killed-holder test kills: the policy's
	// directory.
	fleetHolderEnv = "POSTERN_FLEET_HOLDER_DIR"
	// fleetLeaseTTL is the lease TTL of the killed-holder test. The
	// policy cannot set it (the Redis store's default is 30s), so that
	// test runs the engine with a store of its own.
	fleetLeaseTTL = 4 * time.Second
)

// fleetEnv is the environment of the fleet's processes: the password.
var fleetEnv = []string{fleetPasswordEnv + "=" + fleetPassword}

// TestFleet runs each fleet scenario on a single Redis server and on a
// 3-master Redis Cluster. The scenarios that only count share one Redis
// per kind (each under a throttle of its own); those that stop or kill a
// node start their own.
func TestFleet(t *testing.T) {
	posternBinary(t) // once, before the subtests start processes
	for _, kind := range []struct {
		name    string
		cluster bool
	}{{"single", false}, {"cluster", true}} {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			shared := startFleetRedis(t, kind.cluster, 0)
			t.Run("concurrency", func(t *testing.T) { t.Parallel(); fleetConcurrency(t, shared) })
			t.Run("rate", func(t *testing.T) { t.Parallel(); fleetRate(t, shared) })
			t.Run("killed-holder", func(t *testing.T) { t.Parallel(); fleetKilledHolder(t, shared) })
			t.Run("password", func(t *testing.T) { t.Parallel(); fleetPasswordCheck(t, shared) })
			t.Run("store-down", func(t *testing.T) { t.Parallel(); fleetStoreDown(t, kind.cluster) })
			if kind.cluster {
				t.Run("failover", func(t *testing.T) { t.Parallel(); fleetFailover(t) })
			}
		})
	}
}

// fleetConcurrency: six processes at once under a throttle of two
// deliveries in flight per route, to a receiver that takes 2s to answer
// DATA. The receiver never sees more than two connections; every process
// prints one result per recipient; those held back are deferred with
// class concurrency and a retry_after, and never connect.
func fleetConcurrency(t *testing.T, f *fleetRedis) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "2"}})
	proxy := testbed.StartProxy(t, sink.Addr)
	dir := sendDir(t, sendRoute("127.0.0.1", proxy.Addr.Port())+fleetLimits("conc", "concurrency: 2", f.url(), "", "defer"))

	var delivered []string
	for i, o := range sendAll(t, dir, fleetRcpts("c", 6)) {
		switch o.kind() {
		case "delivered":
			delivered = append(delivered, o.rcpts...)
		case "concurrency":
			o.wantRetryAfter(t, o.started, o.started.Add(time.Minute))
		default:
			t.Errorf("process %d: want delivered, or deferred with class concurrency:\n%s", i, o)
		}
	}
	peak, total := proxy.Stats()
	if peak > 2 {
		t.Errorf("the receiver saw %d connections at once; the fleet's limit is 2", peak)
	}
	if len(delivered) < 2*2 {
		t.Errorf("%d recipients delivered, want those of at least 2 processes (2 each)", len(delivered))
	}
	if total != len(delivered)/2 {
		t.Errorf("%d connections for %d delivering processes: a deferred process connected", total, len(delivered)/2)
	}
	wantSink(t, sink, delivered)
}

// fleetRate: eight processes at once under 3 deliveries an hour: exactly
// three deliver, the five others are deferred with class rate until the
// next token, in about 20 minutes.
func fleetRate(t *testing.T, f *fleetRedis) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	proxy := testbed.StartProxy(t, sink.Addr)
	dir := sendDir(t, sendRoute("127.0.0.1", proxy.Addr.Port())+fleetLimits("rate", "rate: 3/1h", f.url(), "", "defer"))

	var delivered []string
	deferred := 0
	for i, o := range sendAll(t, dir, fleetRcpts("r", 8)) {
		switch o.kind() {
		case "delivered":
			delivered = append(delivered, o.rcpts...)
		case "rate":
			deferred++
			// A token every 20 minutes: the next one is due within 20
			// minutes of the first taken, which was after o started.
			o.wantRetryAfter(t, o.started.Add(15*time.Minute), time.Now().Add(20*time.Minute+time.Second))
		default:
			t.Errorf("process %d: want delivered, or deferred with class rate:\n%s", i, o)
		}
	}
	if len(delivered) != 3*2 || deferred != 5 {
		t.Errorf("%d recipients delivered and %d processes deferred, want 3 processes delivered (2 recipients each) and 5 deferred",
			len(delivered), deferred)
	}
	if _, total := proxy.Stats(); total != len(delivered)/2 {
		t.Errorf("%d connections for %d delivering processes", total, len(delivered)/2)
	}
	wantSink(t, sink, delivered)
}

// fleetKilledHolder: a process holding the only slot (mid-delivery, the
// receiver slow to answer DATA) is killed with SIGKILL. Another is refused
// while the lease lives — nobody released it — and accepted once it has
// expired, LeaseTTL after the dead process's last renewal.
//
// The lease TTL is not a policy setting and the default (30s) would make
// this test outlast the others; so the holder is this test binary run
// again as a child (TestFleetLeaseHolderProcess), and the newcomer an
// engine in this process, both with a Redis store of fleetLeaseTTL.
func fleetKilledHolder(t *testing.T, f *fleetRedis) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "3"}})
	proxy := testbed.StartProxy(t, sink.Addr)
	dir := sendDir(t, sendRoute("127.0.0.1", proxy.Addr.Port())+fleetLimits("held", "concurrency: 1", f.url(), "", "defer"))

	// TMPDIR: the child's TestMain makes a directory that SIGKILL leaves.
	holder := startFleetProc(t, dir, []string{fleetHolderEnv + "=" + dir, "TMPDIR=" + t.TempDir()},
		os.Args[0], "-test.run=^TestFleetLeaseHolderProcess$", "-test.count=1", "-test.v")
	waitUntil(t, 30*time.Second, "the holder connects to the receiver, its slot taken", func() (bool, error) {
		if _, total := proxy.Stats(); total > 0 {
			return true, nil
		}
		if holder.exited() {
			return false, fmt.Errorf("the holder exited:\n%s", holder)
		}
		return false, nil
	})
	if n := f.liveLeases(t, "held"); n != 1 {
		t.Fatalf("%d live leases while the holder delivers, want 1", n)
	}
	holder.kill(t)

	eng := newFleetEngine(t, dir)
	before := time.Now()
	res := fleetDeliver(t, eng, "after-kill@dest.test")
	if res.Status != transport.StatusTemporary || res.Class != transport.ClassConcurrency || !res.RetryAfter.After(before) {
		t.Fatalf("while the killed holder's lease lives: %s %s retry_after %v, want temporary, class concurrency, a retry_after",
			res.StatusText(), res.Class, res.RetryAfter)
	}
	waitUntil(t, 3*fleetLeaseTTL, "the killed holder's lease expires", func() (bool, error) {
		return f.liveLeases(t, "held") == 0, nil
	})
	if res := fleetDeliver(t, eng, "after-expiry@dest.test"); res.StatusText() != "delivered" {
		t.Fatalf("once the lease expired: %s %s %q, want delivered", res.StatusText(), res.Class, res.Text)
	}
	if peak, total := proxy.Stats(); peak > 1 || total != 2 {
		t.Errorf("the receiver saw %d connections at once and %d in all, want 1 and 2 (the holder, then the newcomer)", peak, total)
	}
}

// TestFleetLeaseHolderProcess is not a test of its own: run by
// fleetKilledHolder as a child process, it delivers one message under the
// policy in $POSTERN_FLEET_HOLDER_DIR, with a short lease TTL, and is
// killed while the receiver makes it wait.
func TestFleetLeaseHolderProcess(t *testing.T) {
	dir := os.Getenv(fleetHolderEnv)
	if dir == "" {
		t.Skip("the lease holder of TestFleet's killed-holder tests, run by them as a child process")
	}
	res := fleetDeliver(t, newFleetEngine(t, dir), "holder@dest.test")
	t.Logf("the holder finished before it was killed: %s %s %q", res.StatusText(), res.Class, res.Text)
}

// fleetPasswordCheck: `postern check` refuses a Redis password written in
// the policy, in the URL or as limits.store.password, says why and never
// repeats it; {env: NAME} passes. The engine built from it authenticates
// with the variable's value: right, the delivery goes; wrong, it is
// deferred (class store) and the wrong password is never printed.
func fleetPasswordCheck(t *testing.T, f *fleetRedis) {
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	route := sendRoute("127.0.0.1", sink.Addr.Port())
	throttles := "limits:\n  throttles:\n    - name: auth\n      key: [route]\n      concurrency: 10\n"
	inURL := strings.Replace(f.url(), "redis://", "redis://:"+fleetPassword+"@", 1)
	for _, tc := range []struct{ name, store, want string }{
		{"in the URL", "  store: " + inURL + "\n", "the Redis password is never written in the URL"},
		{"literal", "  store:\n    url: " + f.url() + "\n    password: " + fleetPassword + "\n",
			"the Redis password is never written in the policy: use {env: NAME} or {file: PATH}"},
	} {
		r := runPostern(t, sendDir(t, route+throttles+tc.store), fleetEnv, "check", "-c", "policy.yaml")
		if r.code != exitFailed || !strings.Contains(r.stderr, "limits.store") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("check, password %s: want exit 1 and %q about limits.store:\n%s", tc.name, tc.want, r)
		}
		if strings.Contains(r.stdout+r.stderr, fleetPassword) {
			t.Errorf("check, password %s: the password is repeated:\n%s", tc.name, r)
		}
	}

	dir := sendDir(t, route+fleetLimits("auth", "concurrency: 10", f.url(), "", "defer"))
	if r := runPostern(t, dir, fleetEnv, "check", "-c", "policy.yaml"); r.code != exitOK || r.stdout != "policy.yaml: ok\n" || r.stderr != "" {
		t.Errorf("check, password {env: %s}: want exit 0 and ok:\n%s", fleetPasswordEnv, r)
	}
	if o := sendAll(t, dir, [][]string{{"right@dest.test"}})[0]; o.kind() != "delivered" {
		t.Errorf("send with the right password: want delivered:\n%s", o)
	}
	const wrong = "not-the-fleet-pw-9e2b"
	o := sendAllEnv(t, dir, []string{fleetPasswordEnv + "=" + wrong}, [][]string{{"wrong@dest.test"}})[0]
	if o.kind() != string(engine.ClassStore) || strings.Contains(o.run.stdout+o.run.stderr, wrong) {
		t.Errorf("send with a wrong password: want deferred with class store, the password not printed:\n%s", o)
	}
	wantSink(t, sink, []string{"right@dest.test"})
}

// fleetStoreDown: a process is mid-delivery when Redis goes away (the
// server stopped; in a Cluster, the master of the throttle's key). It
// still delivers. With on-store-error defer, each recipient of the next
// process gets one temporary result of class store (exit 3) and nothing
// is sent; with allow, they are delivered with a warning (exit 0). Once
// Redis is back the deferred message goes: every recipient arrives once.
// The Cluster is reached here through one seed with cluster: true.
func fleetStoreDown(t *testing.T, cluster bool) {
	f := startFleetRedis(t, cluster, 0)
	down := f.node(t, fleetKey("down"))
	url, extra := f.url(), ""
	if cluster {
		for _, n := range f.cluster.Nodes {
			if n != down {
				url, extra = "redis://"+n.Addr+"/0", "    cluster: true\n"
				break
			}
		}
	}
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "2"}})
	proxy := testbed.StartProxy(t, sink.Addr)
	route := sendRoute("127.0.0.1", proxy.Addr.Port())
	deferDir := sendDir(t, route+fleetLimits("down", "concurrency: 5", url, extra, "defer"))
	allowDir := sendDir(t, route+fleetLimits("down", "concurrency: 5", url, extra, "allow"))

	a := startFleetSend(t, deferDir, fleetEnv, []string{"a@dest.test"})
	waitUntil(t, 30*time.Second, "the first process connects to the receiver", func() (bool, error) {
		if _, total := proxy.Stats(); total > 0 {
			return true, nil
		}
		if a.exited() {
			return false, fmt.Errorf("it exited:\n%s", a)
		}
		return false, nil
	})
	down.Stop(t)
	b := startFleetSend(t, deferDir, fleetEnv, []string{"b1@dest.test", "b2@dest.test"})
	c := startFleetSend(t, allowDir, fleetEnv, []string{"c1@dest.test", "c2@dest.test"})
	oa, ob, oc := a.wait(t), b.wait(t), c.wait(t)

	if oa.kind() != "delivered" {
		t.Errorf("the process mid-delivery when Redis stopped: want delivered:\n%s", oa)
	}
	if ob.kind() != string(engine.ClassStore) {
		t.Errorf("on-store-error defer: want every recipient deferred with class store, exit 3:\n%s", ob)
	}
	for _, r := range ob.results {
		if !strings.Contains(r.Text, "on-store-error: defer") {
			t.Errorf("on-store-error defer: %s: text %q does not say why", r.Recipient, r.Text)
		}
	}
	ob.wantRetryAfter(t, ob.started, time.Now().Add(2*time.Minute))
	if oc.kind() != "delivered" {
		t.Errorf("on-store-error allow: want delivered, exit 0:\n%s", oc)
	}
	for _, r := range oc.results {
		if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "on-store-error: allow") }) {
			t.Errorf("on-store-error allow: %s delivered without a warning about the store: %q", r.Recipient, r.Warnings)
		}
	}
	for _, o := range []fleetOutcome{oa, ob, oc} {
		if strings.Contains(o.run.stdout+o.run.stderr, fleetPassword) {
			t.Errorf("the Redis password is printed:\n%s", o)
		}
	}

	down.Restart(t)
	if cluster {
		f.cluster.WaitHealthy(t)
	}
	if o := startFleetSend(t, deferDir, fleetEnv, ob.rcpts).wait(t); o.kind() != "delivered" {
		t.Errorf("the deferred message again, Redis back: want delivered:\n%s", o)
	}
	wantSink(t, sink, []string{"a@dest.test", "c1@dest.test", "c2@dest.test", "b1@dest.test", "b2@dest.test"})
}

// fleetFailover: in a Cluster with a replica per master, the master
// holding the throttle's key is killed. Rounds of three processes (two
// slots) run until they deliver again, which must happen within 30s
// (nodes fail over after 1s); meanwhile they are deferred, never sent
// unthrottled, and the receiver never sees more than two connections.
func fleetFailover(t *testing.T) {
	f := startFleetRedis(t, true, 1)
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: []string{"-w", "1"}})
	proxy := testbed.StartProxy(t, sink.Addr)
	dir := sendDir(t, sendRoute("127.0.0.1", proxy.Addr.Port())+fleetLimits("failover", "concurrency: 2", f.url(), "", "defer"))

	var delivered []string
	round := func(name string) (n int, classes map[string]int) {
		classes = map[string]int{}
		for i, o := range sendAll(t, dir, fleetRcpts(name, 3)) {
			k := o.kind()
			classes[k]++
			switch k {
			case "delivered":
				n++
				delivered = append(delivered, o.rcpts...)
			case "concurrency", string(engine.ClassStore):
			default:
				t.Errorf("round %s, process %d: want delivered, or deferred (concurrency, store):\n%s", name, i, o)
			}
		}
		return n, classes
	}
	if n, classes := round("before"); n < 2 {
		t.Fatalf("before the failover: %d processes delivered, want 2 (%v)", n, classes)
	}

	key := fleetKey("failover")
	master := f.cluster.MasterOf(t, key)
	// The leases were all released; the replica must have seen it, or it
	// would take over stale leases (replication is asynchronous).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if acked, err := master.Client(t).Wait(ctx, 1, 5*time.Second).Result(); err != nil || acked != 1 {
		t.Fatalf("WAIT on %s: %d replicas, %v", master.Addr, acked, err)
	}
	master.Kill(t)
	killed := time.Now()
	for i := 1; ; i++ {
		n, classes := round("after" + strconv.Itoa(i))
		t.Logf("round %d after the kill (%s): %v", i, time.Since(killed).Round(time.Millisecond), classes)
		if n > 0 {
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("no delivery within 30s of killing %s, the master of the throttle's key", master.Addr)
		}
	}
	f.cluster.WaitHealthy(t)
	if now := f.cluster.MasterOf(t, key); now == master {
		t.Fatalf("the key is still served by the killed node %s", master.Addr)
	}
	if n, classes := round("settled"); n < 2 || classes[string(engine.ClassStore)] > 0 {
		t.Errorf("after the failover settled: %d delivered, want 2, and no store failure (%v)", n, classes)
	}
	peak, total := proxy.Stats()
	if peak > 2 {
		t.Errorf("the receiver saw %d connections at once; the fleet's limit is 2", peak)
	}
	if total != len(delivered)/2 {
		t.Errorf("%d connections for %d delivering processes", total, len(delivered)/2)
	}
	wantSink(t, sink, delivered)
}

// fleetRedis is the Redis of a fleet: one server or a Cluster.
type fleetRedis struct {
	single  *redisbed.Server
	cluster *redisbed.Cluster
}

// startFleetRedis starts a password-protected Redis: one server, or a
// Cluster of 3 masters with replicas replicas each.
func startFleetRedis(t testing.TB, cluster bool, replicas int) *fleetRedis {
	t.Helper()
	if cluster {
		return &fleetRedis{cluster: redisbed.StartCluster(t, redisbed.ClusterOptions{Replicas: replicas, Password: fleetPassword})}
	}
	return &fleetRedis{single: redisbed.Start(t, redisbed.Options{Password: fleetPassword})}
}

// url is limits.store's URL: the server, or every node of the Cluster as
// seeds (several hosts make a Cluster).
func (f *fleetRedis) url() string {
	if f.single != nil {
		return "redis://" + f.single.Addr + "/0"
	}
	return "redis://" + strings.Join(f.cluster.Addrs(), ",") + "/0"
}

// node returns the server that holds Redis key k now.
func (f *fleetRedis) node(t testing.TB, k string) *redisbed.Server {
	t.Helper()
	if f.single != nil {
		return f.single
	}
	return f.cluster.MasterOf(t, k)
}

// liveLeases counts the leases of throttle name (keyed by the route
// "relay") that have not expired, on Redis's clock, as the store's
// scripts see them.
func (f *fleetRedis) liveLeases(t testing.TB, name string) int64 {
	t.Helper()
	leases := fleetKey(name) + ":l"
	c := f.node(t, leases).Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	n, err := c.ZCount(ctx, leases, "("+strconv.FormatInt(now.UnixMilli(), 10), "+inf").Result()
	if err != nil {
		t.Fatalf("ZCOUNT %q: %v", leases, err)
	}
	return n
}

// fleetKey is the hash tag that starts the Redis keys of throttle name
// for the route "relay" (the store's default prefix; the engine's key is
// the name, a NUL, and the key value).
func fleetKey(name string) string { return "{postern:throttle:" + name + ":relay}" }

// fleetLimits is a policy's limits: one throttle name keyed by the route,
// with limit (a YAML line), counted in the Redis at url (extra: more lines
// of limits.store), its password from $POSTERN_FLEET_REDIS_PASSWORD.
func fleetLimits(name, limit, url, extra, onErr string) string {
	return "limits:\n  throttles:\n    - name: " + name + "\n      key: [route]\n      " + limit + "\n" +
		"  store:\n    url: " + url + "\n    password: {env: " + fleetPasswordEnv + "}\n" + extra +
		"  on-store-error: " + onErr + "\n"
}

// fleetRcpts gives n processes two recipients each, in one domain (one
// group, one slot), named after prefix and the process.
func fleetRcpts(prefix string, n int) [][]string {
	out := make([][]string, n)
	for i := range out {
		out[i] = []string{fmt.Sprintf("%s%da@dest.test", prefix, i), fmt.Sprintf("%s%db@dest.test", prefix, i)}
	}
	return out
}

// newFleetEngine makes an engine of the policy in dir whose Redis store
// is made as the engine makes it from limits.store, but with a lease TTL
// of fleetLeaseTTL (and the password given here: parallel tests cannot
// set the environment).
func newFleetEngine(t testing.TB, dir string) *engine.Engine {
	t.Helper()
	set, err := policies.LoadFile(filepath.Join(dir, "policy.yaml"), policies.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := throttle.ParseURL(set.Limits.Store)
	if err != nil {
		t.Fatal(err)
	}
	o.Cluster = o.Cluster || set.Limits.StoreCluster
	o.Password = fleetPassword
	o.LeaseTTL, o.Timeout = fleetLeaseTTL, time.Second
	store, err := throttle.NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	eng, err := engine.New(set, engine.Options{Throttles: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

// fleetDeliver delivers sendMessage to rcpt with eng.
func fleetDeliver(t testing.TB, eng *engine.Engine, rcpt string) engine.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := eng.Deliver(ctx, engine.Message{From: "alice@sender.test", To: []string{rcpt}}, bytes.NewReader([]byte(sendMessage)))
	if err != nil || len(res) != 1 {
		t.Fatalf("Deliver to %s: %v, %d results", rcpt, err, len(res))
	}
	return res[0]
}

// fleetProc is a process of the fleet, or the lease holder.
type fleetProc struct {
	cmd       *exec.Cmd
	out, errb bytes.Buffer
	done      chan struct{} // closed when it has exited
	err       error         // of Wait
}

// startFleetProc starts argv in dir with env added to the test's, and
// kills it when the test ends if it is still running.
func startFleetProc(t testing.TB, dir string, env []string, argv ...string) *fleetProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	p := &fleetProc{cmd: exec.CommandContext(ctx, argv[0], argv[1:]...), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %v: %v", argv, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

func (p *fleetProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *fleetProc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", p.cmd.Process.Pid, err)
	}
	<-p.done
}

// result waits for the process and returns its exit status and output.
func (p *fleetProc) result(t testing.TB) sendRun {
	t.Helper()
	<-p.done
	r := sendRun{stdout: p.out.String(), stderr: p.errb.String()}
	if p.err != nil {
		if p.cmd.ProcessState == nil || !p.cmd.ProcessState.Exited() {
			t.Fatalf("%v: %v\n%s", p.cmd.Args, p.err, r)
		}
		r.code = p.cmd.ProcessState.ExitCode()
	}
	return r
}

// String is the output so far, for failure messages (after done only:
// the buffers are written by the process's copiers until then).
func (p *fleetProc) String() string {
	if !p.exited() {
		return "(running)"
	}
	return "stdout:\n" + p.out.String() + "stderr:\n" + p.errb.String()
}

// fleetSend is one `postern send --format json` of sendMessage.
type fleetSend struct {
	*fleetProc
	rcpts   []string
	started time.Time
}

func startFleetSend(t testing.TB, dir string, env, rcpts []string) *fleetSend {
	t.Helper()
	argv := []string{posternBinary(t), "send", "-c", "policy.yaml", "--from", "alice@sender.test", "--format", "json"}
	for _, r := range rcpts {
		argv = append(argv, "--to", r)
	}
	started := time.Now()
	return &fleetSend{fleetProc: startFleetProc(t, dir, env, append(argv, "msg.eml")...), rcpts: rcpts, started: started}
}

// wait waits for the process and reads its results, which must be one
// per recipient, in order.
func (s *fleetSend) wait(t testing.TB) fleetOutcome {
	t.Helper()
	o := fleetOutcome{run: s.result(t), rcpts: s.rcpts, started: s.started}
	o.results = decodeSendJSON(t, o.run)
	if len(o.results) != len(s.rcpts) {
		t.Fatalf("%d results for %d recipients:\n%s", len(o.results), len(s.rcpts), o)
	}
	for i, r := range o.results {
		if r.Recipient != s.rcpts[i] {
			t.Fatalf("result %d is for %q, want %q:\n%s", i, r.Recipient, s.rcpts[i], o)
		}
	}
	return o
}

// sendAll runs one process per recipient list, all at once, and waits
// for them all.
func sendAll(t testing.TB, dir string, rcpts [][]string) []fleetOutcome {
	t.Helper()
	return sendAllEnv(t, dir, fleetEnv, rcpts)
}

func sendAllEnv(t testing.TB, dir string, env []string, rcpts [][]string) []fleetOutcome {
	t.Helper()
	procs := make([]*fleetSend, len(rcpts))
	for i, r := range rcpts {
		procs[i] = startFleetSend(t, dir, env, r)
	}
	out := make([]fleetOutcome, len(procs))
	for i, p := range procs {
		out[i] = p.wait(t)
	}
	return out
}

// fleetOutcome is what one process printed.
type fleetOutcome struct {
	run     sendRun
	results []sendResultJSON
	rcpts   []string
	started time.Time
}

func (o fleetOutcome) String() string { return o.run.String() }

// kind sums o up: "delivered" when it exited 0 with every recipient
// delivered; the class when it exited 3 with every recipient temporary
// of that class; otherwise a description that no caller expects.
func (o fleetOutcome) kind() string {
	all := func(ok func(r sendResultJSON) bool) bool {
		return !slices.ContainsFunc(o.results, func(r sendResultJSON) bool { return !ok(r) })
	}
	switch {
	case o.run.code == exitOK && all(func(r sendResultJSON) bool { return r.Status == "delivered" }):
		return "delivered"
	case o.run.code == exitPartial && all(func(r sendResultJSON) bool {
		return r.Status == "temporary" && r.Class != "" && r.Class == o.results[0].Class
	}):
		return o.results[0].Class
	}
	return fmt.Sprintf("unexpected (exit %d)", o.run.code)
}

// wantRetryAfter checks that every result has a retry_after in
// [from, to].
func (o fleetOutcome) wantRetryAfter(t testing.TB, from, to time.Time) {
	t.Helper()
	for _, r := range o.results {
		at, err := time.Parse(time.RFC3339, r.RetryAt)
		if err != nil || at.Before(from.Truncate(time.Second)) || at.After(to) {
			t.Errorf("%s: retry_after %q, want between %s and %s", r.Recipient, r.RetryAt,
				from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
		}
	}
}

// wantSink checks that the receiver got exactly the recipients rcpts,
// each once.
func wantSink(t testing.TB, sink *smtpbed.Sink, rcpts []string) {
	t.Helper()
	var got []string
	for _, m := range sink.Messages(t) {
		for _, a := range m.RcptArgs {
			addr, _, _ := strings.Cut(strings.TrimPrefix(a, "<"), ">")
			got = append(got, addr)
		}
	}
	want := slices.Clone(rcpts)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the receiver got %q, want %q", got, want)
	}
}

// runPostern runs the binary with args in dir, env added.
func runPostern(t testing.TB, dir string, env []string, args ...string) sendRun {
	t.Helper()
	return startFleetProc(t, dir, env, append([]string{posternBinary(t)}, args...)...).result(t)
}

// waitUntil polls cond every 20ms until it holds; the test fails when
// cond returns an error or timeout passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		switch {
		case err != nil:
			t.Fatalf("waiting until %s: %v", what, err)
		case ok:
			return
		case time.Now().After(deadline):
			t.Fatalf("waiting until %s: not after %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
