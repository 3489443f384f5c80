// Package expr is Postern's rule language: the typed variable environment of
// each evaluation phase, the function library, and the compiler that turns a
// policy expression into a program checked for type and phase when the policy
// loads.
//
// The syntax is that of github.com/expr-lang/expr (imported here as exprlang);
// this package adds the mail-specific parts:
//
//   - [Env] holds every variable of every phase as a typed struct field, so
//     expr-lang's checker rejects "size > \"big\"" at load time;
//   - [Phase] orders the delivery phases (recipient, host, connection) and
//     [Library.Compile] walks the syntax tree so that a setting may only use
//     the variables of its own phase or an earlier one; the session phase
//     (the relay's per-RCPT relay.permit rules, RFC 5321 section 3.6.2 relay
//     permission) stands apart with the variables an SMTP session knows;
//   - [Program.Implies] says what a condition proves about its atoms (the
//     relay's open-relay guard asks whether a rule can allow a client that
//     has not authenticated);
//   - [Library] holds the named lists and local domains the functions
//     consult, and validates constant arguments (an unknown list name, a bad
//     CIDR) at load;
//   - errors are [*Error] values that carry the file position of the
//     offending token, with expr-lang's caret snippet kept intact.
//
// Addresses and domains follow RFC 5321 (and RFC 6531 for UTF-8 local parts);
// IP text is canonical per RFC 5952 so that string comparison works.
//
// A compiled [Program] is immutable and safe for concurrent use; evaluation
// needs a [VM], which is not, so keep one per goroutine.
package expr
