// Package textsafe makes strings that come from outside safe to print in
// text meant for a person: a terminal, a log file, the output of a command.
//
// Postern prints many strings it did not write: envelope addresses from the
// command line or the embedding MTA, DNS names and answers, SMTP server
// replies, and names and values from policy files. Printed raw, a line feed
// in any of them starts a line that can pass for a real one (a recipient
// "x@y\nbob@z DELIVERED 250" would add a forged result line to `postern
// send`), a carriage return lets the rest of a line overwrite its start on
// a terminal, an escape sequence (ESC, or the C1 control CSI) can move the
// cursor, recolour or clear the screen, or set the window title, and a
// Unicode bidirectional override or isolate makes a line read in a
// different order than it is written. [Escape] turns every such character
// into a visible escape, so that each line of output is exactly one line
// that Postern meant to write, shown as written.
//
// JSON output does not need this package: encoding/json already escapes
// control characters, and U+2028 and U+2029.
//
// # What is escaped, and how
//
//   - tab, line feed and carriage return as \t, \n and \r;
//   - every other C0 control (U+0000 to U+001F) and DEL (U+007F) as \xNN,
//     for example ESC as \x1b;
//   - a byte that is not part of valid UTF-8 as \xNN;
//   - the C1 controls (U+0080 to U+009F), the bidirectional overrides,
//     embeddings and isolates (U+202A to U+202E, U+2066 to U+2069), the
//     bidirectional marks (U+061C, U+200E, U+200F), and the line and
//     paragraph separators (U+2028, U+2029) as \uNNNN, for example \u202e.
//
// Hex digits are lower case. Every other character, printable UTF-8 such
// as é or 中 included, is kept as it is.
//
// # Backslash is not escaped
//
// A backslash in the input is kept as it is, so the output of "a\\nb" (a
// real backslash followed by n) and of "a\nb" (a line feed) are the same
// text, a\nb. The escaping is meant to make forgery impossible, not to be
// reversible: the output never contains a control character, a line break
// or a bidirectional control whatever the input, so an escaped string can
// never pass for a real line break, only show one as the two characters \n.
// Keeping backslashes has two benefits that matter more here:
//
//   - Strings with no special characters are returned unchanged. Policy
//     expressions are full of backslashes (regular expressions, quoted
//     strings), and Postern's text output shows them exactly as written.
//   - Escape is idempotent: Escape(Escape(s)) == Escape(s). Text is often
//     escaped twice on its way out (an error message escaped when it is
//     built, then again by the printer that shows it), and the second pass
//     changes nothing.
//
// Where the exact bytes matter, use the JSON output, which is exact.
package textsafe

import (
	"strings"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// Escape returns s with the characters that could forge or hide output
// escaped as described in the package documentation. It returns s itself,
// without allocating, when s has nothing to escape. The result is valid
// UTF-8 and contains no control character, no line or paragraph separator
// and no bidirectional control; Escape of the result is the result.
func Escape(s string) string {
	i := firstUnsafe(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != 0x7f:
				b.WriteByte(c)
			case c == '\t':
				b.WriteString(`\t`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			default:
				writeByteEscape(&b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			writeByteEscape(&b, c)
		case unsafeRune(r):
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hexDigits[(r>>shift)&0xf])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// writeByteEscape writes \xNN for c.
func writeByteEscape(b *strings.Builder, c byte) {
	b.WriteString(`\x`)
	b.WriteByte(hexDigits[c>>4])
	b.WriteByte(hexDigits[c&0xf])
}

// firstUnsafe returns the byte index of the first character of s that
// Escape changes, or -1.
func firstUnsafe(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unsafeRune(r) {
			return i
		}
		i += size
	}
	return -1
}

// unsafeRune reports whether r, a valid non-ASCII rune, is escaped: a C1
// control, a bidirectional control, or a line or paragraph separator.
func unsafeRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1 controls, CSI (U+009B) among them
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case r >= 0x2028 && r <= 0x202e: // LS, PS, LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}
