package engine

import (
	"time"

	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/mtasts"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// tlsReports are the TLS-RPT result records (RFC 8460) of a group's
// delivery, in order: a failure for the group's MTA-STS policy when it
// could not be had, one for each host a TLS policy made the engine skip
// (dane-required, dnssec-invalid, tlsa-invalid, an MX that an enforce
// policy does not list), then one for each connection attempt that
// negotiated TLS or should have. A plaintext session with no policy, and
// an attempt that failed before TLS could be tried (a refused connection,
// a negative greeting), are not TLS sessions and have no record.
func (g *Group) tlsReports(hosts []*Host, attempts []transport.Attempt, now time.Time) []tlsrpt.Result {
	var out []tlsrpt.Result
	if g.MTASTS.failed != "" && g.MTASTS.policy == nil {
		out = append(out, tlsrpt.Result{PolicyType: tlsrpt.STS, PolicyDomain: g.Domain, ResultType: g.MTASTS.failed,
			FailureReason: g.MTASTS.Error, Time: now})
	}
	for _, h := range g.Hosts {
		if h.Skipped != nil && h.skipTLSRPT != "" {
			r := g.tlsPolicy(h)
			r.ResultType, r.FailureReason, r.Time = h.skipTLSRPT, *h.Skipped, now
			out = append(out, r)
		}
	}
	for _, a := range attempts {
		if a.Host < 0 || a.Host >= len(hosts) {
			continue
		}
		h := hosts[a.Host]
		r := g.tlsPolicy(h)
		r.SendingIP, r.ReceivingIP, r.Time = a.Source.Addr(), a.Address.Addr(), now
		switch {
		case a.Err != nil && a.Err.TLSResult != "":
			r.ResultType, r.FailureReason = a.Err.TLSResult, a.Err.Message
		case a.TLS.Enabled():
			// TLS was negotiated as the policy asked; under a testing
			// policy, a certificate kept unverified is still a failure
			// to report.
			if r.PolicyType != tlsrpt.NoPolicyFound {
				for _, w := range a.Warnings {
					if w.TLSResult != "" {
						r.ResultType, r.FailureReason = w.TLSResult, w.Text
						break
					}
				}
			}
		case r.PolicyType != tlsrpt.NoPolicyFound && a.Err == nil:
			// A testing policy (or unusable TLSA records with
			// tls.dane optional): delivered, but without TLS.
			r.ResultType, r.FailureReason = tlsrpt.StartTLSNotSupported, "delivered without TLS"
			for _, w := range a.Warnings {
				if w.TLSResult != "" {
					r.ResultType, r.FailureReason = w.TLSResult, w.Text
					break
				}
			}
		default:
			continue
		}
		out = append(out, r)
	}
	return out
}

// tlsPolicy is the policy part of h's records: DANE's TLSA records when
// the host has any usable or not, else the domain's MTA-STS policy when
// it applies to the host, else no-policy-found.
func (g *Group) tlsPolicy(h *Host) tlsrpt.Result {
	r := tlsrpt.Result{PolicyType: tlsrpt.NoPolicyFound, PolicyDomain: g.Domain, ReceivingMXHostname: h.Name}
	d := h.TLS.DANEState
	switch {
	case len(d.Records) > 0 || h.skipTLSRPT == tlsrpt.DANERequired || h.skipTLSRPT == tlsrpt.DNSSECInvalid:
		r.PolicyType, r.MXHost = tlsrpt.TLSA, h.Name
		for _, rec := range d.Records {
			r.PolicyStrings = append(r.PolicyStrings, rec.Record)
		}
	case g.MTASTS.policy != nil && g.MTASTS.policy.Mode != mtasts.None && (h.TLS.MTASTS != "" || h.skipTLSRPT == tlsrpt.ValidationFailure):
		pol := g.MTASTS.policy
		r.PolicyType, r.PolicyStrings = tlsrpt.STS, pol.Lines()
		r.MXHost, _ = pol.Match(h.Name)
	}
	return r
}

// TLSRPTRecords returns the TLS-RPT records of results, each attempt's
// once: the recipients of one group share theirs, and feeding every
// result's records to a tlsrpt.Aggregator would count a session once per
// recipient.
func TLSRPTRecords(results []Result) []tlsrpt.Result {
	var out []tlsrpt.Result
	seen := map[*tlsrpt.Result]bool{}
	for _, r := range results {
		if len(r.TLSRPT) == 0 || seen[&r.TLSRPT[0]] {
			continue
		}
		seen[&r.TLSRPT[0]] = true
		out = append(out, r.TLSRPT...)
	}
	return out
}
