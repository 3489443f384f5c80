package engine

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dane"
	"github.com/postern-mta/postern/transport/dns"
	"github.com/postern-mta/postern/transport/mtasts"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// dane decides DANE for p's host from its DNS answers (RFC 7672 section
// 2.2), and records the decision and why in h.TLS.DANEState:
//
//   - tls.dane disable, or a message with TLS-Required: No: no DANE;
//   - the host has no name (an address literal), its MX answer is not
//     DNSSEC-secure (an MX host; section 2.2.1), or its address records
//     are not: no DANE, and with require the host is skipped (see
//     insecure);
//   - the TLSA lookup failed (SERVFAIL, timeout, bogus): the host is
//     skipped, temporarily, whatever the mode: no downgrade (section
//     2.1.1);
//   - no TLSA records, or an insecure TLSA answer: no DANE (require: see
//     insecure);
//   - usable DANE-TA/DANE-EE records: DANE is active, and replaces PKIX;
//   - only unusable records: TLS is still mandatory, without
//     authentication (section 2.2); require skips the host temporarily.
func (r *run) dane(g *Group, p *hostPlan) {
	h, mode := p.h, p.dane
	st := &h.TLS.DANEState
	switch {
	case mode == policies.TLSDisable:
		st.Reason, h.daneWord = "tls.dane is disable", metrics.DANEDisabled
		return
	case r.ignoreTLSPolicy():
		st.Reason, h.daneWord = "the message carries TLS-Required: No (RFC 8689 section 5): recipient TLS policies are not applied", metrics.DANEDisabled
		return
	case p.literal.IsValid():
		r.noDANE(p, "an address literal has no name to hold TLSA records")
		return
	case !p.relay && !p.implicit && !h.Secure:
		r.noDANE(p, "the MX answer is not DNSSEC-secure")
		return
	}
	canon, secure := p.addrSecurity()
	if !secure {
		r.noDANE(p, "the address records of "+h.Name+" are not DNSSEC-secure")
		return
	}
	// The TLSA base domain: the CNAME-expanded name when its records
	// exist, else the host's own name (RFC 7672 section 2.2.2).
	a, base, names := &p.tlsa[0], h.Name, []string{h.Name}
	for k := range p.tlsa {
		t := &p.tlsa[k]
		if t.name != "" {
			r.lookup(g, t.name, "TLSA", func() []string { return tlsaAnswer(t.res.Records) }, t.res.Secure, t.res.Info, t.err)
		}
	}
	if t := &p.tlsa[1]; t.name != "" {
		names = []string{canon, h.Name}
		if !notFound(t.err) {
			a, base = t, canon
		} else {
			names = []string{h.Name, canon}
		}
	}
	if a.name == "" { // not asked: cannot happen with the checks above
		r.noDANE(p, "no TLSA lookup was made")
		return
	}
	switch {
	case notFound(a.err) || (a.err == nil && len(a.res.Records) == 0):
		r.noDANE(p, "no TLSA records at "+a.name)
		h.daneWord = metrics.DANENoRecords
		return
	case a.err != nil:
		st.Reason, h.daneWord = "the TLSA lookup failed: "+a.err.Error(), metrics.DANELookupFailed
		skip(h, true, "dane", "TLSA lookup for %s failed, DANE state unknown (no downgrade, RFC 7672 section 2.1.1): %v", a.name, a.err)
		h.skipTLSRPT = tlsrpt.DNSSECInvalid
		return
	case !a.res.Secure:
		r.noDANE(p, "the TLSA answer at "+a.name+" is not DNSSEC-secure")
		return
	}
	var usable []dane.Record
	for _, t := range a.res.Records {
		rec := dane.Record{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: t.Data}
		info := TLSARecord{Record: rec.String(), Usable: true}
		if err := rec.Usable(); err != nil {
			info.Usable, info.Unusable = false, err.Error()
		} else {
			usable = append(usable, rec)
		}
		st.Records = append(st.Records, info)
	}
	st.Base, st.Names = base, names
	if len(usable) == 0 {
		h.daneWord = metrics.DANEUnusable
		st.Reason = "TLSA records at " + a.name + ", none usable: TLS is required, without authentication (RFC 7672 section 2.2)"
		if mode == policies.TLSRequire {
			skip(h, true, "dane", "tls.dane is require but none of the TLSA records at %s is usable", a.name)
			h.skipTLSRPT = tlsrpt.TLSAInvalid
			return
		}
		h.anyCert = true
		return
	}
	v, err := dane.NewVerifier(usable, names, r.e.opts.Clock)
	if err != nil { // usable records were found above: cannot happen
		skip(h, true, "dane", "DANE: %v", err)
		return
	}
	h.verifier = v
	st.Active, h.daneWord = true, metrics.DANEActive
	st.Reason = strconv.Itoa(len(usable)) + " usable TLSA " + plural(len(usable), "record", "records") + " at " + a.name + ": the certificate must match one (DANE replaces PKIX)"
}

// noDANE records why DANE does not apply to p's host. With tls.dane
// require the host is skipped: permanently when the resolver validates
// DNSSEC, since the zone is then provably insecure; temporarily when it
// does not (dns.dnssec false, or no server whose AD bit is trusted), since
// then the insecure answer proves nothing, and our own configuration must
// never bounce mail.
func (r *run) noDANE(p *hostPlan, why string) {
	p.h.daneWord = metrics.DANEInsecure
	h := p.h
	h.TLS.DANEState.Reason = why
	if p.dane != policies.TLSRequire {
		return
	}
	if r.validates() {
		skip(h, false, "dane", "tls.dane is require but %s", why)
	} else {
		skip(h, true, "dane", "tls.dane is require but %s, and the resolver does not validate DNSSEC (dns.dnssec is false, or no server is on loopback or DNS over TLS), so this proves nothing: deferred, not bounced", why)
	}
	h.skipTLSRPT = tlsrpt.DANERequired
}

// validates reports whether the resolver's insecure answers prove a zone
// insecure (see dns.Validating). A resolver that does not say is trusted.
func (r *run) validates() bool {
	v, ok := r.s.resolver.(dns.Validating)
	return !ok || v.Validates()
}

// ignoreTLSPolicy reports whether the message asks, with the header field
// TLS-Required: No, that the recipient's TLS policies (DANE, MTA-STS) be
// ignored (RFC 8689 section 5). REQUIRETLS wins over it.
func (r *run) ignoreTLSPolicy() bool {
	return r.msg.TLSRequiredNo && !r.msg.RequireTLS
}

// mtaSTSHost applies the domain's MTA-STS policy to p's host (RFC 8461
// section 4): under enforce, a host the policy does not list is skipped
// (permanently, for this host), and a listed one gets TLS with PKIX, both
// mandatory; under testing, a host not listed is only noted (TLS-RPT). A
// host with active DANE is left to DANE (RFC 8461 section 2).
func (r *run) mtaSTSHost(g *Group, p *hostPlan) {
	h, pol := p.h, g.MTASTS.policy
	if pol == nil || p.relay || pol.Mode == mtasts.None || r.ignoreTLSPolicy() {
		return
	}
	if h.TLS.DANEState.Active {
		return
	}
	listed := pol.Matches(h.Name)
	switch {
	case pol.Mode == mtasts.Enforce && listed:
		h.stsEnforce = true
		h.TLS.MTASTS = "enforce"
	case pol.Mode == mtasts.Enforce:
		skip(h, false, "mta-sts", "not listed by the MTA-STS policy of %s (mode enforce; mx: %s)", g.Domain, strings.Join(pol.MX, ", "))
		h.skipTLSRPT = tlsrpt.ValidationFailure
	case listed:
		h.TLS.MTASTS = "testing"
	default:
		h.TLS.MTASTS = "testing, not listed"
	}
}

// requireTLSHost checks, for a message with REQUIRETLS, that p's host may
// carry it (RFC 8689 section 4.2.1): an MX host must come from a
// DNSSEC-secure MX answer (for an implicit MX, secure address records) or
// be listed by the domain's MTA-STS policy; a relay is the operator's
// choice of next hop. The certificate checks (DANE, or PKIX whatever
// tls.allow-invalid-certs says) and the REQUIRETLS parameter on MAIL
// FROM are the transport's.
func (r *run) requireTLSHost(g *Group, p *hostPlan) {
	h := p.h
	if !r.msg.RequireTLS || p.relay {
		return
	}
	_, addrSecure := p.addrSecurity()
	switch {
	case p.literal.IsValid():
		skip(h, false, "tls", "REQUIRETLS: %s is an address literal, so no DNSSEC or MTA-STS can vouch for it (RFC 8689 section 4.2.1)", g.Domain)
	case !p.implicit && h.Secure, p.implicit && addrSecure:
	case g.MTASTS.policy != nil && g.MTASTS.policy.Mode != mtasts.None && g.MTASTS.policy.Matches(h.Name):
	default:
		skip(h, false, "tls", "REQUIRETLS: %s comes from an MX answer that is not DNSSEC-secure and no MTA-STS policy lists it (RFC 8689 section 4.2.1)", h.Name)
	}
}

// effectiveTLS settles what delivery will do with TLS on h, for the
// decision (and the dry-run) to show: the plan is built from it.
func (r *run) effectiveTLS(h *Host) {
	t := &h.TLS
	switch {
	case h.verifier != nil:
		t.Required, t.Verify = true, "dane"
	case h.stsEnforce:
		t.Required, t.Verify = true, "mta-sts"
	case r.msg.RequireTLS:
		t.Required, t.Verify = true, "pkix"
	case h.anyCert:
		t.Required, t.Verify = true, "none"
		if t.STARTTLS == policies.TLSRequire && !t.AllowInvalidCerts {
			t.Verify = "pkix"
		}
	case t.STARTTLS == policies.TLSRequire:
		t.Required, t.Verify = true, "pkix"
		if t.AllowInvalidCerts {
			t.Verify = "none"
		}
	case t.STARTTLS == policies.TLSDisable:
		t.Verify = "none"
	default:
		t.Verify = "opportunistic"
	}
}

// notFound reports whether err says the name or the type does not exist.
func notFound(err error) bool {
	return errors.Is(err, dns.ErrNotFound) || errors.Is(err, dns.ErrNoData)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// resolverWarnings are the engine's warnings about what set asks of its
// resolver: tls.dane require with a resolver that does not validate DNSSEC
// can never see a secure answer, so every such host is deferred (never
// bounced, see noDANE) until the resolver is fixed.
func resolverWarnings(set *policies.Set, res dns.Resolver) []*policies.Warning {
	if v, ok := res.(dns.Validating); !ok || v.Validates() {
		return nil
	}
	vals, _ := set.TLS.DANE.Outcomes()
	if !slices.Contains(vals, policies.TLSRequire) {
		return nil
	}
	at := set.TLS.DANE.At()
	if at.File == "" {
		at.File = set.File
	}
	return []*policies.Warning{{File: at.File, Line: at.Line, Column: at.Column, Setting: "tls.dane",
		Message: "require needs a resolver that validates DNSSEC, and this one does not (dns.dnssec is false, or no server is on loopback or DNS over TLS): every host it applies to is deferred, never delivered nor bounced, until the resolver is fixed"}}
}
