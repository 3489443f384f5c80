package policytest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
)

// Result is what running a case found.
type Result struct {
	Case     *Case
	Decision *engine.Decision
	// Problems are the facts that did not hold; none means the case
	// passed.
	Problems []Problem
}

// Passed reports whether every fact held.
func (r *Result) Passed() bool { return len(r.Problems) == 0 }

// Problem is one fact that did not hold.
type Problem struct {
	Rcpt string // the recipient whose group it is about; "" for the case
	Host string // the host, for a host fact
	Fact string // the case key: route, starttls, ...
	Got  string
	Want string
	// Trace are the steps that decided the settings behind the fact: the
	// rules that did not match, then the one that gave the value (a
	// rule, else, default or literal), in evaluation order.
	Trace []policies.TraceEntry
}

// Rand is the random source of `postern dry-run --seed n`: the order of
// equal-preference MX hosts repeats for the same n.
func Rand(n uint64) func() uint64 {
	return rand.New(rand.NewPCG(n, n^0x9e3779b97f4a7c15)).Uint64
}

// Run evaluates the case with eng, traced, and checks its facts.
func Run(ctx context.Context, eng *engine.Engine, c *Case) (*Result, error) {
	msg, err := c.Message()
	if err != nil {
		return nil, err
	}
	d, err := eng.Evaluate(ctx, msg, engine.WithTrace(), engine.WithRand(Rand(c.SeedValue())))
	if err != nil {
		return nil, err
	}
	r := &Result{Case: c, Decision: d}
	if c.GroupCount != nil && len(d.Groups) != *c.GroupCount {
		r.Problems = append(r.Problems, Problem{Fact: "group_count", Got: strconv.Itoa(len(d.Groups)), Want: strconv.Itoa(*c.GroupCount)})
	}
	for i := range c.Groups {
		r.Problems = append(r.Problems, c.Groups[i].check(d)...)
	}
	return r, nil
}

// checker collects the problems of one group.
type checker struct {
	rcpt, host string
	g          *engine.Group
	problems   []Problem
}

// fact compares got with want (when want is set) and records a problem
// traced to settings.
func (k *checker) fact(name string, got, want any, settings ...string) {
	if reflect.DeepEqual(got, want) {
		return
	}
	k.problems = append(k.problems, Problem{Rcpt: k.rcpt, Host: k.host, Fact: name, Got: show(got), Want: show(want),
		Trace: decided(k.g, k.rcpt, k.host, settings)})
}

func str[T ~string](k *checker, name string, got T, want *string, settings ...string) {
	if want != nil {
		k.fact(name, string(got), *want, settings...)
	}
}

func flag(k *checker, name string, got bool, want *bool, settings ...string) {
	if want != nil {
		k.fact(name, got, *want, settings...)
	}
}

func num(k *checker, name string, got int, want *int, settings ...string) {
	if want != nil {
		k.fact(name, got, *want, settings...)
	}
}

func list(k *checker, name string, got, want []string, settings ...string) {
	if want != nil {
		if got == nil {
			got = []string{}
		}
		k.fact(name, got, want, settings...)
	}
}

// show renders a value as cases files write it.
func show(v any) string {
	if l, ok := v.([]string); ok {
		quoted := make([]string, len(l))
		for i, s := range l {
			quoted[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// tlsSettings decide whether TLS is required and how the certificate is
// verified.
var tlsSettings = []string{"tls.starttls", "tls.dane", "tls.mta-sts", "tls.allow-invalid-certs"}

// check compares the facts with the group holding f.Rcpt.
func (f *Facts) check(d *engine.Decision) []Problem {
	var g *engine.Group
	for _, x := range d.Groups {
		if slices.Contains(x.Recipients, f.Rcpt) {
			g = x
		}
	}
	if g == nil {
		return []Problem{{Rcpt: f.Rcpt, Fact: "group", Got: "none", Want: "a group holding " + f.Rcpt}}
	}
	k := &checker{rcpt: f.Rcpt, g: g}
	str(k, "route", g.Route.Name, f.Route, "routing.route")
	str(k, "route_type", g.Route.Type, f.RouteType, "routing.route")
	str(k, "outcome", g.Outcome, f.Outcome, "routing.route")
	if f.ErrorClass != nil || f.Temporary != nil {
		if g.Error == nil {
			k.fact("error_class", "no error", "an error", "routing.route")
		} else {
			str(k, "error_class", g.Error.Class, f.ErrorClass, "routing.route")
			flag(k, "temporary", g.Error.Temporary, f.Temporary, "routing.route")
		}
	}
	list(k, "recipients", g.Recipients, f.Recipients, "routing.route", "limits.recipients")
	if f.Relay != nil {
		k.fact("relay", g.Route.Address+":"+strconv.Itoa(g.Route.Port), *f.Relay, "routing.route")
	}
	str(k, "protocol", g.Route.Protocol, f.Protocol, "routing.route")
	flag(k, "implicit_tls", g.Route.ImplicitTLS, f.ImplicitTLS, "routing.route")
	if f.Secret != nil {
		got := ""
		if g.Route.Auth != nil {
			got = g.Route.Auth.Secret
		}
		k.fact("secret", got, *f.Secret, "routing.route")
	}
	str(k, "mta_sts", g.MTASTS.Setting, f.MTASTS, "tls.mta-sts")
	str(k, "mta_sts_record", g.MTASTS.Record, f.MTASTSRecord, "tls.mta-sts")
	if f.MTASTSMode != nil {
		mode := ""
		if g.MTASTS.Policy != nil {
			mode = g.MTASTS.Policy.Mode
		}
		k.fact("mta_sts_mode", mode, *f.MTASTSMode, "tls.mta-sts")
	}
	var hosts, skipped []string
	for _, h := range g.Hosts {
		hosts = append(hosts, h.Name)
		if h.Skipped != nil {
			skipped = append(skipped, h.Name)
		}
	}
	list(k, "hosts", hosts, f.Hosts, "routing.route", "limits.mx")
	list(k, "skipped", skipped, f.Skipped, "tls.dane", "tls.mta-sts", "ip-strategy.refuse-private")
	var throttles []string
	keys := map[string]string{}
	for _, th := range g.Throttles {
		throttles = append(throttles, th.Name)
		if _, ok := keys[th.Name]; !ok {
			keys[th.Name] = th.Key
		}
	}
	list(k, "throttles", throttles, f.Throttles, "limits.throttles")
	for _, name := range slices.Sorted(maps.Keys(f.ThrottleKeys)) {
		k.fact("throttle_keys."+name, keys[name], f.ThrottleKeys[name], "limits.throttles."+name)
	}
	num(k, "limits_mx", g.Limits.MX, f.LimitsMX, "limits.mx")
	num(k, "limits_recipients", g.Limits.Recipients, f.LimitsRecipients, "limits.recipients")
	num(k, "lookups", len(g.Lookups), f.Lookups)
	return append(k.problems, f.checkHost(g)...)
}

// hasHostFacts reports whether f checks anything about a host.
func (f *Facts) hasHostFacts() bool {
	return f.Addresses != nil || f.IPLookup != nil || f.MXSecure != nil || f.STARTTLS != nil || f.DANE != nil ||
		f.DANEActive != nil || f.TLSRequired != nil || f.Verify != nil || f.MinVersion != nil || f.AllowInvalidCerts != nil ||
		f.MessagesPerConnection != nil || f.EHLO != nil || f.Sources != nil
}

// checkHost compares the host facts with the chosen host of g.
func (f *Facts) checkHost(g *engine.Group) []Problem {
	if !f.hasHostFacts() {
		return nil
	}
	var h *engine.Host
	for _, x := range g.Hosts {
		if (f.Host == "" && x.Skipped == nil) || x.Name == f.Host {
			h = x
			break
		}
	}
	if h == nil {
		want := "a host not skipped"
		if f.Host != "" {
			want = "host " + f.Host
		}
		return []Problem{{Rcpt: f.Rcpt, Fact: "host", Got: show(hostNames(g)), Want: want, Trace: decided(g, f.Rcpt, "", []string{"routing.route", "limits.mx"})}}
	}
	k := &checker{rcpt: f.Rcpt, host: h.Name, g: g}
	if f.Addresses != nil {
		addrs := []string{}
		for _, a := range h.Addresses {
			addrs = append(addrs, a.String())
		}
		k.fact("addresses", addrs, f.Addresses, "ip-strategy.lookup", "limits.multihomed", "ip-strategy.refuse-private")
	}
	str(k, "ip_lookup", h.IPLookup, f.IPLookup, "ip-strategy.lookup")
	flag(k, "mx_secure", h.Secure, f.MXSecure)
	str(k, "starttls", h.TLS.STARTTLS, f.STARTTLS, "tls.starttls")
	str(k, "dane", h.TLS.DANE, f.DANE, "tls.dane")
	flag(k, "dane_active", h.TLS.DANEState.Active, f.DANEActive, "tls.dane")
	flag(k, "tls_required", h.TLS.Required, f.TLSRequired, tlsSettings...)
	str(k, "verify", h.TLS.Verify, f.Verify, tlsSettings...)
	str(k, "min_version", h.TLS.MinVersion, f.MinVersion, "tls.min-version")
	flag(k, "allow_invalid_certs", h.TLS.AllowInvalidCerts, f.AllowInvalidCerts, "tls.allow-invalid-certs")
	num(k, "messages_per_connection", h.MessagesPerConnection, f.MessagesPerConnection, "limits.messages-per-connection")
	ehlo, sources := []string{}, []string{}
	for _, c := range h.Connections {
		ehlo = append(ehlo, c.EHLOHostname)
		src := ""
		if c.SourceIP != nil {
			src = c.SourceIP.String()
		}
		sources = append(sources, src)
	}
	list(k, "ehlo", ehlo, f.EHLO, "hostname", "ip-strategy.ehlo-hostname")
	list(k, "sources", sources, f.Sources, "ip-strategy.source-ips", "ip-strategy.source-ipv4", "ip-strategy.source-ipv6")
	return k.problems
}

func hostNames(g *engine.Group) []string {
	names := []string{}
	for _, h := range g.Hosts {
		names = append(names, h.Name)
	}
	return names
}

// decided returns the trace steps of g that decided one of settings (a
// name, or a prefix ending before a dot: "limits.throttles" covers
// limits.throttles.NAME.match) for rcpt, for the group, and — when host is set — for
// host and its addresses: the rules that did not match, and the step that
// gave the value.
func decided(g *engine.Group, rcpt, host string, settings []string) []policies.TraceEntry {
	if len(settings) == 0 {
		return nil
	}
	var out []policies.TraceEntry
	for _, e := range g.Trace {
		if !about(e.Context, rcpt, host) || !covers(settings, e.Setting) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// about reports whether a trace context concerns rcpt's group, or host.
func about(context, rcpt, host string) bool {
	switch {
	case context == "rcpt "+rcpt, strings.HasPrefix(context, "group "):
		return true
	case host == "":
		return false
	}
	return context == "host "+host || strings.HasSuffix(context, " of "+host)
}

func covers(settings []string, setting string) bool {
	for _, s := range settings {
		if setting == s || strings.HasPrefix(setting, s+".") {
			return true
		}
	}
	return false
}
