package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// dnsBudget is the context of an evaluation's network DNS lookups: the
// caller's, with the deadline dns.budget sets from the start of the
// evaluation. It is made on the first lookup that goes to the network
// (answers from memory need none).
type dnsBudget struct {
	parent   context.Context
	deadline time.Time // zero: no budget

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

// context returns the budget's context, making it on first use.
func (b *dnsBudget) context() context.Context {
	if b.deadline.IsZero() {
		return b.parent
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithDeadlineCause(b.parent, b.deadline, errDNSBudget)
	}
	return b.ctx
}

// spent reports whether the budget ran out.
func (b *dnsBudget) spent() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ctx != nil && b.ctx.Err() != nil && context.Cause(b.ctx) == errDNSBudget
}

// release frees the budget's timer.
func (b *dnsBudget) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
	}
}

// errDNSBudget is the cause of the DNS context of an evaluation whose DNS
// budget ran out.
var errDNSBudget = errors.New("the DNS budget of the evaluation (dns.budget) is used up")

// netLookups are DNS lookups running in goroutines of their own (the
// questions that go to the network, asked together). A panic in one (a
// bug in an embedder's Resolver) is caught there and raised again by wait,
// in the evaluating goroutine, where the group's recovery turns it into a
// deferred group: it never takes the process down. Callers also wait on
// their way out of a panic of their own, so that no lookup is left
// writing into the evaluator's scratch space after it is reused.
type netLookups struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	panicked any
}

// start runs f in a goroutine.
func (n *netLookups) start(f func()) {
	n.wg.Go(func() {
		defer func() {
			if v := recover(); v != nil {
				n.mu.Lock()
				if n.panicked == nil {
					n.panicked = v
				}
				n.mu.Unlock()
			}
		}()
		f()
	})
}

// wait waits for every lookup, and panics with the first lookup's panic.
// A nil *netLookups has nothing to wait for.
func (n *netLookups) wait() {
	if n == nil {
		return
	}
	n.wg.Wait()
	if n.panicked != nil {
		panic(n.panicked)
	}
}

// drain waits for every lookup, ignoring panics: for a caller that is
// panicking already.
func (n *netLookups) drain() {
	if n != nil {
		n.wg.Wait()
	}
}

// immediate reports whether the resolver answers the question from memory
// (a zone file, a fresh cache entry). Such a question is asked inline;
// the others go to the network, each in a goroutine, so that they are
// asked together, under the DNS budget. (Should a cache entry expire
// between the two calls, that one question goes to the network without
// the budget, bounded by the resolver's own timeouts.)
func (r *run) immediate(name, typ string) bool {
	imm, ok := r.s.resolver.(dns.Immediate)
	return ok && imm.Immediate(name, typ)
}

// dnsError says so when err comes from the evaluation's DNS budget running
// out (the error stays a temporary dns.Error for errors.Is).
func (r *run) dnsError(err error) error {
	if err == nil || !r.budget.spent() {
		return err
	}
	return fmt.Errorf("%w (%s: %s)", err, errDNSBudget, policies.FormatDuration(r.s.set.DNS.Budget))
}

// lookupAddr asks for the addresses of p's host of its k-th family.
func (r *run) lookupAddr(ctx context.Context, p *hostPlan, k int) {
	var res dns.AddrResult
	var err error
	if p.families[k] == "A" {
		res, err = r.s.resolver.LookupA(ctx, p.h.Name)
	} else {
		res, err = r.s.resolver.LookupAAAA(ctx, p.h.Name)
	}
	p.addrs[k] = addrResult{res, r.dnsError(err)}
}

// lookupTLSA asks p's k-th TLSA question.
func (r *run) lookupTLSA(ctx context.Context, p *hostPlan, k int) {
	t := &p.tlsa[k]
	t.res, t.err = r.s.resolver.LookupTLSA(ctx, t.name)
	t.err = r.dnsError(t.err)
}
