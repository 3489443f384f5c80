// Package mailbox parses e-mail addresses as SMTP carries them: the Mailbox
// of RFC 5321 section 4.1.2 (a Dot-string or Quoted-string local part, "@",
// and a domain or an address literal of section 4.1.3), extended by RFC 6531
// section 3.3 (SMTPUTF8) with UTF-8 in local parts and U-labels in domains,
// and held to the length limits of RFC 5321 section 4.5.3.1.
//
// It is meant as the one address parser of Postern, for the engine and the
// transport alike, so that an address the engine accepts is exactly an
// address the transport can put in a MAIL FROM or RCPT TO path. Nothing it
// accepts can carry a control character, a line break, or (outside a
// quoted local part) a space or an angle bracket into that command line.
//
// The parser is strict about the grammar and makes a few deliberate choices,
// each documented where it applies:
//
//   - "_" is tolerated inside domain labels (not at their start or end),
//     because real host names carry it;
//   - a single trailing dot of a domain is dropped;
//   - only the ASCII letters of a domain are lower-cased: the non-ASCII
//     characters of U-labels keep their case, and U-labels are not checked
//     against IDNA (RFC 5890), which is a job for whoever converts them to
//     A-labels;
//   - IPv4 literals with leading zeros, general address literals and empty
//     quoted local parts are refused;
//   - control characters (C0, DEL and the C1 controls U+0080 to U+009F) are
//     refused everywhere, also where RFC 6531's UTF8-non-ascii would admit
//     the C1 ones.
package mailbox

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Length limits of RFC 5321 section 4.5.3.1, in octets of the wire form.
const (
	// MaxLocalLen is the longest local part (section 4.5.3.1.1), counting
	// the quotes and backslashes of a Quoted-string.
	MaxLocalLen = 64
	// MaxLabelLen is the longest label of a domain (RFC 1035 section
	// 2.3.4); for a U-label it counts UTF-8 octets.
	MaxLabelLen = 63
	// MaxDomainLen is the longest domain (section 4.5.3.1.2). It cannot bind
	// in practice: MaxAddressLen is tighter.
	MaxDomainLen = 255
	// MaxAddressLen is the longest address: a path is at most 256 octets
	// including its angle brackets (section 4.5.3.1.3).
	MaxAddressLen = 254
)

// Address is a parsed mailbox. Its fields are in canonical form, so two
// Addresses of the same mailbox written the same way compare equal with ==;
// String gives the form to put between the angle brackets of an SMTP path.
type Address struct {
	// Local is the local part exactly as it goes on the wire: a Dot-string,
	// or a Quoted-string with its quotes and backslashes. Its case is
	// preserved: only the host of the domain may interpret it (RFC 5321
	// section 2.4).
	Local string
	// Domain is a domain, its ASCII letters lower-cased and without a
	// trailing dot, or an address literal in canonical form: "[192.0.2.7]"
	// or "[IPv6:2001:db8::1]" (the IPv6 address as RFC 5952 writes it).
	Domain string
	// Literal is the IP address of an address literal (an IPv4-mapped IPv6
	// literal stays an IPv6 address); it is the zero, invalid netip.Addr
	// when Domain is a domain.
	Literal netip.Addr
	// UTF8 reports that the address needs the SMTPUTF8 extension (RFC 6531):
	// its local part or its domain has non-ASCII characters.
	UTF8 bool
}

// String returns the address in wire form, Local + "@" + Domain, or "" for
// the zero Address (the null reverse-path).
func (a Address) String() string {
	if a.IsZero() {
		return ""
	}
	return a.Local + "@" + a.Domain
}

// IsZero reports whether a is the zero Address, which ParseReversePath
// returns for the null reverse-path.
func (a Address) IsZero() bool {
	return a.Local == "" && a.Domain == ""
}

// Error is the error of Parse and ParseReversePath: why Input is not a
// mailbox, and at which byte.
type Error struct {
	// Input is the string given to the parser, unchanged.
	Input string
	// Offset is the byte offset in Input where the problem was found; it
	// is len(Input) when the input ends too early.
	Offset int
	// Reason says what is wrong, in words for a log or an SMTP reply.
	Reason string
}

// maxShown is how many bytes of the input Error prints at most.
const maxShown = 100

// Error returns `invalid address "<input>": <reason> (at byte <offset>)`.
// The input is escaped as strconv.Quote does, so the message never holds
// control characters or line breaks, and an input longer than about 100
// bytes is cut short, marked with "...".
func (e *Error) Error() string {
	in, more := e.Input, ""
	if len(in) > maxShown {
		n := maxShown
		for n > maxShown-utf8.UTFMax && !utf8.RuneStart(in[n]) {
			n--
		}
		in, more = in[:n], "..."
	}
	reason := e.Reason
	if strings.ContainsFunc(reason, func(r rune) bool { return isControl(r) || r == utf8.RuneError }) {
		reason = strconv.Quote(reason)
	}
	return "invalid address " + strconv.Quote(in) + more + ": " + reason + " (at byte " + strconv.Itoa(e.Offset) + ")"
}

// Parse parses s as a Mailbox of RFC 5321 section 4.1.2, without angle
// brackets: a forward-path, or the reverse-path of a message that has a
// sender. The error is always an *Error.
func Parse(s string) (Address, error) {
	if s == "" {
		return Address{}, &Error{Input: s, Reason: "empty address"}
	}
	return parse(s)
}

// ParseReversePath is Parse for a reverse-path (MAIL FROM): the empty
// string is the null reverse-path "<>" of RFC 5321 section 4.5.5 and gives
// the zero Address and no error.
func ParseReversePath(s string) (Address, error) {
	if s == "" {
		return Address{}, nil
	}
	return parse(s)
}

func parse(s string) (Address, error) {
	// Every valid address is at most MaxAddressLen+1 octets long before
	// canonicalisation (a trailing dot is the only thing that can make the
	// input of a long address longer; address literals are far shorter), so
	// this refuses nothing valid and bounds the work.
	if len(s) > MaxAddressLen+1 {
		return Address{}, fail(s, MaxAddressLen, "address longer than "+strconv.Itoa(MaxAddressLen)+" octets")
	}
	at, localUTF8, e := parseLocal(s)
	if e != nil {
		return Address{}, e
	}
	a := Address{Local: s[:at], UTF8: localUTF8}
	var domUTF8 bool
	if at+1 < len(s) && s[at+1] == '[' {
		a.Domain, a.Literal, e = parseLiteral(s, at+1)
	} else {
		a.Domain, domUTF8, e = parseDomain(s, at+1)
	}
	if e != nil {
		return Address{}, e
	}
	a.UTF8 = a.UTF8 || domUTF8
	if len(a.Local)+1+len(a.Domain) > MaxAddressLen {
		return Address{}, fail(s, MaxAddressLen, "address longer than "+strconv.Itoa(MaxAddressLen)+" octets")
	}
	return a, nil
}

func fail(s string, off int, reason string) *Error {
	return &Error{Input: s, Offset: off, Reason: reason}
}
