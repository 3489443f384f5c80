// Package xtext encodes and decodes xtext, the form of the ESMTP DSN
// parameters ENVID and ORCPT (RFC 3461 section 4): the one copy shared by
// the transport, which writes them on the wire, and engine/dsn, which reads
// them and writes the reports.
package xtext

import (
	"fmt"
	"strings"
)

const hexDigits = "0123456789ABCDEF"

// Encode encodes s as xtext: every byte outside "!" to "~", and "+" and
// "=", becomes "+" and two upper-case hex digits.
func Encode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Decode decodes xtext. Only "!" to "~" may appear, "=" never, and "+"
// only before two hex digits (lower case is accepted too). The result may
// hold any byte; callers check what they allow. The error says which byte
// at which offset is wrong, without repeating s.
func Decode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", fmt.Errorf("\"+\" at offset %d is not followed by two hex digits", i)
			}
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", fmt.Errorf("byte 0x%02X at offset %d is not allowed", c, i)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f'
}

// unhex is the value of a hex digit (isHex(c) holds).
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
