package dsn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/postern-mta/postern/internal/xtext"
)

// EncodeXtext encodes s as xtext (RFC 3461 section 4): every byte outside
// "!" to "~", and "+" and "=", becomes "+" and two upper-case hex digits.
// ENVID values are sent this way.
func EncodeXtext(s string) string { return xtext.Encode(s) }

// DecodeXtext decodes xtext (RFC 3461 section 4). Only "!" to "~" may
// appear, "=" never, and "+" only before two hex digits (lower case is
// accepted too). The result may hold any byte; callers check what they
// allow (an ENVID must be printable ASCII, see [Report].EnvID).
func DecodeXtext(s string) (string, error) {
	d, err := xtext.Decode(s)
	if err != nil {
		return "", fmt.Errorf("dsn: xtext %q: %w", s, err)
	}
	return d, nil
}

// ParseORCPT reads the value of the ESMTP ORCPT parameter of RCPT TO
// (RFC 3461 section 4.2), "rfc822;bob+2Bx@example.com", into its address
// type, in lower case ("rfc822"), and the decoded address
// ("bob+x@example.com"). The address of type "utf-8" (RFC 6533 section 3)
// is decoded from its utf-8-addr-xtext or utf-8-addr-unitext form (\x{HEX}
// escapes, raw UTF-8 allowed); any other type from xtext. The decoded
// address must be valid UTF-8 without control characters: an MTA answers a
// parameter that fails here with 501, and the pair it returns can be put
// in [Recipient].Original as addrType+";"+addr.
func ParseORCPT(param string) (addrType, addr string, err error) {
	t, enc, ok := strings.Cut(param, ";")
	if !ok {
		return "", "", fmt.Errorf("dsn: ORCPT %q: no \";\" after the address type", param)
	}
	if !isAtom(t) {
		return "", "", fmt.Errorf("dsn: ORCPT %q: address type %q is not an atom", param, t)
	}
	t = strings.ToLower(t)
	if t == "utf-8" {
		addr, err = decodeUTF8Addr(enc)
	} else {
		addr, err = xtext.Decode(enc)
	}
	if err != nil {
		return "", "", fmt.Errorf("dsn: ORCPT %q: %w", param, err)
	}
	if err := checkAddr(addr); err != nil {
		return "", "", fmt.Errorf("dsn: ORCPT %q: %w", param, err)
	}
	return t, addr, nil
}

// FormatORCPT is the inverse of [ParseORCPT]: the ORCPT parameter value for
// an address of type addrType. A non-ASCII address of type "rfc822" is
// written with type "utf-8", as RFC 6533 asks, and every "utf-8" address in
// its 7-bit utf-8-addr-xtext form, which servers without SMTPUTF8 accept
// too. Other types are xtext-encoded byte by byte.
func FormatORCPT(addrType, addr string) (string, error) {
	if !isAtom(addrType) {
		return "", fmt.Errorf("dsn: ORCPT address type %q is not an atom", addrType)
	}
	if err := checkAddr(addr); err != nil {
		return "", fmt.Errorf("dsn: ORCPT address %q: %w", addr, err)
	}
	t := strings.ToLower(addrType)
	if t == "utf-8" || t == "rfc822" && !isASCII(addr) {
		return "utf-8;" + encodeUTF8Addr(addr, true), nil
	}
	return addrType + ";" + EncodeXtext(addr), nil
}

// encodeUTF8Addr writes addr in the utf-8-addr-xtext form (sevenBit) or the
// utf-8-addr-unitext form of RFC 6533 section 3: controls, space, "\", "+"
// and "=" (and, for the 7-bit form, every non-ASCII character) become
// \x{HEX}.
func encodeUTF8Addr(addr string, sevenBit bool) string {
	var b strings.Builder
	for _, r := range addr {
		if r > ' ' && r < 0x7f && r != '\\' && r != '+' && r != '=' || r >= 0x80 && !sevenBit {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%X}`, r)
	}
	return b.String()
}

// decodeUTF8Addr undoes encodeUTF8Addr for either form.
func decodeUTF8Addr(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return "", fmt.Errorf("invalid UTF-8 at offset %d", i)
		case r == '\\':
			end := strings.IndexByte(s[i:], '}')
			if !strings.HasPrefix(s[i:], `\x{`) || end < 4 || end > 9 {
				return "", fmt.Errorf(`"\" at offset %d does not start a \x{HEX} escape`, i)
			}
			v, err := strconv.ParseUint(s[i+3:i+end], 16, 32)
			if err != nil || v > utf8.MaxRune || v >= 0xD800 && v <= 0xDFFF {
				return "", fmt.Errorf(`escape %s at offset %d is not a Unicode scalar value`, s[i:i+end+1], i)
			}
			b.WriteRune(rune(v))
			i += end + 1
			continue
		case r <= ' ' || r == '+' || r == '=' || r == 0x7f:
			return "", fmt.Errorf("character %q at offset %d must be written as \\x{%X}", r, i, r)
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	return b.String(), nil
}

// isAtom reports whether s is an RFC 5322 atom (letters, digits and
// !#$%&'*+-/=?^_`{|}~), the syntax of DSN address and MTA-name types.
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// errControl is returned for text with a control character, which no
// address, name or identifier may hold: it could end a header line.
var errControl = errors.New("holds a control character")

// maxValue bounds an address or identifier, so that its field always fits
// one line of 998 octets (RFC 5322 section 2.1.1) without being cut.
const maxValue = 900

// checkAddr accepts an address (or any identifier written verbatim into a
// field): not empty, valid UTF-8, no C0 or C1 control, DEL, or
// line or paragraph separator, and at most maxValue bytes.
func checkAddr(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > maxValue:
		return fmt.Errorf("is %d bytes long, more than %d", len(s), maxValue)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if r < ' ' || r >= 0x7f && r < 0xa0 || r == 0x2028 || r == 0x2029 {
			return errControl
		}
	}
	return nil
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
