package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Report is an aggregate report (RFC 8460 section 4.4) about one policy
// domain for one UTC day. [Report.MarshalJSON] writes it with the RFC's
// field names.
type Report struct {
	// OrganizationName is "organization-name": who sends the report.
	OrganizationName string
	// Start and End are the "date-range": the first and the last second of
	// the UTC day reported on (End is 23:59:59).
	Start, End time.Time
	// ContactInfo is "contact-info": an address (RFC 5322 addr-spec) of the
	// sender's reporting contact. Its domain is the submitter (section 5.3).
	ContactInfo string
	// ReportID is "report-id". The [Aggregator] writes
	// "YYYY-MM-DD.policy-domain.RANDOM" (RANDOM: 26 characters of
	// crypto/rand base32), a dot-atom usable in the Subject's msg-id.
	ReportID string
	// Domain is the policy domain the report is about (not a JSON field of
	// its own: every policy entry carries it). It names the mailed report's
	// file and Subject.
	Domain string
	// Policies are the "policies" entries.
	Policies []PolicyReport
}

// PolicyReport is one entry of a report's "policies": the counts of the
// sessions checked against one policy.
type PolicyReport struct {
	Policy  Policy  `json:"policy"`
	Summary Summary `json:"summary"`
	// FailureDetails group the failed sessions; always written, as []
	// when there are none.
	FailureDetails []FailureDetail `json:"failure-details"`
}

// Policy is the "policy" object of a policies entry.
type Policy struct {
	// Type is "policy-type".
	Type PolicyType `json:"policy-type"`
	// Strings is "policy-string" (section 4.5); it is written for sts and
	// tlsa policies even when empty, and left out for no-policy-found.
	Strings []string `json:"policy-string,omitempty"`
	// Domain is "policy-domain", in A-labels.
	Domain string `json:"policy-domain"`
	// MXHost is "mx-host": the MX host pattern (sts) or MX host (tlsa).
	MXHost string `json:"mx-host,omitempty"`
}

// Summary is the "summary" of a policies entry (section 4.2).
type Summary struct {
	// Successful is "total-successful-session-count".
	Successful int64 `json:"total-successful-session-count"`
	// Failed is "total-failure-session-count".
	Failed int64 `json:"total-failure-session-count"`
}

// FailureDetail is one "failure-details" entry: the number of failed
// sessions sharing every other field.
//
// Empty fields are left out of the JSON.
type FailureDetail struct {
	// ResultType is "result-type", one of the section 4.3 constants.
	ResultType string `json:"result-type"`
	// SendingMTAIP is "sending-mta-ip".
	SendingMTAIP netip.Addr `json:"sending-mta-ip,omitzero"`
	// ReceivingMXHostname is "receiving-mx-hostname".
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	// ReceivingMXHelo is "receiving-mx-helo".
	ReceivingMXHelo string `json:"receiving-mx-helo,omitempty"`
	// ReceivingIP is "receiving-ip".
	ReceivingIP netip.Addr `json:"receiving-ip,omitzero"`
	// FailedSessionCount is "failed-session-count".
	FailedSessionCount int64 `json:"failed-session-count"`
	// AdditionalInformation is "additional-information", a URI.
	AdditionalInformation string `json:"additional-information,omitempty"`
	// FailureReasonCode is "failure-reason-code", an error code or text.
	FailureReasonCode string `json:"failure-reason-code,omitempty"`
}

// reportJSON is the wire shape of a Report.
type reportJSON struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        dateRangeJSON  `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyReport `json:"policies"`
}

type dateRangeJSON struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

// policyJSON makes policy-string present (as []) for sts and tlsa.
type policyJSON struct {
	Type    PolicyType `json:"policy-type"`
	Strings *[]string  `json:"policy-string,omitempty"`
	Domain  string     `json:"policy-domain"`
	MXHost  string     `json:"mx-host,omitempty"`
}

// MarshalJSON writes the policy with "policy-string" present (possibly
// empty) for sts and tlsa policies.
func (p Policy) MarshalJSON() ([]byte, error) {
	out := policyJSON{Type: p.Type, Domain: p.Domain, MXHost: p.MXHost}
	if p.Type != NoPolicyFound || len(p.Strings) > 0 {
		s := p.Strings
		if s == nil {
			s = []string{}
		}
		out.Strings = &s
	}
	return json.Marshal(out)
}

// MarshalJSON writes the report as RFC 8460 section 4.4 defines it, dates
// in RFC 3339 UTC, and "failure-details" always an array.
func (r *Report) MarshalJSON() ([]byte, error) {
	out := reportJSON{
		OrganizationName: r.OrganizationName,
		DateRange:        dateRangeJSON{r.Start.UTC().Format(time.RFC3339), r.End.UTC().Format(time.RFC3339)},
		ContactInfo:      r.ContactInfo,
		ReportID:         r.ReportID,
		Policies:         make([]PolicyReport, len(r.Policies)),
	}
	for i, p := range r.Policies {
		if p.FailureDetails == nil {
			p.FailureDetails = []FailureDetail{}
		}
		out.Policies[i] = p
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // a URI in additional-information stays readable
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("tlsrpt: encode report %s: %w", r.ReportID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads a report written by MarshalJSON (or by another
// sender, as long as "mx-host" is a string). Domain is taken from the
// first policy.
func (r *Report) UnmarshalJSON(data []byte) error {
	var in reportJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("tlsrpt: decode report: %w", err)
	}
	start, err := time.Parse(time.RFC3339, in.DateRange.Start)
	if err != nil {
		return fmt.Errorf("tlsrpt: decode report %s: start-datetime: %w", in.ReportID, err)
	}
	end, err := time.Parse(time.RFC3339, in.DateRange.End)
	if err != nil {
		return fmt.Errorf("tlsrpt: decode report %s: end-datetime: %w", in.ReportID, err)
	}
	*r = Report{
		OrganizationName: in.OrganizationName,
		Start:            start.UTC(),
		End:              end.UTC(),
		ContactInfo:      in.ContactInfo,
		ReportID:         in.ReportID,
		Policies:         in.Policies,
	}
	for i := range r.Policies {
		if len(r.Policies[i].Policy.Strings) == 0 {
			r.Policies[i].Policy.Strings = nil // "policy-string": [] is no strings
		}
	}
	if len(in.Policies) > 0 {
		r.Domain = in.Policies[0].Policy.Domain
	}
	return nil
}

// domain is the policy domain the report is about.
func (r *Report) domain() string {
	if r.Domain == "" && len(r.Policies) > 0 {
		return r.Policies[0].Policy.Domain
	}
	return r.Domain
}

// gzipped returns the report's JSON compressed with gzip (section 5.2).
func (r *Report) gzipped() ([]byte, error) {
	data, err := r.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("tlsrpt: gzip report %s: %w", r.ReportID, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("tlsrpt: gzip report %s: %w", r.ReportID, err)
	}
	return buf.Bytes(), nil
}

// filename is the section 5.1 name of the gzipped report:
// submitter!policy-domain!begin-timestamp!end-timestamp!unique-id.json.gz.
// unique-id must be 1*(ALPHA / DIGIT): 16 hex digits of the report-id's
// SHA-256, so it is the same for every copy of one report.
func (r *Report) filename(submitter string) string {
	sum := sha256.Sum256([]byte(r.ReportID))
	return submitter + "!" + r.domain() +
		"!" + strconv.FormatInt(r.Start.Unix(), 10) +
		"!" + strconv.FormatInt(r.End.Unix(), 10) +
		"!" + hex.EncodeToString(sum[:8]) + ".json.gz"
}
