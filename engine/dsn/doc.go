// Package dsn builds delivery status notifications: the bounce, delay
// warning or success report an MTA sends to the envelope sender of a
// message, as one complete RFC 5322 message ready to be queued with the
// null sender.
//
// [Build] takes a [Report] of plain values (the engine's results fill the
// per-recipient ones) and writes a multipart/report (RFC 6522) with three
// parts: a text/plain explanation for people, a message/delivery-status
// part (RFC 3464) with one group of fields per recipient, and the original
// message (message/rfc822) or only its header (text/rfc822-headers), as the
// sender's RET parameter (RFC 3461) asks. Status codes are RFC 3463's;
// Auto-Submitted: auto-replied (RFC 3834) marks the message as automatic.
//
// Internationalised mail follows RFC 6533: when a recipient address is not
// ASCII, the status part is message/global-delivery-status with the utf-8
// address type, and an original whose header is UTF-8 (RFC 6532) comes
// back as message/global or message/global-headers.
//
// [ParseORCPT] and [FormatORCPT] read and write the ORCPT parameter of RCPT
// TO (RFC 3461 section 4.2, xtext; RFC 6533 for utf-8 addresses);
// [DecodeXtext] reads the ENVID parameter. NOTIFY lives in the transport
// package (transport.NotifyFlags).
//
// # What is refused, what is cleaned
//
// Nothing in a Report can add a header field, a status field or a MIME
// part. Values the embedding MTA owns and has already checked — addresses,
// host names, the envelope ID, the status code, the Message-ID — are
// refused with an error when they hold a control character (CR and LF
// included), so a bad value is found rather than altered. Text that comes
// from the network — the remote server's reply and host name — is cleaned
// instead, because a hostile server must not be able to stop the bounce:
// tabs and line breaks become spaces, other controls and Unicode
// bidirectional controls become a visible \x{HEX}, and in an ASCII status
// part so does every non-ASCII character. The MIME boundary is checked
// against every byte of content.
package dsn
