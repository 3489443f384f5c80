package tlsrpt

import (
	"net/netip"
	"time"
)

// PolicyType is the kind of policy a session was checked against, the
// report's "policy-type" (RFC 8460 section 4.4).
type PolicyType string

// The three policy types of RFC 8460 section 4.4.
const (
	STS           PolicyType = "sts"             // MTA-STS, RFC 8461
	TLSA          PolicyType = "tlsa"            // DANE, RFC 7672
	NoPolicyFound PolicyType = "no-policy-found" // neither applied
)

// Result types of RFC 8460 section 4.3 (the IANA "STARTTLS Validation
// Result Types" registry), the report's "result-type". A successful
// session has none.
const (
	// Negotiation failures, section 4.3.1.
	StartTLSNotSupported    = "starttls-not-supported"
	CertificateHostMismatch = "certificate-host-mismatch"
	CertificateExpired      = "certificate-expired"
	CertificateNotTrusted   = "certificate-not-trusted"
	ValidationFailure       = "validation-failure"

	// DANE failures, section 4.3.2.1.
	TLSAInvalid   = "tlsa-invalid"
	DNSSECInvalid = "dnssec-invalid"
	DANERequired  = "dane-required"

	// MTA-STS failures, section 4.3.2.2.
	STSPolicyFetchError = "sts-policy-fetch-error"
	STSPolicyInvalid    = "sts-policy-invalid"
	STSWebPKIInvalid    = "sts-webpki-invalid"
)

// resultTypes is the set of result types this package writes; anything
// else is reported as ValidationFailure (section 4.3.3).
var resultTypes = map[string]bool{
	StartTLSNotSupported: true, CertificateHostMismatch: true, CertificateExpired: true,
	CertificateNotTrusted: true, ValidationFailure: true, TLSAInvalid: true,
	DNSSECInvalid: true, DANERequired: true, STSPolicyFetchError: true,
	STSPolicyInvalid: true, STSWebPKIInvalid: true,
}

// Result is one session's result record: what an MTA needs to build a
// report. The engine makes one per session attempt, success or failure.
type Result struct {
	// PolicyType is the policy the session was checked against; "" counts
	// as NoPolicyFound.
	PolicyType PolicyType `json:"policy_type"`
	// PolicyDomain is the recipient domain, in A-labels.
	PolicyDomain string `json:"policy_domain"`
	// PolicyStrings are the TLSA records in presentation form ("3 1 1
	// 1F85..."), or the MTA-STS policy's lines ("version: STSv1", ...),
	// section 4.5.
	PolicyStrings []string `json:"policy_strings,omitempty"`
	// MXHost is the MX host (tlsa) or the policy's MX host pattern that
	// applied (sts), the report's "mx-host".
	MXHost string `json:"mx_host,omitempty"`
	// SendingIP is the local address of the session.
	SendingIP netip.Addr `json:"sending_ip,omitzero"`
	// ReceivingIP is the address of the receiving MX.
	ReceivingIP netip.Addr `json:"receiving_ip,omitzero"`
	// ReceivingMXHostname is the MX host name the session went to.
	ReceivingMXHostname string `json:"receiving_mx_hostname,omitempty"`
	// ReceivingMXHelo is the name the MX gave in its greeting or EHLO reply.
	ReceivingMXHelo string `json:"receiving_mx_helo,omitempty"`
	// ResultType is one of the result type constants; "" is a success.
	ResultType string `json:"result_type,omitempty"`
	// FailureReason is extra information on a failure: an http(s) URI goes
	// to the report's "additional-information", anything else (an error
	// code or message) to "failure-reason-code".
	FailureReason string `json:"failure_reason,omitempty"`
	// Time is when the session took place; it picks the report's UTC day.
	// The zero time counts as the moment the result is added.
	Time time.Time `json:"time"`
}

// Success reports whether the session negotiated TLS as its policy
// required.
func (r Result) Success() bool { return r.ResultType == "" }
