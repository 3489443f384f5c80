// Package mtasts finds the MTA-STS policy of a mail domain (RFC 8461): it
// parses the `_mta-sts` TXT record and the policy file, fetches the policy
// over HTTPS, keeps fetched policies in a cache that survives restarts, and
// decides which policy applies from the TXT state, the cache and the
// network.
//
// The parts, in the order a delivery uses them:
//
//   - [ParseRecord] picks the policy id out of the TXT records at
//     `_mta-sts.DOMAIN` (RFC 8461 section 3.1). The caller looks the
//     records up with its own resolver.
//   - [Fetcher] GETs https://mta-sts.DOMAIN/.well-known/mta-sts.txt
//     (section 3.3) through a caller-supplied host lookup and dialer, and
//     parses the body with [ParsePolicy] (section 3.2). Failures carry the
//     TLS-RPT result type of RFC 8460 section 4.3.2 ([FetchError]).
//   - [Cache] keeps policies by domain in memory and, optionally, one
//     small file per domain.
//   - [Source] applies the rules of sections 3.3, 5.1 and 10.2: when to
//     use a cached policy, when to fetch, what stands in when a fetch
//     fails. It fetches through a [PolicyFetcher] (a Fetcher, or policies
//     from files for offline runs); [Source.NeedsFetch] tells whether a
//     call can be answered from memory.
//   - [Policy.Matches] checks an MX host against the policy (section 4.1);
//     [Policy.Lines] is the policy-string of a TLS-RPT report (RFC 8460
//     section 4.4).
//
// What a policy means for a delivery (enforce: TLS with a PKIX-valid
// certificate to a listed MX host, section 5) is the caller's business.
package mtasts
