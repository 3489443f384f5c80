// Package smtpbed starts real SMTP/LMTP receivers for the transport tests
// and makes what they need: Postfix's smtp-sink (plain SMTP and LMTP, with
// its fault switches), an aiosmtpd receiver with STARTTLS, throwaway
// certificate authorities, and pairs of network namespaces joined by a veth
// for address-family and source-address tests.
//
// Everything listens on loopback or inside namespaces the test creates, and
// is stopped when the test ends.
package smtpbed
