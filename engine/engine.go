package engine

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/engine/throttle"
	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/dns"
	"github.com/postern-mta/postern/transport/mtasts"
)

// Options are the seams an embedding MTA (or a test) sets. The zero value
// is usable: the policy's own resolver, the real clock, no logging, random
// shuffling.
type Options struct {
	// Resolver answers every DNS question. Nil means the resolver the
	// policy's dns: block describes (built when the policy is loaded or
	// reloaded).
	Resolver dns.Resolver
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// IsLocalDomain answers is_local_domain(); nil means the policy's
	// local-domains. It receives a lower-case domain without trailing dot.
	IsLocalDomain func(domain string) bool
	// IsLocalAddress answers is_local_address(); nil means false.
	IsLocalAddress func(address string) bool
	// Rand returns random numbers for shuffling MX hosts of equal
	// preference and spreading source addresses. It must be safe for
	// concurrent use. Nil means math/rand/v2. A dry-run with --seed
	// passes a seeded source so results repeat.
	Rand func() uint64
	// Hostname is the default of the policy's hostname setting; empty
	// means the machine's host name.
	Hostname string

	// Throttles counts limits.throttles; nil means the store the policy's
	// limits.store describes: in this process (memory), or in Redis,
	// shared by a fleet (throttle.Redis).
	Throttles throttle.Store
	// Dialer opens delivery connections; nil means the operating system's.
	Dialer transport.Dialer
	// RootCAs verifies server certificates; nil means the system roots.
	RootCAs *x509.CertPool
	// Parallel bounds the groups of one message delivered at once; zero
	// means 8.
	Parallel int
	// Metrics records what the engine does (package engine/metrics: built
	// with metrics.New on the embedder's prometheus.Registerer); nil
	// records nothing.
	Metrics *metrics.Metrics
	// OnAttempt, when set, is called after each delivery of a group with
	// each connection attempt it made and how it ended, in order. It runs
	// on the delivering goroutine, before Deliver returns: keep it quick.
	OnAttempt func(AttemptInfo)
	// MTASTSCache is the directory where fetched MTA-STS policies are
	// kept across restarts (RFC 8461 section 5.1); empty means the
	// policy's tls.mta-sts-cache, and when that is empty too, policies
	// are kept in memory only.
	MTASTSCache string

	// SelfAddresses are the addresses this MTA listens on (a relay's
	// listeners). A delivery to one of them fails permanently as a loop
	// (class loop, 554 5.4.6) without connecting; an unspecified address
	// (0.0.0.0 or ::) stands for every address of this machine on its
	// port. Empty means no check.
	SelfAddresses []netip.AddrPort
	// SelfNames are the names this MTA greets with. A server whose
	// greeting or EHLO reply gives one of them is this MTA itself: the
	// delivery fails permanently as a loop (Postfix's "loops back to
	// myself"). Empty means no check.
	SelfNames []string
}

// Engine makes delivery decisions from a compiled policy. It is safe for
// concurrent use; [Engine.Reload] swaps the policy atomically, and work in
// flight finishes with the policy it started with.
type Engine struct {
	opts   Options
	state  atomic.Pointer[state]
	client *transport.Client
	stores throttleStores
	// clockSet: Options.Clock was given (the in-memory throttle store
	// then uses it; otherwise its faster monotonic clock).
	clockSet bool

	stsMu     sync.Mutex
	stsCaches map[string]*mtasts.Cache // by directory ("" in memory), kept across reloads
}

// state is one loaded policy with what evaluating it needs.
type state struct {
	set      *policies.Set
	resolver dns.Resolver
	funcs    expr.Funcs
	pool     sync.Pool // *evaluator
	// conn holds the connection-phase settings when none depends on the
	// connection (see constConnection); nil otherwise.
	conn *connConst
	// sts decides MTA-STS policies (RFC 8461); stsFromFiles is set when
	// they come from resolver: static's policy files.
	sts          *mtasts.Source
	stsFromFiles bool
	// warnings are the engine's own warnings about the policy (see
	// Engine.Warnings).
	warnings []*policies.Warning
	// throttles counts the policy's limits.throttles.
	throttles throttle.Store
}

// evaluator is what one goroutine needs to evaluate settings: a VM and an
// environment, reused through the state's pool.
type evaluator struct {
	vm  expr.VM
	env expr.Env
	// pcg is the random source of the group being decided, seeded for
	// each (rand is its Uint64).
	pcg  rand.PCG
	rand func() uint64
	// plans is scratch space for the hosts of the group being decided.
	plans []hostPlan
}

// LoadFile loads the policy at path and returns an engine for it. Policy
// errors come back as a [policies.ErrorList].
func LoadFile(path string, opts Options) (*Engine, error) {
	set, err := policies.LoadFile(path, policyOptions(opts))
	if err != nil {
		return nil, err
	}
	return New(set, opts)
}

// New returns an engine for a loaded policy.
func New(set *policies.Set, opts Options) (*Engine, error) {
	e := &Engine{opts: opts}
	if e.opts.Clock == nil {
		e.opts.Clock = time.Now
	} else {
		e.clockSet = true
	}
	if e.opts.Logger == nil {
		e.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if e.opts.Rand == nil {
		e.opts.Rand = rand.Uint64
	}
	dialer := e.opts.Dialer
	if e.opts.Metrics != nil {
		if dialer == nil {
			dialer = transport.NetDialer{}
		}
		dialer = countingDialer{Dialer: dialer, m: e.opts.Metrics}
	}
	if len(e.opts.SelfAddresses) > 0 {
		dialer = selfDialer{Dialer: dialer, self: e.opts.SelfAddresses}
	}
	e.client = &transport.Client{Dialer: dialer, RootCAs: e.opts.RootCAs, Logger: e.opts.Logger, SelfNames: e.opts.SelfNames}
	e.opts.Metrics.PoolSize(e.client.Idle)
	if err := e.Reload(set); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload replaces the policy. Evaluations already running keep the policy
// they started with. On error the old policy stays in force. Either way
// Options.Metrics counts it.
func (e *Engine) Reload(set *policies.Set) error {
	err := e.reload(set)
	e.opts.Metrics.Reload(err == nil, e.opts.Clock())
	return err
}

func (e *Engine) reload(set *policies.Set) error {
	if set == nil {
		return errors.New("engine: Reload with a nil policy")
	}
	s := &state{set: set, resolver: e.opts.Resolver}
	store, err := e.storeFor(set)
	if err != nil {
		return err
	}
	s.throttles = store
	if s.resolver == nil {
		r, err := NewResolver(set)
		if err != nil {
			return err
		}
		s.resolver = r
	}
	s.conn = constConnection(set)
	if err := e.mtaSTSSource(s); err != nil {
		return err
	}
	s.warnings = resolverWarnings(set, s.resolver)
	s.funcs = set.Library().Funcs(expr.Hooks{IsLocalDomain: e.opts.IsLocalDomain, IsLocalAddress: e.opts.IsLocalAddress})
	s.pool.New = func() any {
		ev := &evaluator{env: expr.Env{Funcs: s.funcs}}
		ev.rand = ev.pcg.Uint64
		return ev
	}
	e.state.Store(s)
	if c, ok := s.resolver.(interface{ Stats() dns.Stats }); ok {
		e.opts.Metrics.DNSCache(func() metrics.DNSStats { return metrics.DNSStats(c.Stats()) })
	} else {
		e.opts.Metrics.DNSCache(nil)
	}
	e.opts.Logger.Info("policy loaded", "file", set.File, "warnings", len(set.Warnings))
	return nil
}

// Warnings returns the engine's warnings about the policy in force, beside
// the policy's own (policies.Set.Warnings): what the policy asks that the
// machine's setup cannot give, such as tls.dane require with a resolver
// that does not validate DNSSEC.
func (e *Engine) Warnings() []*policies.Warning { return e.state.Load().warnings }

// Close closes the idle delivery connections the engine keeps for reuse,
// and the throttle stores it made (a Redis store releases the slots it
// still holds).
func (e *Engine) Close() error {
	e.closeStores()
	return e.client.Close()
}

// Policy returns the policy in force.
func (e *Engine) Policy() *policies.Set { return e.state.Load().set }

// Resolver returns the resolver of the policy in force.
func (e *Engine) Resolver() dns.Resolver { return e.state.Load().resolver }

// NewResolver builds the resolver a policy's dns: block describes. For
// resolver: static it reads the zone file (a regular file within
// limits.max-file-size); a zone that cannot be used is a
// [policies.ErrorList] positioned at dns.zone-file, whose message gives the
// position in the zone file and the kind of problem, never the file's
// content.
func NewResolver(set *policies.Set) (dns.Resolver, error) {
	cfg := resolverConfig(set)
	r, err := dns.New(cfg)
	if err != nil {
		at := set.DNS.ZoneFileAt
		setting := "dns.zone-file"
		if cfg.Kind != dns.KindStatic || at.Line == 0 {
			setting = "dns"
			at = policies.Pos{File: set.File}
		}
		return nil, policies.ErrorList{{File: at.File, Line: at.Line, Column: at.Column, Setting: setting, Message: err.Error(), Err: err}}
	}
	return r, nil
}

// resolverConfig is the resolver configuration of a policy's dns: block:
// every value as the policy gives it (its defaults included), with two
// translations, both of the policy format's words into the dns package's:
// with resolver: system, a timeout or attempts the policy does not write
// is left zero, so that resolv.conf's options apply; and negative-ttl 0s
// ("not cached") is a negative NegativeTTL.
func resolverConfig(set *policies.Set) dns.Config {
	c := set.DNS
	cfg := dns.Config{Kind: dns.Kind(c.Resolver), Servers: c.Servers, ZoneFile: c.ZoneFile,
		ZoneFileMaxSize: set.Limits.MaxFileSize, Secure: c.Secure, Timeout: c.Timeout, Attempts: c.Attempts,
		Concurrency: c.Concurrency, TCPOnError: c.TCPOnError, EDNS: c.EDNS, DNSSEC: c.DNSSEC,
		Cache: dns.CacheConfig{Size: c.Cache.Size, MinTTL: c.Cache.MinTTL, MaxTTL: c.Cache.MaxTTL, NegativeTTL: c.Cache.NegativeTTL}}
	if cfg.Kind == dns.KindSystem {
		if !c.TimeoutSet {
			cfg.Timeout = 0
		}
		if !c.AttemptsSet {
			cfg.Attempts = 0
		}
	}
	if c.Cache.NegativeTTL == 0 {
		cfg.Cache.NegativeTTL = -1
	}
	return cfg
}

// EvalOption changes how [Engine.Evaluate] works.
type EvalOption func(*evalConfig)

type evalConfig struct {
	trace bool
	noDNS bool
	rand  func() uint64
	// domainSeed, when set, seeds each group from the group's domain
	// (WithDomainSeed) instead of from rand in group order.
	domainSeed    uint64
	domainSeeding bool
}

// WithTrace records every rule evaluated (and every DNS lookup) in the
// decision, for dry-runs. It costs allocations; delivery does not use it.
func WithTrace() EvalOption { return func(c *evalConfig) { c.trace = true } }

// WithoutDNS stops before any DNS lookup: the decision has the
// recipient-phase settings only (`postern dry-run --no-dns`).
func WithoutDNS() EvalOption { return func(c *evalConfig) { c.noDNS = true } }

// WithRand replaces the engine's random source for this evaluation (a
// dry-run's --seed).
func WithRand(r func() uint64) EvalOption { return func(c *evalConfig) { c.rand = r } }

// WithDomainSeed seeds the random source of each group from n and the
// group's recipient domain, not from the message's source in group order.
// Two evaluations with the same n then order a domain's equal-preference
// MX hosts (and spread its source addresses) the same way, whatever the
// other groups of the message are: `postern diff` compares two policies
// so, and an edit that changes one group's route does not reshuffle the
// others.
func WithDomainSeed(n uint64) EvalOption {
	return func(c *evalConfig) { c.domainSeed, c.domainSeeding = n, true }
}

// Evaluate decides, for every recipient of msg, the route and everything up
// to (not including) connecting: groups of recipients, MX hosts in the
// order they would be tried, their addresses, and the TLS and connection
// settings of each. It returns an error only for a message it cannot
// consider at all (no recipients, a context already done); every problem of
// a recipient is reported in its group's outcome.
func (e *Engine) Evaluate(ctx context.Context, msg Message, opts ...EvalOption) (*Decision, error) {
	var cfg evalConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.rand == nil {
		cfg.rand = e.opts.Rand
	}
	if len(msg.To) == 0 {
		return nil, errors.New("engine: message has no recipients")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	start := time.Now()
	d := e.evaluate(ctx, e.state.Load(), &msg, cfg)
	e.opts.Metrics.Evaluation(time.Since(start).Seconds())
	return d, nil
}

// evaluate decides msg with the policy state s. Its DNS lookups share one
// budget, dns.budget, besides ctx's own deadline.
func (e *Engine) evaluate(ctx context.Context, s *state, msg *Message, cfg evalConfig) *Decision {
	ev := s.pool.Get().(*evaluator)
	defer s.pool.Put(ev)
	ev.vm.SetContext(ctx)
	r := &run{e: e, s: s, ev: ev, cfg: cfg, ctx: ctx, msg: msg, budget: &dnsBudget{parent: ctx}}
	if s.set.DNS.Budget > 0 {
		r.budget.deadline = time.Now().Add(s.set.DNS.Budget) // contexts run on the real clock
		if d, ok := ctx.Deadline(); ok && d.Before(r.budget.deadline) {
			r.budget.deadline = time.Time{} // the caller's deadline comes first
		}
	}
	defer r.budget.release()
	return r.decide()
}
