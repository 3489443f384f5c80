// Package dns resolves the records outbound mail delivery needs — MX, A,
// AAAA, TLSA and TXT — and says how far each answer can be trusted. It
// also names addresses from their PTR records (RFC 1035 section 3.5,
// RFC 3596 section 2.5), through the optional [Reverse] interface.
//
// Three resolvers implement [Resolver]:
//
//   - [Client] asks upstream recursive resolvers over UDP, TCP or DNS over
//     TLS (RFC 1035, RFC 7858), with EDNS0 (RFC 6891), retries, rotation and
//     TCP fallback.
//   - [Cache] wraps a Client (or any [Upstream]) in an LRU cache that honours
//     TTLs, caches negative answers (RFC 2308), collapses concurrent misses,
//     prefetches popular entries and serves stale data when upstreams fail
//     (RFC 8767) — positive answers only: an expired NXDOMAIN or NODATA is
//     reported as a Temporary failure, never served (see [Error.Stale]).
//   - [Static] answers from an RFC 1035 zone file, for offline dry-runs and
//     tests.
//
// [New] builds the right one from a [Config], which mirrors the `dns:` block
// of a policy.
//
// DNSSEC: the package does not validate signatures itself. It sets the DO
// bit and trusts the AD bit of a validating upstream (RFC 4035, RFC 6840)
// only when the path to that upstream cannot be tampered with: a loopback
// address or a DNS-over-TLS connection. Answers that fail validation
// upstream are reported as [ErrBogus], recognised by Extended DNS Errors
// (RFC 8914) or by a retry with the CD bit set. The Secure flags feed DANE
// (RFC 6698, RFC 7672); a null MX (RFC 7505) is reported as MXResult.NullMX.
//
// Results are shared with the cache: the slices in a result must be treated
// as read-only.
package dns
