// Package transport delivers one message to a group of recipients
// according to a [Plan]: it dials (source address, address order,
// timeouts), speaks SMTP or LMTP, negotiates TLS, runs the transaction, and
// returns exactly one [Result] per recipient. It knows nothing about policy
// files or expressions: the engine hands it settled values, and a small
// [Settings] callback for the values that depend on the host and address it
// reaches.
//
// Standards: RFC 5321 (SMTP), RFC 2033 (LMTP), RFC 3207 (STARTTLS),
// RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING/BDAT),
// RFC 3461 (DSN parameters), RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8),
// RFC 4954 (AUTH PLAIN and LOGIN), RFC 8689 (REQUIRETLS), RFC 7435
// (opportunistic TLS). DANE (RFC 7672) and MTA-STS (RFC 8461) plug in through
// [Host.Verifier] and [Host.MTASTSEnforce]; the lookups and the matching
// live elsewhere.
//
// # Using it
//
// A [Client] is long-lived and safe for concurrent use; it pools
// connections. Per message and group, build a Plan (the hosts in order, each
// with its addresses in order and its settings) and a [Message] (envelope and
// body), then call [Client.Deliver]:
//
//	c := &transport.Client{}
//	defer c.Close()
//	results := c.Deliver(ctx, plan, msg) // len(results) == len(msg.Recipients)
//
// Check a result's Status; for failures, Err is a *[Error] with the SMTP
// code, enhanced code, class (the last_error word) and Temporary().
//
// # Why an SMTP client of our own
//
// An MTA needs a result per recipient: reply code, enhanced code and failure
// class, including LMTP's one reply per recipient after the data, where
// net/smtp returns an error per command and reads one reply. net/smtp also
// has no deadline per phase, no LMTP, no BDAT (CHUNKING), and a StartTLS that
// neither forbids plaintext after a refused or missing STARTTLS (deferring
// the message, as a downgrade attack must be answered) nor refuses a server
// that sent data after its 220 reply (response injection). Client libraries
// such as github.com/emersion/go-smtp do not pipeline, which costs a round
// trip per command and recipient, so Postern speaks SMTP itself.
//
// # What happens
//
// A [Plan] is settled before delivery: every host with its targets, each
// target an address with its source address, EHLO name and timeouts. The
// client decides nothing of the policy's. For each host in order, then each
// target in order: call [Hooks.BeforeConnect] (if any; the engine takes
// the slots of connection-level throttles there), take a pooled connection
// to the same target or connect, read the greeting, EHLO (LHLO for LMTP;
// HELO after a 5xx unless TLS is strict), STARTTLS per [StartTLSMode], EHLO
// again, AUTH, then the transaction: MAIL FROM (SIZE, BODY=8BITMIME,
// SMTPUTF8, REQUIRETLS, RET, ENVID), RCPT TO (NOTIFY, ORCPT), and DATA (or
// BDAT when CHUNKING is offered), pipelined when PIPELINING is offered.
//
// TLS is strict (no byte of the message in plaintext, no fallback) when the
// host's StartTLS is require, a DANE Verifier is set, MTA-STS enforce
// applies, the message has RequireTLS, or the host uses implicit TLS. A
// strict host that does not offer STARTTLS, refuses it or refuses EHLO is a
// temporary failure (451 4.7.10): the next host is tried, and the message is
// deferred rather than bounced, as RFC 8461 section 5.1 asks, because that
// is what a downgrade attack looks like. Only a message with RequireTLS
// fails permanently there (550 5.7.10, RFC 8689). Otherwise (optional) a
// server without STARTTLS gets plaintext, one that refuses it (4xx/5xx) gets
// plaintext with a warning, and a failed handshake leads to one reconnection
// in plaintext, with a warning on the results. An optional session whose
// certificate does not verify stays encrypted, with a warning:
// unauthenticated TLS is never worse than the plaintext that optional mode
// would accept (RFC 7435). In both modes a positive reply to STARTTLS other
// than 220 is a protocol error (451 4.5.0): the connection is dropped and
// the next host tried.
//
// The body is normalised on the way out: every line ends in CRLF (bare LF
// and bare CR become CRLF) and leading dots are doubled, so nothing on the
// wire can be read as an end of data by a different parser (SMTP
// smuggling).
//
// # Failures and classes
//
// Each failed result carries an *Error whose Class is the last_error word of
// the next attempt:
//
//	connection        TCP connect failed or timed out (451 4.4.1)
//	io                connection lost, a phase timed out, the context ended,
//	                  or a panic was recovered (451 4.4.2 / 4.3.0)
//	unexpected-reply  a 4xx/5xx reply (its code), a reply that is not SMTP
//	                  (451 4.5.0), or a limit the server announced (SIZE:
//	                  552 5.3.4, SMTPUTF8: 553 5.6.7)
//	tls               STARTTLS missing or refused under strict TLS (451
//	                  4.7.10; 550 5.7.10 for a REQUIRETLS message),
//	                  handshake or PKIX failure (454 4.7.5), plaintext
//	                  AUTH refused (454 4.7.10), REQUIRETLS not offered
//	                  (550 5.7.30)
//	dane, mta-sts     certificate refused by the Verifier, or PKIX failure
//	                  under MTA-STS enforce
//	dns               a host without a target (550 5.4.4), or no host
//	(any)             a BeforeConnect error: its own class (a plain error is
//	                  connection)
//
// Failures before MAIL FROM decide where to go next: a connection failure
// (refused, connect timeout, connection lost or timed out after the
// greeting) moves to the next address of the same host; a failed greeting
// and anything the host itself answered (EHLO, TLS, AUTH,
// SIZE/SMTPUTF8/REQUIRETLS) move to the next host.
//
// Connections are reused for up to [Plan.MessagesPerConnection]
// transactions and [Client.IdleTimeout], with RSET between transactions,
// when they lead to the same address from the same source with the same TLS
// requirements, EHLO name and credentials. With PIPELINING the RSET goes out
// with the next transaction's commands (RFC 2920 allows it anywhere in a
// group) instead of costing a round trip; a pooled connection that fails it
// is replaced by another, and nothing of the message was taken on it. A
// connection that had an I/O or protocol error, a 421, or a refused MAIL
// FROM is closed.
package transport
