// Package policies reads Postern's YAML policy format (version 1), checks it
// completely when it loads, and compiles it into an immutable [Set].
//
// Every outbound setting is a [Value]: a literal, a literal list, a
// first-match rule list (if/then/else) or a computed expression. Literals are
// validated against the setting's type (enums, durations with a "d" suffix,
// sizes, rates, IP addresses, host names, ports); expressions are compiled by
// package expr with the setting's result type and phase, so a variable that
// is not known yet when the setting is evaluated is a load error, not a
// silent empty string.
//
// Unknown keys are errors at every depth. All problems of a file are
// collected, sorted by position, and returned together as an [ErrorList] of
// [Error] values ("file:line:col: setting: message"). Warnings (a literal
// secret, a rule that can never be reached, an unused list or route) are
// [Warning] values, kept in [Set.Warnings].
//
// The format is documented in docs/policy.md (generated from [Fields]); the
// delivery semantics the settings steer follow RFC 5321 (SMTP), RFC 2033
// (LMTP), RFC 3207 (STARTTLS), RFC 7672 (DANE) and RFC 8461 (MTA-STS).
package policies
