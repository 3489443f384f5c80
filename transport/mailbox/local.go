package mailbox

import (
	"strconv"
	"unicode/utf8"
)

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
