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

// parseLocal parses the Local-part at the start of s and returns the
// offset of the "@" after it, and whether it has non-ASCII characters.
func parseLocal(s string) (at int, nonASCII bool, e *Error) {
	var i int
	if s[0] == '"' {
		if i, nonASCII, e = parseQuoted(s); e != nil {
			return 0, false, e
		}
		if i == len(s) {
			return 0, false, fail(s, i, `missing "@"`)
		}
		if s[i] != '@' {
			if r := byteReason(s, i, "local part"); r != "" {
				return 0, false, fail(s, i, r)
			}
			return 0, false, fail(s, i, `expected "@" after the quoted local part`)
		}
	} else {
		atom := 0 // start of the current atom
		for i < len(s) {
			c := s[i]
			switch {
			case isAtext[c]:
				i++
			case c == '.':
				switch {
				case i == 0:
					return 0, false, fail(s, i, "local part starts with a dot")
				case i == atom:
					return 0, false, fail(s, i, "consecutive dots in the local part")
				}
				i++
				atom = i
			case c >= utf8.RuneSelf:
				n, r := nonASCIIAt(s, i)
				if r != "" {
					return 0, false, fail(s, i, r)
				}
				i += n
				nonASCII = true
			default:
				goto end
			}
		}
	end:
		switch {
		case i == len(s):
			return 0, false, fail(s, i, `missing "@"`)
		case s[i] != '@':
			if r := byteReason(s, i, "local part"); r != "" {
				return 0, false, fail(s, i, r)
			}
			if s[i] == '"' {
				return 0, false, fail(s, i, "quote inside an unquoted local part (quote the whole local part)")
			}
			return 0, false, fail(s, i, "character "+strconv.QuoteRune(rune(s[i]))+" is not allowed in an unquoted local part")
		case i == 0:
			return 0, false, fail(s, i, "empty local part")
		case i == atom:
			return 0, false, fail(s, i-1, "local part ends with a dot")
		}
	}
	if i > MaxLocalLen {
		return 0, false, fail(s, MaxLocalLen, "local part longer than "+strconv.Itoa(MaxLocalLen)+" octets")
	}
	return i, nonASCII, nil
}

// parseQuoted parses the Quoted-string at the start of s and returns the
// offset just after its closing quote.
func parseQuoted(s string) (end int, nonASCII bool, e *Error) {
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			if i == 1 {
				return 0, false, fail(s, 0, "empty quoted local part")
			}
			return i + 1, nonASCII, nil
		case c == '\\':
			// quoted-pairSMTP = %d92 %d32-126: no controls, and (RFC 6531
			// extends only qtextSMTP) no UTF-8 either.
			if i+1 == len(s) {
				return 0, false, fail(s, i+1, "unterminated quoted local part")
			}
			if d := s[i+1]; d < ' ' || d > '~' {
				if r := byteReason(s, i+1, "quoted local part"); r != "" {
					return 0, false, fail(s, i+1, r)
				}
				return 0, false, fail(s, i+1, "a backslash in a quoted local part must be followed by a printable ASCII character")
			}
			i += 2
		case c >= ' ' && c <= '~': // the rest of qtextSMTP: %d32-33 / %d35-91 / %d93-126
			i++
		case c >= utf8.RuneSelf:
			n, r := nonASCIIAt(s, i)
			if r != "" {
				return 0, false, fail(s, i, r)
			}
			i += n
			nonASCII = true
		default:
			return 0, false, fail(s, i, byteReason(s, i, "quoted local part"))
		}
	}
	return 0, false, fail(s, len(s), "unterminated quoted local part")
}

// parseDomain parses the Domain that starts at offset start of s and runs
// to its end.
func parseDomain(s string, start int) (dom string, nonASCII bool, e *Error) {
	if start == len(s) {
		return "", false, fail(s, start, "empty domain")
	}
	end := len(s)
	upper := false
	for i := start; ; {
		label := i
		for i < len(s) {
			c := s[i]
			switch ldh[c] {
			case ldhLower:
				i++
			case ldhUpper:
				upper = true
				i++
			case ldhNonASCII:
				n, r := nonASCIIAt(s, i)
				if r != "" {
					return "", false, fail(s, i, r)
				}
				i += n
				nonASCII = true
			default:
				goto labelEnd
			}
		}
	labelEnd:
		if i == label {
			switch {
			case i == len(s):
				// A single trailing dot (the previous label was not
				// empty, or we would have failed): the root, dropped.
				end = i - 1
				goto done
			case s[i] != '.':
				return "", false, fail(s, i, domainByteReason(s, i))
			case i == start:
				return "", false, fail(s, i, "domain starts with a dot")
			case i+1 == len(s):
				return "", false, fail(s, i, "domain ends with two dots")
			default:
				return "", false, fail(s, i, "consecutive dots in the domain")
			}
		}
		// sub-domain = Let-dig [Ldh-str]: no hyphen at either end. "_" is
		// tolerated like a hyphen (inside the label only), a leniency for
		// the host names that carry it; U-labels follow the same rule
		// (RFC 5891 section 4.2.3.1).
		if c := s[label]; c == '-' || c == '_' {
			return "", false, fail(s, label, "domain label starts with "+strconv.QuoteRune(rune(c)))
		}
		if c := s[i-1]; c == '-' || c == '_' {
			return "", false, fail(s, i-1, "domain label ends with "+strconv.QuoteRune(rune(c)))
		}
		if i-label > MaxLabelLen {
			return "", false, fail(s, label+MaxLabelLen, "domain label longer than "+strconv.Itoa(MaxLabelLen)+" octets")
		}
		if i == len(s) {
			break
		}
		if s[i] != '.' {
			return "", false, fail(s, i, domainByteReason(s, i))
		}
		i++
	}
done:
	if end-start > MaxDomainLen {
		return "", false, fail(s, start+MaxDomainLen, "domain longer than "+strconv.Itoa(MaxDomainLen)+" octets")
	}
	dom = s[start:end]
	if upper {
		// Only ASCII: DNS compares names case-insensitively in ASCII only
		// (RFC 4343), and the Unicode case mapping of U-labels belongs to
		// IDNA, whose mapping differs from unicode.ToLower (U+0130, U+212A).
		dom = lowerASCII(dom)
	}
	return dom, nonASCII, nil
}

func domainByteReason(s string, i int) string {
	if r := byteReason(s, i, "domain"); r != "" {
		return r
	}
	switch s[i] {
	case '@':
		return `second "@" (an "@" in the local part must be quoted)`
	case '[':
		return `an address literal must be the whole domain, as in "[192.0.2.1]"`
	}
	return "character " + strconv.QuoteRune(rune(s[i])) + " is not allowed in a domain"
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// parseLiteral parses the address-literal of RFC 5321 section 4.1.3 that
// starts at offset start of s (at its "[") and runs to its end.
func parseLiteral(s string, start int) (dom string, addr netip.Addr, e *Error) {
	closing := strings.IndexByte(s[start:], ']')
	if closing < 0 {
		for i := start + 1; i < len(s); i++ {
			if r := byteReason(s, i, "address literal"); r != "" {
				return "", netip.Addr{}, fail(s, i, r)
			}
		}
		return "", netip.Addr{}, fail(s, len(s), `unterminated address literal (missing "]")`)
	}
	closing += start
	// dcontent = %d33-90 / %d94-126: printable ASCII but "[", "\", "]".
	// Angle brackets are dcontent, but none of the literals we accept has
	// them: name them rather than let a literal parser stumble on them.
	for i := start + 1; i < closing; i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '[' || c == '\\' || c == '<' || c == '>' {
			if r := byteReason(s, i, "address literal"); r != "" {
				return "", netip.Addr{}, fail(s, i, r)
			}
			return "", netip.Addr{}, fail(s, i, "character "+strconv.QuoteRune(rune(c))+" is not allowed in an address literal")
		}
	}
	if closing+1 != len(s) {
		if r := byteReason(s, closing+1, "domain"); r != "" {
			return "", netip.Addr{}, fail(s, closing+1, r)
		}
		return "", netip.Addr{}, fail(s, closing+1, `unexpected characters after the address literal`)
	}
	content := s[start+1 : closing]
	if content == "" {
		return "", netip.Addr{}, fail(s, start+1, "empty address literal")
	}
	colon := strings.IndexByte(content, ':')
	if colon < 0 {
		addr, e = parseIPv4(s, start+1, closing)
		if e != nil {
			return "", netip.Addr{}, e
		}
		// No leading zeros and nothing else to vary: the input is the
		// canonical form already.
		return s[start : closing+1], addr, nil
	}
	tag := content[:colon]
	if !strings.EqualFold(tag, "IPv6") {
		if addr, err := netip.ParseAddr(content); err == nil && addr.Is6() {
			return "", netip.Addr{}, fail(s, start+1, `IPv6 address literal without the "IPv6:" tag (write [IPv6:`+content+`])`)
		}
		// General-address-literal = Standardized-tag ":" 1*dcontent;
		// Standardized-tag = Ldh-str.
		if !isLdhStr(tag) {
			return "", netip.Addr{}, fail(s, start+1, "invalid address literal (neither an IPv4 address nor tag:address)")
		}
		return "", netip.Addr{}, fail(s, start+1, "general address literals are not supported (tag "+strconv.Quote(tag)+"); only IPv4 and IPv6 literals are")
	}
	v6 := content[colon+1:]
	v6start := start + 1 + colon + 1
	if i := strings.IndexByte(v6, '%'); i >= 0 {
		return "", netip.Addr{}, fail(s, v6start+i, "an IPv6 zone is not allowed in an address literal")
	}
	addr, err := netip.ParseAddr(v6)
	if err != nil {
		return "", netip.Addr{}, fail(s, v6start, "invalid IPv6 address in the address literal: "+err.Error())
	}
	if !addr.Is6() {
		return "", netip.Addr{}, fail(s, v6start, `an "IPv6:" literal holds an IPv4 address (write it as [192.0.2.1])`)
	}
	var buf [len("[IPv6:") + len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255") + len("]")]byte
	b := append(buf[:0], "[IPv6:"...)
	b = addr.AppendTo(b)
	b = append(b, ']')
	if string(b) == s[start:] {
		return s[start:], addr, nil // canonical already: no allocation
	}
	return string(b), addr, nil
}

// isLdhStr reports whether s is an Ldh-str of RFC 5321 section 4.1.2:
// letters, digits and hyphens, not ending with a hyphen.
func isLdhStr(s string) bool {
	if s == "" || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; ldh[c] != ldhLower && ldh[c] != ldhUpper || c == '_' {
			return false
		}
	}
	return true
}

// parseIPv4 parses the IPv4-address-literal (four Snum) between offsets
// start and end of s.
func parseIPv4(s string, start, end int) (netip.Addr, *Error) {
	var ip [4]byte
	i := start
	for part := 0; ; part++ {
		num := i
		n := 0
		for i < end && '0' <= s[i] && s[i] <= '9' && i-num < 3 {
			n = n*10 + int(s[i]-'0')
			i++
		}
		switch {
		case i == num && i == end && part > 0:
			return netip.Addr{}, fail(s, i-1, "IPv4 address literal ends with a dot")
		case i == num:
			return netip.Addr{}, fail(s, i, "expected a decimal number in the IPv4 address literal")
		case i < end && '0' <= s[i] && s[i] <= '9':
			return netip.Addr{}, fail(s, num, "number of more than three digits in the IPv4 address literal")
		case s[num] == '0' && i-num > 1:
			// RFC 5321's Snum allows "010", but inet_aton and others read
			// a leading zero as octal (8, not 10): refuse the ambiguity.
			return netip.Addr{}, fail(s, num, "leading zero in the IPv4 address literal (it could be read as octal)")
		case n > 255:
			return netip.Addr{}, fail(s, num, "number "+strconv.Itoa(n)+" greater than 255 in the IPv4 address literal")
		}
		ip[part] = byte(n)
		if part == 3 {
			break
		}
		if i == end {
			return netip.Addr{}, fail(s, i, "IPv4 address literal with "+strconv.Itoa(part+1)+" numbers; it needs four")
		}
		if s[i] != '.' {
			return netip.Addr{}, fail(s, i, "character "+strconv.QuoteRune(rune(s[i]))+" is not allowed in an IPv4 address literal")
		}
		i++
	}
	if i != end {
		if s[i] == '.' && i+1 == end {
			return netip.Addr{}, fail(s, i, "IPv4 address literal ends with a dot")
		}
		if s[i] == '.' {
			return netip.Addr{}, fail(s, i, "IPv4 address literal with more than four numbers")
		}
		return netip.Addr{}, fail(s, i, "character "+strconv.QuoteRune(rune(s[i]))+" is not allowed in an IPv4 address literal")
	}
	return netip.AddrFrom4(ip), nil
}

// byteReason names the problem with s[i] if it is a byte that is wrong in
// any part of an address: a control character, a space, an angle bracket,
// a non-ASCII byte that is not valid UTF-8 or encodes a C1 control. It
// returns "" for other bytes.
func byteReason(s string, i int, where string) string {
	c := s[i]
	switch {
	case c < ' ' || c == 0x7f:
		return "control character " + controlName(rune(c)) + " in the " + where
	case c == ' ':
		if where == "local part" {
			return "space outside quotes"
		}
		return "space in the " + where
	case c == '<' || c == '>':
		return "angle bracket in the " + where + " (pass the mailbox without <>)"
	case c >= utf8.RuneSelf:
		if _, r := nonASCIIAt(s, i); r != "" {
			return r
		}
		if where == "address literal" {
			return "non-ASCII character in the address literal"
		}
		if where == "quoted local part" { // after a backslash
			return "a backslash in a quoted local part must be followed by a printable ASCII character"
		}
	}
	return ""
}

// nonASCIIAt decodes the non-ASCII character at s[i] and returns its size,
// or a reason if it is not valid UTF-8 or is a C1 control character.
func nonASCIIAt(s string, i int) (size int, reason string) {
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n == 1 {
		return 0, "invalid UTF-8"
	}
	if isControl(r) {
		return 0, "control character " + controlName(r)
	}
	return n, ""
}

// isControl reports whether r is a C0 or C1 control character or DEL
// (Unicode general category Cc).
func isControl(r rune) bool {
	return r < ' ' || 0x7f <= r && r <= 0x9f
}

func controlName(r rune) string {
	const hex = "0123456789ABCDEF"
	name := "U+00" + string([]byte{hex[r>>4], hex[r&0xf]})
	switch r {
	case 0:
		name += " (NUL)"
	case '\t':
		name += " (TAB)"
	case '\n':
		name += " (LF)"
	case '\r':
		name += " (CR)"
	case 0x7f:
		name += " (DEL)"
	}
	return name
}

// Classes of the bytes of a domain label, for parseDomain.
const (
	ldhOther    = iota
	ldhLower    // a-z, 0-9, "-" and the tolerated "_"
	ldhUpper    // A-Z
	ldhNonASCII // the first byte of a UTF-8 character, or not UTF-8
)

var ldh = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = ldhLower
		t[c-'a'+'A'] = ldhUpper
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = ldhLower
	}
	t['-'], t['_'] = ldhLower, ldhLower
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = ldhNonASCII
	}
	return t
}()

// isAtext holds atext of RFC 5321 section 4.1.2 (RFC 5322 section 3.2.3):
// ALPHA, DIGIT and !#$%&'*+-/=?^_`{|}~. The non-ASCII characters RFC 6531
// adds are checked separately.
var isAtext = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-/=?^_`{|}~" {
		t[c] = true
	}
	return t
}()
