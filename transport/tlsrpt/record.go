package tlsrpt

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// ErrNoRecord means the domain publishes no usable TLSRPT policy: none of
// its "_smtp._tls" TXT records is a v=TLSRPTv1 record, or several are
// (RFC 8460 section 3 treats both as "does not implement TLSRPT").
var ErrNoRecord = errors.New("tlsrpt: no single v=TLSRPTv1 record")

// Record is a parsed "_smtp._tls" TXT record (RFC 8460 section 3).
type Record struct {
	// RUA are the usable report URIs (mailto: and https:), as written in
	// the record (percent-encoding kept), in order.
	RUA []string
}

// ParseRecord picks the v=TLSRPTv1 record out of a domain's "_smtp._tls"
// TXT records and parses it. Each element of txt is one TXT record, its
// character strings already joined without spaces (section 3). Exactly one
// record must start with "v=TLSRPTv1" and a ";", else the error wraps
// [ErrNoRecord]. The record must follow the section 3 ABNF; unknown
// extension fields are ignored, as are URIs of schemes other than mailto:
// and https:, but at least one usable URI is required.
func ParseRecord(txt []string) (Record, error) {
	var found []string
	for _, t := range txt {
		if isTLSRPT(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return Record{}, fmt.Errorf("%w among %d TXT records", ErrNoRecord, len(txt))
	case 1:
	default:
		return Record{}, fmt.Errorf("%w: %d records start with v=TLSRPTv1", ErrNoRecord, len(found))
	}
	uris, err := parseFields(found[0])
	if err != nil {
		return Record{}, fmt.Errorf("tlsrpt: record %q: %w", found[0], err)
	}
	var rec Record
	for _, u := range uris {
		if usableURI(u) {
			rec.RUA = append(rec.RUA, u)
		}
	}
	if len(rec.RUA) == 0 {
		return Record{}, fmt.Errorf("tlsrpt: record %q: no usable mailto: or https: URI in rua", found[0])
	}
	return rec, nil
}

const version = "v=TLSRPTv1"

// isTLSRPT reports whether t begins with tlsrpt-version and a field-delim.
func isTLSRPT(t string) bool {
	rest, ok := strings.CutPrefix(t, version)
	return ok && strings.HasPrefix(strings.TrimLeft(rest, " \t"), ";")
}

// parseFields checks the whole record against the ABNF of section 3 and
// returns the URIs of its rua fields:
//
//	tlsrpt-record = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//	field-delim   = *WSP ";" *WSP
//	tlsrpt-field  = tlsrpt-rua / tlsrpt-extension
func parseFields(t string) ([]string, error) {
	p := &parser{s: t, i: len(version)}
	var uris []string
	sawRUA := false
	for fields := 0; ; fields++ {
		if p.done() {
			if fields == 0 {
				return nil, errors.New("no field after the version")
			}
			break
		}
		if !p.delim() {
			return nil, p.errorf("want ';'")
		}
		if p.done() && fields > 0 {
			break // the optional trailing field-delim
		}
		name, err := p.fieldName()
		if err != nil {
			return nil, err
		}
		if !p.take('=') {
			return nil, p.errorf("want '=' after %q", name)
		}
		if name == "rua" { // %s"rua=": case-sensitive
			sawRUA = true
			list, err := p.uriList()
			if err != nil {
				return nil, err
			}
			uris = append(uris, list...)
			continue
		}
		if err := p.extValue(); err != nil {
			return nil, err
		}
	}
	if !sawRUA {
		return nil, errors.New("no rua field")
	}
	return uris, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i == len(p.s) }

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *parser) take(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) wsp() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// delim consumes a field-delim, or nothing.
func (p *parser) delim() bool {
	start := p.i
	p.wsp()
	if !p.take(';') {
		p.i = start
		return false
	}
	p.wsp()
	return true
}

// fieldName reads tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT /
// "_" / "-" / "."); "rua" is one too.
func (p *parser) fieldName() (string, error) {
	start := p.i
	for p.i < len(p.s) && p.i-start < 32 {
		c := p.s[p.i]
		if !isAlnum(c) && (p.i == start || (c != '_' && c != '-' && c != '.')) {
			break
		}
		p.i++
	}
	if p.i == start {
		return "", p.errorf("want a field name")
	}
	return p.s[start:p.i], nil
}

// extValue reads tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E).
func (p *parser) extValue() error {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			break
		}
		p.i++
	}
	if p.i == start {
		return p.errorf("empty extension value")
	}
	return nil
}

// uriList reads tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri).
func (p *parser) uriList() ([]string, error) {
	var list []string
	for {
		u, err := p.uri()
		if err != nil {
			return nil, err
		}
		list = append(list, u)
		before := p.i
		p.wsp()
		if !p.take(',') {
			p.i = before // the white space belongs to what follows
			return list, nil
		}
		p.wsp()
	}
}

// uri reads an RFC 3986 URI in which ",", "!" and ";" are percent-encoded
// (section 3), and checks that it is absolute.
func (p *parser) uri() (string, error) {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '%' {
			if p.i+2 >= len(p.s) || !isHex(p.s[p.i+1]) || !isHex(p.s[p.i+2]) {
				return "", p.errorf("bad percent-encoding in URI")
			}
			p.i += 3
			continue
		}
		if !isURIChar(c) {
			break
		}
		p.i++
	}
	u := p.s[start:p.i]
	if u == "" {
		return "", p.errorf("want a URI")
	}
	if end := p.i; end < len(p.s) && !strings.ContainsRune(" \t,;", rune(p.s[end])) {
		return "", p.errorf("character %q not allowed in a URI (\",\", \"!\" and \";\" must be percent-encoded)", p.s[end])
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("rua URI %q: %w", u, err)
	}
	if parsed.Scheme == "" {
		return "", fmt.Errorf("rua URI %q: not an absolute URI", u)
	}
	return u, nil
}

// isURIChar: unreserved and reserved characters of RFC 3986 except the
// three section 3 wants encoded.
func isURIChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("-._~:/?#[]@$&'()*+=", c) >= 0
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// usableURI: a mailto: URI with at least one address, or an https: URI
// with a host.
func usableURI(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "mailto":
		addrs, err := mailtoAddrs(u)
		return err == nil && len(addrs) > 0
	case "https":
		return u.Host != "" && u.Hostname() != ""
	}
	return false
}

// mailtoAddrs returns the addresses of a mailto: URI (RFC 6068: the path,
// percent-decoded, comma-separated); header fields are ignored.
func mailtoAddrs(u *url.URL) ([]string, error) {
	path, err := url.PathUnescape(u.Opaque)
	if err != nil {
		return nil, fmt.Errorf("mailto URI %q: %w", u, err)
	}
	if path == "" {
		return nil, fmt.Errorf("mailto URI %q has no address", u)
	}
	var addrs []string
	for a := range strings.SplitSeq(path, ",") {
		parsed, err := mail.ParseAddress(a)
		if err != nil || parsed.Address != a || parsed.Name != "" {
			return nil, fmt.Errorf("mailto URI %q: %q is not an address", u, a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}
