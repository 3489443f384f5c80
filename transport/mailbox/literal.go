package mailbox

import (
	"net/netip"
	"strconv"
	"strings"
)

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
