package tlsrpt

import (
	"cmp"
	"crypto/rand"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxBytes bounds the memory an [Aggregator] holds, in bytes of its own
// estimate (the strings it keeps plus a fixed overhead per entry). Counting
// a result into an existing entry costs nothing; a result that would need a
// new entry past the bound is dropped (a failure whose failure-details
// group is new is still counted in its policy's summary, without a detail),
// and [Aggregator.Dropped] counts it. Draining a day's reports frees their
// share.
const MaxBytes = 64 << 20

// Field length caps, so one result cannot take an unfair share of MaxBytes.
const (
	maxName         = 255  // host names, domains, HELO names
	maxReason       = 512  // failure-reason-code, additional-information
	maxPolicyString = 8192 // one TLSA record (type 0 carries a certificate) or STS line
	maxPolicyLines  = 64
	entryOverhead   = 160 // map entry, struct and string headers, roughly
)

// Aggregator collects [Result]s into one report per (policy domain, UTC
// day), as RFC 8460 section 4.1 recommends. Within a report there is one
// "policies" entry per distinct (policy type, policy strings, policy
// domain, mx-host), and failures are grouped into failure-details by
// (result type, sending IP, receiving MX host name, receiving MX HELO
// name, receiving IP, additional information / failure reason).
//
// It is safe for concurrent use, and its memory is bounded by [MaxBytes].
type Aggregator struct {
	mu      sync.Mutex
	days    map[int64]map[string]*domainAgg // UTC midnight (Unix s) -> policy domain
	bytes   int64
	dropped int64
}

type domainAgg struct {
	policies map[policyKey]*policyAgg
	bytes    int64 // this domain's share of Aggregator.bytes
}

type policyKey struct {
	typ     PolicyType
	strings string // joinStrings of the policy strings
	domain  string
	mx      string
}

type policyAgg struct {
	policy  Policy
	summary Summary
	details map[FailureDetail]int64 // FailedSessionCount left 0 in the key
}

// NewAggregator returns an empty Aggregator.
func NewAggregator() *Aggregator {
	return &Aggregator{days: make(map[int64]map[string]*domainAgg)}
}

// Dropped returns how many results were not recorded in full because the
// memory bound was reached (or because their policy type is unknown).
func (a *Aggregator) Dropped() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dropped
}

// Add counts one session's result.
func (a *Aggregator) Add(r Result) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	pol, ok := normalPolicy(r)
	var d FailureDetail
	if !r.Success() {
		d = normalDetail(r)
	}
	day := utcDay(r.Time).Unix()
	key := policyKey{pol.Type, joinStrings(pol.Strings), pol.Domain, pol.MXHost}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok || pol.Domain == "" {
		a.dropped++
		return
	}
	p := a.policy(day, key, pol)
	if p == nil {
		a.dropped++
		return
	}
	if r.Success() {
		p.summary.Successful++
		return
	}
	p.summary.Failed++
	if _, ok := p.details[d]; !ok {
		size := detailSize(d)
		if a.bytes+size > MaxBytes {
			a.dropped++
			return
		}
		a.bytes += size
		a.days[day][pol.Domain].bytes += size
	}
	p.details[d]++
}

// policy finds or makes the entry for pol (whose key is key) on day; nil
// when the memory bound does not allow a new one. a.mu is held.
func (a *Aggregator) policy(day int64, key policyKey, pol Policy) *policyAgg {
	dom := a.days[day][pol.Domain]
	if dom != nil {
		if p := dom.policies[key]; p != nil {
			return p
		}
	}
	size := policySize(key)
	if dom == nil {
		size += entryOverhead + int64(len(pol.Domain))
	}
	if a.bytes+size > MaxBytes {
		return nil
	}
	if dom == nil {
		if a.days[day] == nil {
			a.days[day] = make(map[string]*domainAgg)
		}
		dom = &domainAgg{policies: make(map[policyKey]*policyAgg)}
		a.days[day][pol.Domain] = dom
	}
	a.bytes += size
	dom.bytes += size
	pol.Strings = slices.Clone(pol.Strings)
	p := &policyAgg{policy: pol, details: make(map[FailureDetail]int64)}
	dom.policies[key] = p
	return p
}

// joinStrings makes the policy strings one map key; each is prefixed with
// its length, so no two lists give the same key.
func joinStrings(list []string) string {
	var b strings.Builder
	for _, s := range list {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

// utcDay returns the start of t's UTC day.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func policySize(k policyKey) int64 {
	return int64(2*entryOverhead + len(k.typ) + 2*len(k.strings) + len(k.domain) + len(k.mx))
}

func detailSize(d FailureDetail) int64 {
	return int64(entryOverhead + len(d.ResultType) + len(d.ReceivingMXHostname) +
		len(d.ReceivingMXHelo) + len(d.AdditionalInformation) + len(d.FailureReasonCode))
}

// normalPolicy returns the policy of r with its fields cleaned and capped;
// false for an unknown policy type.
func normalPolicy(r Result) (Policy, bool) {
	p := Policy{Type: r.PolicyType, Domain: normalName(r.PolicyDomain), MXHost: normalName(r.MXHost)}
	switch p.Type {
	case "":
		p.Type = NoPolicyFound
	case STS, TLSA, NoPolicyFound:
	default:
		return Policy{}, false
	}
	for i, s := range r.PolicyStrings {
		if i == maxPolicyLines {
			break
		}
		p.Strings = append(p.Strings, clip(s, maxPolicyString))
	}
	return p, true
}

// normalDetail returns the failure-details key of a failed result.
func normalDetail(r Result) FailureDetail {
	d := FailureDetail{
		ResultType:          r.ResultType,
		SendingMTAIP:        r.SendingIP.Unmap().WithZone(""),
		ReceivingIP:         r.ReceivingIP.Unmap().WithZone(""),
		ReceivingMXHostname: normalName(r.ReceivingMXHostname),
		ReceivingMXHelo:     clip(r.ReceivingMXHelo, maxName),
	}
	reason := r.FailureReason
	if !resultTypes[d.ResultType] {
		// Section 4.3.3: what fits no category is a validation-failure,
		// explained in failure-reason-code.
		reason = strings.TrimSuffix(d.ResultType+": "+reason, ": ")
		d.ResultType = ValidationFailure
	}
	reason = clip(reason, maxReason)
	if isHTTPURI(reason) {
		d.AdditionalInformation = reason
	} else {
		d.FailureReasonCode = reason
	}
	return d
}

func isHTTPURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && !strings.ContainsAny(s, " \t\r\n")
}

// normalName lower-cases a domain name and drops its trailing dot, so
// "Example.COM." and "example.com" share a report.
func normalName(s string) string {
	return clip(strings.TrimSuffix(strings.ToLower(s), "."), maxName)
}

// clip cuts s to at most n bytes on a character boundary, and copies it so
// the aggregator never pins a larger buffer s may be part of.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return strings.Clone(s)
}

// Reports returns the reports of the given UTC day (day is truncated to
// its UTC date), one per policy domain, sorted by domain, with org and
// contact as organization-name and contact-info. Each call makes fresh
// report-ids. With drain, the day's counts are removed from the
// aggregator; otherwise they stay and keep growing.
func (a *Aggregator) Reports(day time.Time, org, contact string, drain bool) []*Report {
	start := utcDay(day)
	a.mu.Lock()
	domains := a.days[start.Unix()]
	var reports []*Report
	for name, dom := range domains {
		reports = append(reports, dom.report(start, name, org, contact))
	}
	if drain {
		for _, dom := range domains {
			a.bytes -= dom.bytes
		}
		delete(a.days, start.Unix())
	}
	a.mu.Unlock()
	slices.SortFunc(reports, func(x, y *Report) int { return cmp.Compare(x.Domain, y.Domain) })
	return reports
}

// report copies the domain's counts into a Report. a.mu is held.
func (dom *domainAgg) report(start time.Time, domain, org, contact string) *Report {
	r := &Report{
		OrganizationName: org,
		Start:            start,
		End:              start.Add(24*time.Hour - time.Second),
		ContactInfo:      contact,
		ReportID:         start.Format("2006-01-02") + "." + domain + "." + rand.Text(),
		Domain:           domain,
	}
	for _, p := range dom.policies {
		pr := PolicyReport{Policy: p.policy, Summary: p.summary, FailureDetails: []FailureDetail{}}
		pr.Policy.Strings = slices.Clone(p.policy.Strings)
		for d, n := range p.details {
			d.FailedSessionCount = n
			pr.FailureDetails = append(pr.FailureDetails, d)
		}
		slices.SortFunc(pr.FailureDetails, compareDetails)
		r.Policies = append(r.Policies, pr)
	}
	slices.SortFunc(r.Policies, func(x, y PolicyReport) int {
		return cmp.Or(
			cmp.Compare(x.Policy.Type, y.Policy.Type),
			cmp.Compare(x.Policy.MXHost, y.Policy.MXHost),
			slices.Compare(x.Policy.Strings, y.Policy.Strings),
		)
	})
	return r
}

func compareDetails(x, y FailureDetail) int {
	return cmp.Or(
		cmp.Compare(x.ResultType, y.ResultType),
		cmp.Compare(x.ReceivingMXHostname, y.ReceivingMXHostname),
		x.ReceivingIP.Compare(y.ReceivingIP),
		x.SendingMTAIP.Compare(y.SendingMTAIP),
		cmp.Compare(x.ReceivingMXHelo, y.ReceivingMXHelo),
		cmp.Compare(x.AdditionalInformation, y.AdditionalInformation),
		cmp.Compare(x.FailureReasonCode, y.FailureReasonCode),
	)
}
