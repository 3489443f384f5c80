package smtpd

import (
	"net/netip"
	"strings"
	"unicode/utf8"
)

// splitAddress checks a mailbox as go-smtp hands it over (angle brackets
// and source route gone) against RFC 5321 4.1.2 and 4.5.3.1, leniently on
// the local part (any atext and dots, as Postfix accepts), strictly on the
// domain (LDH labels or an address literal). Non-ASCII is allowed only
// with SMTPUTF8 (RFC 6531). It returns the domain in lower case.
func splitAddress(addr string, utf8OK bool) (domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || len(addr) > 254 {
		return "", false
	}
	local, dom := addr[:at], addr[at+1:]
	if len(local) > 64 {
		return "", false
	}
	if !utf8.ValidString(addr) {
		return "", false
	}
	for _, r := range local {
		switch {
		case r >= 0x80:
			if !utf8OK {
				return "", false
			}
		case isAtext(byte(r)), r == '.':
		default:
			return "", false
		}
	}
	if strings.HasPrefix(dom, "[") {
		if !strings.HasSuffix(dom, "]") {
			return "", false
		}
		lit := dom[1 : len(dom)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			a, err := netip.ParseAddr(v6)
			if err != nil || !a.Is6() || a.Zone() != "" {
				return "", false
			}
			return dom, true
		}
		a, err := netip.ParseAddr(lit)
		if err != nil || !a.Is4() {
			return "", false
		}
		return dom, true
	}
	if len(dom) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(dom, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for _, r := range label {
			switch {
			case r >= 0x80:
				if !utf8OK {
					return "", false
				}
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			default:
				return "", false
			}
		}
	}
	return strings.ToLower(dom), true
}

// isAtext reports whether c is RFC 5322 atext (ASCII).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
