// Package tlsrpt implements the sending side of SMTP TLS Reporting
// (RFC 8460): the result record of one delivery session, the
// "_smtp._tls" TXT record that says where reports go (section 3), the
// daily aggregate report in JSON (section 4) and its submission by mail or
// HTTPS POST (section 5).
//
// Related standards: MTA-STS (RFC 8461) and DANE for SMTP (RFC 7672) are
// the policies reported on; the report's dates are RFC 3339 date-times; a
// mailed report is a multipart/report message (RFC 6522) carrying the
// report gzipped (RFC 1952); rua mailto: URIs are RFC 6068 URIs, and every
// rua is an RFC 3986 URI.
//
// # Using it
//
// The engine attaches one [Result] per session it tried (success or
// failure) to a recipient's result. An embedder feeds them to an
// [Aggregator], and once a day (a few hours after midnight UTC, as section
// 4.1 suggests, so receivers are not all hit at once) takes the previous
// day's reports with [Aggregator.Reports], looks up each policy domain's
// "_smtp._tls" TXT record, parses it with [ParseRecord] and hands the report
// and the record's rua URIs to [Submitter.Submit].
//
// This package does not DKIM-sign: section 3 requires a mailed report to
// carry a DKIM signature of the reporting domain (without "l=", with a key
// whose record should say "s=tlsrpt"), so the embedder's SendMail must
// sign it. Section 3 also requires that reports are delivered despite any
// TLS failure, and that those sessions are not counted in the next report.
//
// # Where RFC 8460 is ambiguous, and what this package does
//
//   - Which TXT records count (section 3): records "that do not begin with
//     v=TLSRPTv1;" are discarded, but the ABNF allows white space before
//     that ";". A record counts when it starts with "v=TLSRPTv1", then
//     optional SP/HTAB, then ";". No such record is [ErrNoRecord]; two or
//     more is an error that wraps ErrNoRecord too, since the RFC treats both
//     alike ("the recipient domain does not implement TLSRPT").
//   - The ABNF is applied exactly: "v=TLSRPTv1" and "rua=" are
//     case-sensitive (%s), white space is allowed only around ";" and ","
//     and nowhere else (not at the start or end of a record, nor around
//     "="). A record that breaks it is an error, not a record without
//     reporting; the RFC's "superset" rule is honoured by ignoring unknown
//     fields that follow the extension syntax.
//   - Several rua fields: the ABNF allows them; their URIs are all used, in
//     order.
//   - rua URIs of schemes other than mailto: and https: are ignored (the
//     RFC defines only those two), as are mailto: URIs without an address
//     and https: URIs without a host; at least one usable URI is required.
//   - "mx-host": section 4.4 defines it as a string (the MX host pattern),
//     the example report in Appendix B writes an array (erratum 6241 reports
//     the example as wrong). The definition wins: a string is written, and a
//     report has one policy entry per (policy type, policy strings, policy
//     domain, mx-host).
//   - "end-datetime": section 4.1 says a report covers a UTC day "0000-2400",
//     the example ends at 23:59:59Z. Reports end at 23:59:59Z of their day;
//     the filename's end-timestamp is that second too.
//   - Optional fields: the RFC marks only receiving-mx-helo and
//     additional-information optional, yet its own example leaves out
//     others. Empty fields are left out, except that every report has
//     "failure-details" (possibly empty) and every sts or tlsa policy has
//     "policy-string"; a no-policy-found policy has none.
//   - The Report-ID in the Subject (section 5.3) must be a msg-id; the JSON
//     "report-id" is free-form. The JSON report-id is made a dot-atom so the
//     Subject can carry "<report-id@submitter>".
//   - HTTPS: section 3 lets submitters ignore certificate errors; this
//     package verifies certificates (against [Submitter.RootCAs]).
//   - Unknown result types (the IANA registry may grow) are reported as
//     "validation-failure" with the unknown type in "failure-reason-code",
//     as section 4.3.3 asks for failures that fit no category.
package tlsrpt
