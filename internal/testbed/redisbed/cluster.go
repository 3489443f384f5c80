package redisbed

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern-mta/postern/internal/testbed"
)

// ClusterOptions configure [StartCluster].
type ClusterOptions struct {
	// Masters is the number of masters; 0 means 3, the fewest
	// `redis-cli --cluster create` accepts.
	Masters int
	// Replicas is the number of replicas of each master (0: none).
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before it is failed over; 0 means 1s.
	NodeTimeout time.Duration
	// Password is required from clients and used between nodes.
	Password string
}

// Cluster is a running Redis Cluster.
type Cluster struct {
	// Nodes are all the servers, masters and replicas; which is which
	// can change (failover): ask [Cluster.MasterOf].
	Nodes []*Server
}

// StartCluster starts the nodes, joins them with `redis-cli --cluster
// create` (slots spread evenly over the masters) and waits until every
// node reports the cluster healthy.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	cli := testbed.Require(t, "redis-cli")
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = time.Second
	}
	c := &Cluster{}
	for range o.Masters * (1 + o.Replicas) {
		// The bus port is chosen too: the default (port+10000) may be
		// taken or out of range.
		bus := testbed.FreePort(t, "127.0.0.1")
		args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
			"--cluster-port", strconv.Itoa(bus),
			// Replicas sync at once instead of after the default 5s.
			"--repl-diskless-sync-delay", "0"}
		if o.Password != "" {
			args = append(args, "--masterauth", o.Password)
		}
		c.Nodes = append(c.Nodes, start(t, Options{Password: o.Password}, args))
	}
	argv := append([]string{"--cluster", "create"}, c.Addrs()...)
	argv = append(argv, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")
	if o.Password != "" {
		argv = append(argv, "-a", o.Password, "--no-auth-warning")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, argv...).CombinedOutput(); err != nil {
		t.Fatalf("redisbed: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t)
	return c
}

// Addrs returns the addresses of all nodes, a seed list for clients.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return a
}

// running returns the nodes whose process is alive.
func (c *Cluster) running() []*Server {
	var r []*Server
	for _, n := range c.Nodes {
		if !n.Proc.Exited() {
			r = append(r, n)
		}
	}
	return r
}

// WaitHealthy waits until every running node sees all slots served by
// running masters (so a killed master has been failed over) and every
// running replica is in sync with its master.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	running := c.running()
	for _, n := range running {
		cl := n.Client(t)
		testbed.WaitFor(t, n.Proc, 60*time.Second, func(ctx context.Context) error {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if v, _ := InfoField(info, "cluster_state"); v != "ok" {
				return fmt.Errorf("%s: cluster_state %q", n.Addr, v)
			}
			shards, err := cl.ClusterShards(ctx).Result()
			if err != nil {
				return err
			}
			for _, sh := range shards {
				addr := shardMaster(sh)
				if len(sh.Slots) > 0 && !slices.ContainsFunc(running, func(s *Server) bool { return s.Addr == addr }) {
					return fmt.Errorf("%s: slots %v not served by a running master", n.Addr, sh.Slots)
				}
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if role, _ := InfoField(repl, "role"); role == "slave" {
				if v, _ := InfoField(repl, "master_link_status"); v != "up" {
					return fmt.Errorf("%s: replica link %q", n.Addr, v)
				}
			}
			return nil
		})
	}
}

// Slot returns the hash slot of key.
func (c *Cluster) Slot(t testing.TB, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slot, err := c.running()[0].Client(t).ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("redisbed: CLUSTER KEYSLOT %q: %v", key, err)
	}
	return int(slot)
}

// MasterOf returns the node serving key's slot now, as the running nodes
// see it.
func (c *Cluster) MasterOf(t testing.TB, key string) *Server {
	t.Helper()
	slot := c.Slot(t, key)
	// Right after a failover the node asked may not know the new master
	// yet (the shard shows none): ask again, for a while.
	for deadline := time.Now().Add(15 * time.Second); ; {
		addr, served := c.masterAddr(t, slot)
		if !served {
			t.Fatalf("redisbed: slot %d of %q is not served", slot, key)
		}
		for _, n := range c.Nodes {
			if addr != "" && n.Addr == addr {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redisbed: slot %d is served by %q, not a running node of this cluster", slot, addr)
		}
		time.Sleep(100 * time.Millisecond) // polling the cluster's own view, not synchronising
	}
}

// masterAddr is the address of the master serving slot, as a running
// node sees it ("" when it sees none), and whether any shard serves it.
func (c *Cluster) masterAddr(t testing.TB, slot int) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shards, err := c.running()[0].Client(t).ClusterShards(ctx).Result()
	if err != nil {
		t.Fatalf("redisbed: CLUSTER SHARDS: %v", err)
	}
	for _, sh := range shards {
		if slices.ContainsFunc(sh.Slots, func(r redis.SlotRange) bool { return int64(slot) >= r.Start && int64(slot) <= r.End }) {
			return shardMaster(sh), true
		}
	}
	return "", false
}

// Masters returns the running nodes that are masters now.
func (c *Cluster) Masters(t testing.TB) []*Server {
	t.Helper()
	var m []*Server
	for _, n := range c.running() {
		if role, _ := InfoField(n.infoSection(t, "replication"), "role"); role == "master" {
			m = append(m, n)
		}
	}
	return m
}

// shardMaster returns the address of a shard's healthy master, or "".
func shardMaster(sh redis.ClusterShard) string {
	for _, n := range sh.Nodes {
		if n.Role == "master" && n.Health == "online" {
			return testbed.Addr(n.IP, int(n.Port))
		}
	}
	return ""
}
