// Package smtpd is the relay's SMTP listener: it accepts mail from clients
// and hands each message to a [Store] (the daemon's spool), built on
// github.com/emersion/go-smtp.
//
// # Protocols
//
// SMTP (RFC 5321) with PIPELINING (RFC 2920), 8BITMIME (RFC 6152),
// ENHANCEDSTATUSCODES (RFC 2034, codes from RFC 3463), SIZE (RFC 1870),
// CHUNKING/BDAT (RFC 3030; BINARYMIME is not offered, so every body is
// line-normalised), DSN parameters NOTIFY, ORCPT, RET, ENVID (RFC 3461,
// xtext-decoded into the envelope), SMTPUTF8 (RFC 6531), REQUIRETLS (RFC
// 8689, advertised and accepted over TLS only), STARTTLS (RFC 3207),
// implicit TLS for submissions (RFC 8314), message submission (RFC 6409),
// AUTH PLAIN and LOGIN (RFC 4954, RFC 4616) checked against a bcrypt users
// file, and HAProxy's PROXY protocol v1 and v2 in front of a listener.
//
// # The acknowledgement rule
//
// A message is answered "250 2.0.0 Ok: queued as ID" only after the
// Receipt's Commit returned nil: what durability that promises is the
// Store's contract (the spool fsyncs before returning). Every other
// outcome is a refusal and the receipt is aborted: 451 4.3.0 for a local
// failure, 452 4.3.1 for a full disk or queue, 421 4.3.2 when Shutdown's
// deadline cuts a transfer off. A transfer cut off by the client, RSET or
// a closed connection is never committed.
//
// Intake checks, in order: connection caps per listener and per client
// address (421 4.7.0) and the PROXY header; at MAIL, SIZE over the limit
// (552 5.3.4), Admit (452 4.3.1, 421 4.3.2); at RCPT, address syntax (501
// 5.1.3), the recipients cap (452 4.5.3), relay permission (554 5.7.1); in
// DATA or BDAT, while streaming: Received fields in the header section
// (at Hops or more: 554 5.4.6), bare LF or CR (normalised to CRLF, or 550
// 5.5.2 and the connection closed), the header-section cap and the size
// cap (552 5.3.4), lines over 2000 octets (554 5.6.0). The header section
// is held in memory until it ends, so that the Store gets a complete
// envelope (hop count and Message-ID included); then our Received header
// is written first, the rest streams through.
//
// # Who may relay
//
// On an smtp listener a recipient is accepted when the client's address
// is in Config.Networks or the client authenticated (AUTH, only offered
// after TLS; AllowInsecureAuth is never set). Config.Permit, when set,
// then has the last word: it gets that default and returns the decision,
// so policy rules can deny (a rule "then: false") or allow; an error from
// it refuses the recipient (451 4.3.0), never allows it. On submission and
// submissions listeners MAIL needs TLS and AUTH first (530 5.7.0), and
// Networks grant nothing. Config.Networks empty means nobody relays
// without AUTH. Refusing open-relay configurations (0.0.0.0/0 networks on
// a public address) is the policy loader's job, at load time.
//
// Behind a load balancer, a listener with ProxyTrusted takes the client
// address from the PROXY header, which it requires from the trusted peers
// and refuses (closes) everyone else, so that no client can pose as the
// balancer.
//
// # Shutdown
//
// Shutdown closes the listeners; open sessions get 421 4.3.2 at their next
// MAIL; transfers in progress may finish and get their 250 until
// Shutdown's context ends; then every connection is interrupted: a
// transfer is answered 421 4.3.2 and aborted, never acknowledged.
//
// # Observability
//
// One log line per message queued: "queued id=… from=<…> size=…
// nrcpt=… client=host[ip] listener=… tls=… auth=…", and one per refusal;
// never a password or a body. Metrics (when Config.Registerer is set):
// postern_relay_sessions{listener}, postern_relay_messages_received_total
// {listener,result} and postern_relay_rejects_total{listener,reason}.
// go-smtp answers some refusals itself, uncounted: malformed commands and
// paths (501 5.5.x), MAIL with SIZE= over the limit and a BDAT chunk that
// would cross it (552 5.3.4), lines over 2000 octets seen while reading a
// command (500 5.4.0, and it closes the connection).
package smtpd
