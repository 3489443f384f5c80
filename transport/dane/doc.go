// Package dane handles TLSA records and matches a TLS server's certificate
// chain against them: DANE for SMTP (RFC 6698, RFC 7671, RFC 7672).
//
// The engine looks up the TLSA records of an MX host (DNSSEC-secure only),
// builds a [Verifier] from them and sets it as the transport's
// Host.Verifier; the transport then calls [Verifier.VerifyConnection] after
// the handshake instead of doing PKIX verification. A failure is an
// [*Error], whose TLSResultType gives the RFC 8460 result type.
//
// # What is matched
//
// Only DANE-TA(2) and DANE-EE(3) records are used (RFC 7672 section
// 3.1.3); PKIX-TA(0) and PKIX-EE(1) records, unknown selectors and
// matching types, and data of the wrong length for the matching type are
// dropped by [NewVerifier] (see [Record.Usable]). Any one usable record
// that matches authenticates the server (RFC 6698 section 2.1).
//
//   - DANE-EE(3): the server certificate (the first one sent) matches by
//     selector (whole certificate or SubjectPublicKeyInfo) and matching
//     type (Full, SHA-256, SHA-512). Nothing else is looked at: not the
//     names, the validity dates, the key usage nor the rest of the chain
//     (RFC 7672 section 3.1.1).
//   - DANE-TA(2): a certificate sent after the server certificate matches
//     the record and is the trust anchor; the server certificate must
//     chain to it through the certificates sent (signatures, validity dates
//     of every certificate of the chain, the anchor's included, CA
//     basicConstraints and path length of the intermediates, name
//     constraints — crypto/x509 with the anchor as the only root; any
//     extended key usage is accepted), and must be for one of the reference
//     identifiers given to [NewVerifier] (RFC 7672 sections 3.1.2, 3.2.2
//     and 3.2.3): a DNS subjectAltName equal to one, or a wildcard "*" as
//     its whole leftmost label standing for one label, with at least two
//     labels after it; the subject common name only when there is no DNS
//     subjectAltName (crypto/x509 ignores the common name, so the names
//     are checked here).
//   - A "2 0 0" record carries the anchor certificate itself, which then
//     needs not be sent (RFC 7671 section 5.2.2). A "2 1 0" record carries
//     the anchor's bare public key: when no CA sent carries that key, a
//     certificate sent and signed by it (a CA, unless it is the server
//     certificate) stands in for the anchor's child at the top of the chain
//     (RFC 7671 section 5.2.3).
//
// # What is ignored, and choices made
//
// The server certificate is never matched as a DANE-TA anchor, even when
// a DANE-TA record designates it: a DANE-TA record names an issuer, and a
// record for the server's own certificate is what DANE-EE is for. OpenSSL
// (whose DANE code Postfix uses) does the same. The one exception follows
// OpenSSL and the letter of RFC 7671 section 5.2.3: a "2 1 0" key may have
// signed the top certificate sent, which for a self-signed server
// certificate alone is its own key; the name and dates are then checked.
//
// Digest algorithm agility (RFC 7671 section 9) is applied: for each usage
// and selector, SHA-256 records are ignored when SHA-512 ones are present,
// as OpenSSL does; a "3 1 1" record that matches does not authenticate the
// server beside a "3 1 2" record that does not.
//
// Extended key usage is not checked: a DANE-TA server certificate for
// clientAuth only passes. OpenSSL checks the TLS server purpose.
//
// # What is not supported
//
// PKIX-TA(0) and PKIX-EE(1) (unusable for SMTP). Partial wildcards
// ("mx*.example.com"). Chains signed with SHA-1, which crypto/x509 refuses.
// A "2 1 0" key of an algorithm crypto/x509 cannot parse can only match an
// anchor certificate the server sends. [ParseRecord] reads the numeric
// presentation form only, without RFC 7218 mnemonics or zone file
// parentheses.
package dane
