package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/internal/safefile"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
	"github.com/postern-mta/postern/transport/mtasts"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// stsLookup is a domain's MTA-STS record lookup and policy decision,
// running while the MX lookup runs.
type stsLookup struct {
	name    string // _mta-sts.DOMAIN
	lookups netLookups
	txt     dns.TXTResult
	txtErr  error
	rec     mtasts.Record
	recText string // the STSv1 record, when there is exactly one
	res     mtasts.Result
}

// mtaSTSFromMemory decides domain's MTA-STS policy into l without a
// goroutine when everything it needs is in memory: the TXT record is
// answered at once and the policy needs no fetch (cached, or no record).
// It reports whether it could; the common case, a domain without a record,
// costs no goroutine and no context.
func (r *run) mtaSTSFromMemory(domain string, l *stsLookup) bool {
	l.name = "_mta-sts." + domain
	if !r.immediate(l.name, "TXT") {
		return false
	}
	l.txt, l.txtErr = r.s.resolver.LookupTXT(r.ctx, l.name)
	l.txtErr = r.dnsError(l.txtErr)
	l.rec, l.recText = stsRecord(l.txt, l.txtErr)
	if r.s.sts.NeedsFetch(domain, l.rec) {
		return false
	}
	l.res = r.s.sts.Policy(r.ctx, domain, l.rec)
	return true
}

// startMTASTS looks up domain's MTA-STS record and decides its policy
// (RFC 8461 sections 3 and 5.1) in a goroutine, while the MX lookup runs.
// The wait for a fetch is bounded by timeout (tls.timeouts.mta-sts).
func (r *run) startMTASTS(domain string, timeout time.Duration) *stsLookup {
	l := &stsLookup{name: "_mta-sts." + domain}
	ctx := r.budget.context()
	l.lookups.start(func() {
		l.txt, l.txtErr = r.s.resolver.LookupTXT(ctx, l.name)
		l.txtErr = r.dnsError(l.txtErr)
		l.rec, l.recText = stsRecord(l.txt, l.txtErr)
		fctx := ctx
		if timeout > 0 {
			var cancel context.CancelFunc
			fctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		l.res = r.s.sts.Policy(fctx, domain, l.rec)
	})
	return l
}

// stsRecord reads the TXT answer of _mta-sts.DOMAIN (RFC 8461 section
// 3.1), and returns the record text when there is exactly one.
func stsRecord(txt dns.TXTResult, err error) (mtasts.Record, string) {
	switch {
	case notFound(err):
		return mtasts.Record{Absent: true}, ""
	case err != nil:
		return mtasts.Record{Err: err}, ""
	}
	id, perr := mtasts.ParseRecord(txt.Records)
	if perr != nil {
		return mtasts.Record{Absent: true}, ""
	}
	for _, t := range txt.Records {
		if strings.HasPrefix(t, "v=STSv1") {
			return mtasts.Record{ID: id}, t
		}
	}
	return mtasts.Record{ID: id}, ""
}

// mtaSTS records the domain's MTA-STS state in g and applies
// tls.mta-sts: with require, no usable policy fails the group —
// permanently when the domain publishes none, temporarily when it could
// not be looked up or fetched, or when tls.mta-sts itself failed to
// evaluate (modeErr). It reports whether the group goes on.
func (r *run) mtaSTS(g *Group, l *stsLookup, mode policies.TLSMode, modeErr error) bool {
	recs := l.txt.Records // not l: it stays on the caller's stack
	r.lookup(g, l.name, "TXT", func() []string { return txtAnswer(recs) }, l.txt.Secure, l.txt.Info, l.txtErr)
	st := &g.MTASTS
	st.Record = l.recText
	res := l.res
	if res.Policy != nil {
		p := res.Policy
		source := "network"
		if res.FromCache {
			source = "cache"
		}
		if r.s.stsFromFiles {
			source = "file"
		}
		st.policy = p
		st.Policy = &MTASTSPolicy{ID: res.ID, Mode: string(p.Mode), MX: p.MX, MaxAge: Duration(p.MaxAge), Source: source,
			Age: Duration(max(0, r.e.opts.Clock().Sub(res.Fetched)).Round(time.Second))}
	}
	if res.Err != nil && !errors.Is(res.Err, mtasts.ErrNoRecord) {
		st.Error = res.Err.Error()
		if res.Policy != nil {
			st.Error = "the policy could not be refreshed, the cached one stands in: " + st.Error
		}
		var fe *mtasts.FetchError
		if errors.As(res.Err, &fe) {
			st.failed = fe.TLSResultType()
		}
	}
	if mode != policies.TLSRequire || (res.Policy != nil && res.Policy.Mode != mtasts.None) {
		return true
	}
	switch {
	case modeErr != nil:
		r.failGroup(g, OutcomeDefer, ClassPolicy, "tls.mta-sts failed to evaluate, so MTA-STS is required, and "+g.Domain+" has no usable MTA-STS policy: "+modeErr.Error())
	case res.Policy != nil:
		r.failGroup(g, OutcomeFail, "mta-sts", "tls.mta-sts is require but the MTA-STS policy of "+g.Domain+" has mode none")
	case l.rec.Absent:
		r.failGroup(g, OutcomeFail, "mta-sts", "tls.mta-sts is require but "+g.Domain+" publishes no MTA-STS policy (no single v=STSv1 TXT record at "+l.name+")")
	default:
		r.failGroup(g, OutcomeDefer, "mta-sts", "tls.mta-sts is require and the MTA-STS policy of "+g.Domain+" could not be had: "+res.Err.Error())
		if st.failed == "" {
			st.failed = tlsrpt.STSPolicyFetchError
		}
	}
	return false
}

// mtaSTSSource makes the MTA-STS source of s: policies fetched over HTTPS
// with the policy's own resolver, the engine's dialer and TLS roots, kept
// in the cache of the directory Options.MTASTSCache or tls.mta-sts-cache
// names (in memory when neither does). With a static resolver the
// policies come from the files of dns.mta-sts-policies instead: an
// offline dry-run never touches the network.
func (e *Engine) mtaSTSSource(s *state) error {
	dir := e.opts.MTASTSCache
	if dir == "" {
		dir = s.set.TLS.MTASTSCache
	}
	cache, err := e.stsCache(dir)
	if err != nil {
		return fmt.Errorf("engine: %s: MTA-STS cache: %w", s.set.File, err)
	}
	var fetcher mtasts.PolicyFetcher
	if _, static := s.resolver.(*dns.Static); static {
		fetcher, s.stsFromFiles = fileFetcher(s.set.DNS.MTASTSPolicies), true
		cache = nil // the files are the truth
	} else {
		timeout := policies.DefaultMTASTSTimeout
		if v, ok := s.set.TLS.MTASTSTimeout.Literal(); ok {
			timeout = v
		}
		f := &mtasts.Fetcher{LookupHost: resolverLookupHost(s.resolver), RootCAs: e.opts.RootCAs, Timeout: timeout}
		if e.opts.Dialer != nil {
			f.Dial = e.opts.Dialer.DialContext
		}
		fetcher = f
	}
	if e.opts.Metrics != nil {
		fetcher = countingFetcher{PolicyFetcher: fetcher, m: e.opts.Metrics}
		if cache != nil {
			e.opts.Metrics.MTASTSCache(cache.Len)
		}
	}
	s.sts = &mtasts.Source{Fetcher: fetcher, Cache: cache, Now: e.opts.Clock}
	return nil
}

// countingFetcher counts each MTA-STS policy fetch and how it ended
// (postern_mta_sts_fetches_total).
type countingFetcher struct {
	mtasts.PolicyFetcher
	m *metrics.Metrics
}

// Fetch fetches with the wrapped fetcher and counts the result: ok, or
// the failure's TLS-RPT result type.
func (f countingFetcher) Fetch(ctx context.Context, domain string) (*mtasts.Policy, error) {
	p, err := f.PolicyFetcher.Fetch(ctx, domain)
	result := metrics.FetchOK
	if err != nil {
		result = mtasts.ResultFetchError
		var fe *mtasts.FetchError
		if errors.As(err, &fe) {
			result = fe.TLSResultType()
		}
	}
	f.m.MTASTSFetch(result)
	return p, err
}

// stsCache returns the MTA-STS cache of dir, opening it on first use: one
// per directory for the engine's life, so that a reload keeps what was
// fetched.
func (e *Engine) stsCache(dir string) (*mtasts.Cache, error) {
	e.stsMu.Lock()
	defer e.stsMu.Unlock()
	if c, ok := e.stsCaches[dir]; ok {
		return c, nil
	}
	c, err := mtasts.OpenCache(dir)
	if err != nil {
		return nil, err
	}
	if e.stsCaches == nil {
		e.stsCaches = map[string]*mtasts.Cache{}
	}
	e.stsCaches[dir] = c
	for _, err := range c.Errors() {
		e.opts.Logger.Warn("MTA-STS cache: unreadable entry ignored", "dir", dir, "error", err)
	}
	return c, nil
}

// resolverLookupHost resolves a host name through r: its A, then its AAAA
// records (the MTA-STS policy host is reached with the policy's resolver,
// never the system's). As for MX hosts, addresses a domain's owner should
// never point a sender at — loopback, unspecified, link-local, multicast
// (see refusedTarget) — are dropped: a policy host there would make the
// fetch a request to this machine or its link.
func resolverLookupHost(r dns.Resolver) func(ctx context.Context, host string) ([]netip.Addr, error) {
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		a, errA := r.LookupA(ctx, host)
		aaaa, errAAAA := r.LookupAAAA(ctx, host)
		var out, dropped []netip.Addr
		for _, addr := range append(append([]netip.Addr(nil), a.Addrs...), aaaa.Addrs...) {
			if refusedTarget(addr, false) != "" {
				dropped = append(dropped, addr)
				continue
			}
			out = append(out, addr)
		}
		switch {
		case len(out) > 0:
			return out, nil
		case len(dropped) > 0:
			return nil, fmt.Errorf("%s resolves only to addresses that are never connected to: %v", host, dropped)
		case errA != nil:
			return nil, errA
		case errAAAA != nil:
			return nil, errAAAA
		}
		return nil, fmt.Errorf("%s has no address", host)
	}
}

// fileFetcher serves MTA-STS policies from files, DIR/DOMAIN.txt, for
// resolver: static (offline dry-runs, tests and examples).
type fileFetcher string

// Fetch reads and parses the policy file of domain.
func (f fileFetcher) Fetch(_ context.Context, domain string) (*mtasts.Policy, error) {
	fail := func(typ string, err error) (*mtasts.Policy, error) {
		return nil, &mtasts.FetchError{Type: typ, Domain: domain, Err: err}
	}
	if f == "" {
		return fail(mtasts.ResultFetchError, errors.New("resolver: static has no MTA-STS policy files (dns.mta-sts-policies is not set)"))
	}
	if strings.ContainsAny(domain, `/\`) || strings.HasPrefix(domain, ".") {
		return fail(mtasts.ResultFetchError, fmt.Errorf("%q is not a domain name", domain))
	}
	b, err := safefile.Read(filepath.Join(string(f), domain+".txt"), 64<<10)
	if err != nil {
		return fail(mtasts.ResultFetchError, err)
	}
	p, err := mtasts.ParsePolicy(b)
	if err != nil {
		return fail(mtasts.ResultPolicyInvalid, err)
	}
	return p, nil
}
