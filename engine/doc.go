// Package engine is Postern's embedding API: it loads a policy, decides for
// every recipient of a message where and how it is delivered, and explains
// why.
//
// An [Engine] is built from a compiled policy ([LoadFile], [New]) with
// [Options] for the seams an MTA provides: the DNS resolver, the clock, the
// logger, the answers to is_local_domain and is_local_address, and the
// random source used to shuffle MX hosts of equal preference (RFC 5321
// section 5.1). [Engine.Evaluate] returns a [Decision]: recipients grouped by
// domain and route, each group with its outcome (deliver, local, fail,
// defer), the MX hosts in the order they would be tried (RFC 7505 null MX
// and NXDOMAIN fail, NODATA means the implicit MX), their addresses, the
// TLS settings of each host (STARTTLS per RFC 3207, DANE per RFC 7672) and
// the connection settings of each address. [WithTrace] adds every rule
// evaluated, matched or not, with its position in the policy: what
// `postern dry-run` prints.
//
// An Engine is safe for concurrent use. The compiled policy is shared;
// evaluation state (an expression VM and its environment) is pooled, one
// per goroutine at a time. [Engine.Reload] swaps the policy atomically.
package engine
