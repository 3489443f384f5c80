package mailbox

import "unicode/utf8"

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
