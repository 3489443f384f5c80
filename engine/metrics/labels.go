package metrics

import (
	"strings"
	"unicode/utf8"
)

// Other is the label value of a word outside its label's closed list (and
// of a route, throttle or domain name that is not valid UTF-8, which
// Prometheus cannot carry).
const Other = "other"

// The outcomes of [Metrics.Delivered]: engine.Result.StatusText().
const (
	OutcomeDelivered = "delivered"
	OutcomeTemporary = "temporary"
	OutcomePermanent = "permanent"
	OutcomeLocal     = "local" // left to the embedding MTA
)

// FetchOK is the result of [Metrics.MTASTSFetch] for a policy fetched and
// parsed; a failed fetch passes its RFC 8460 result type instead
// (mtasts.FetchError.Type: sts-webpki-invalid, sts-policy-invalid,
// sts-policy-fetch-error).
const FetchOK = "ok"

// The results of [Metrics.DANE]: the DANE decision for a host (RFC 7672
// section 2.2), with the inactive reasons bucketed, or the failure of a
// TLS session that DANE governed.
const (
	// DANEActive: usable TLSA records; the certificate must match one.
	DANEActive = "active"
	// DANEDisabled: tls.dane is disable, or the message carries
	// TLS-Required: No (RFC 8689 section 5).
	DANEDisabled = "disabled"
	// DANEInsecure: the MX, address or TLSA answer is not DNSSEC-secure,
	// or the host is an address literal (no name to hold TLSA records).
	DANEInsecure = "insecure"
	// DANENoRecords: a secure denial: no TLSA records.
	DANENoRecords = "no-records"
	// DANEUnusable: TLSA records, none usable: TLS without authentication.
	DANEUnusable = "unusable"
	// DANELookupFailed: the TLSA lookup failed (SERVFAIL, timeout, bogus):
	// the host is skipped (no downgrade, RFC 7672 section 2.1.1).
	DANELookupFailed = "lookup-failed"
	// DANEVerifyFailed: the server's certificate matched no usable TLSA
	// record (a result of class dane).
	DANEVerifyFailed = "verify-failed"
)

// The closed lists. Each word is returned from the list itself, so a label
// never keeps the caller's string (or its backing memory) alive.
var (
	outcomeWords = []string{OutcomeDelivered, OutcomeTemporary, OutcomePermanent, OutcomeLocal}
	// classWords are engine.Classes, as strings: the transport's failure
	// classes and the engine's policy, store and expired.
	classWords = []string{"none", "dns", "connection", "tls", "dane", "mta-sts", "unexpected-reply",
		"rate", "concurrency", "io", "loop", "policy", "store", "expired"}
	// verifyWords are transport.Verification's words, and
	// opportunistic, engine.HostTLS.Verify's word for PKIX tried.
	verifyWords = []string{"none", "pkix", "dane", "mta-sts", "opportunistic"}
	fetchWords  = []string{FetchOK, "sts-webpki-invalid", "sts-policy-invalid", "sts-policy-fetch-error", Other}
	daneWords   = []string{DANEActive, DANEDisabled, DANEInsecure, DANENoRecords, DANEUnusable,
		DANELookupFailed, DANEVerifyFailed, Other}
	reloadWords = []string{resultOK, resultFailed}
)

// The results of attempts and reloads.
const (
	resultOK     = "ok"
	resultFailed = "failed"
)

// pick returns the word of list equal to s, else Other.
func pick(list []string, s string) string {
	for _, w := range list {
		if w == s {
			return w
		}
	}
	return Other
}

// orNone is pick for classes and verification methods, where "" (a
// delivered recipient's class, a result without a connection) means none.
func orNone(list []string, s string) string {
	if s == "" {
		return "none"
	}
	return pick(list, s)
}

// name is a route or throttle name: any valid UTF-8 (the policy bounds the
// set), else Other, since Prometheus rejects invalid UTF-8 in a label.
func name(s string) string {
	if !utf8.ValidString(s) {
		return Other
	}
	return s
}

// domainLabel is a recipient domain as one label value per domain: lower case,
// without a trailing dot. (ToLower allocates only when there is upper
// case to lower.)
func domainLabel(s string) string {
	if !utf8.ValidString(s) {
		return Other
	}
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
