package mailbox

import (
	"strconv"
	"unicode/utf8"
)

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
