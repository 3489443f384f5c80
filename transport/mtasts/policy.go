package mtasts

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Mode of a policy: "enforce", "testing", "none" (RFC 8461 section 5).
type Mode string

// The policy modes.
const (
	// Enforce: deliver only over TLS with a PKIX-valid certificate to an
	// MX host the policy lists.
	Enforce Mode = "enforce"
	// Testing: report failures (TLS-RPT) but deliver anyway.
	Testing Mode = "testing"
	// None: the domain has no active policy (used to withdraw one).
	None Mode = "none"
)

// MaxMaxAge is the largest max_age a policy may state: 31557600 seconds,
// about a year (RFC 8461 section 3.2).
const MaxMaxAge = 31557600 * time.Second

// Policy is a parsed policy file (RFC 8461 section 3.2).
type Policy struct {
	Mode Mode
	// MX holds the patterns as published, lower-cased, without a
	// trailing dot: host names, or "*." followed by a host name.
	MX []string
	// MaxAge is how long the policy may be cached, at most [MaxMaxAge].
	MaxAge time.Duration
}

// Matches reports whether host (an MX host name) is listed: exactly, or
// by a pattern "*.suffix" whose "*" stands for exactly one extra leftmost
// label, so "*.example.com" matches "mx.example.com" but neither
// "example.com" nor "a.b.example.com" (RFC 8461 section 4.1). Case does not
// matter and a trailing dot on host is ignored.
func (p *Policy) Matches(host string) bool {
	_, ok := p.Match(host)
	return ok
}

// Match returns the first pattern of the policy that lists host (see
// Matches), the "mx-host" of a TLS-RPT record.
func (p *Policy) Match(host string) (pattern string, ok bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if suffix, ok := strings.CutPrefix(pat, "*"); ok {
			label, ok := strings.CutSuffix(host, suffix)
			if ok && label != "" && !strings.Contains(label, ".") {
				return pat, true
			}
		} else if host == pat {
			return pat, true
		}
	}
	return "", false
}

// Lines is the policy in its canonical text lines: "version: STSv1",
// "mode: ...", one "mx: ..." per pattern, "max_age: ...". It is the
// "policy-string" of a TLS-RPT report (RFC 8460 section 4.4), and joined
// with line ends it parses back to the same policy.
func (p *Policy) Lines() []string {
	lines := make([]string, 0, len(p.MX)+3)
	lines = append(lines, "version: STSv1", "mode: "+string(p.Mode))
	for _, mx := range p.MX {
		lines = append(lines, "mx: "+mx)
	}
	return append(lines, "max_age: "+strconv.FormatInt(int64(p.MaxAge/time.Second), 10))
}

// ParsePolicy parses a policy body strictly by the ABNF of RFC 8461
// section 3.2:
//
//   - Every line is "key:" then optional spaces or tabs, the value, and
//     optional trailing spaces or tabs; lines end with CRLF or LF (the last
//     may end without one). Blank lines, leading white space and a bare
//     CR are errors. Keys and the version and mode values are
//     case-sensitive.
//   - "version: STSv1", "mode" (enforce, testing or none) and "max_age"
//     (1 to 10 digits, at most 31557600) must each appear exactly once, in
//     any order: the ABNF fixes no order (only the TXT record must start
//     with its version).
//   - "mx" appears once per pattern: a host name (RFC 5321 Domain: ASCII
//     letters, digits and hyphens, labels of 1 to 63 characters) or "*."
//     and a host name. At least one is required unless the mode is none.
//     A trailing dot is accepted and dropped: it names the same host, and
//     refusing the policy would turn MTA-STS off for the domain.
//   - Other keys are extensions: ignored, but their name (letter or digit,
//     then up to 31 letters, digits, "_", "-", ".") and value (visible
//     characters and UTF-8, single spaces inside) must be well formed.
//
// Errors name the line and what is wrong.
func ParsePolicy(b []byte) (*Policy, error) {
	if len(b) == 0 {
		return nil, errors.New("mta-sts policy: empty")
	}
	p := &Policy{}
	seen := map[string]bool{}
	for n := 1; len(b) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
			line = bytes.TrimSuffix(line, []byte{'\r'})
		} else {
			line, b = b, nil
		}
		if err := p.parseLine(string(line), seen); err != nil {
			return nil, fmt.Errorf("mta-sts policy: line %d: %w", n, err)
		}
	}
	for _, key := range []string{"version", "mode", "max_age"} {
		if !seen[key] {
			return nil, fmt.Errorf("mta-sts policy: no %q field", key)
		}
	}
	if len(p.MX) == 0 && p.Mode != None {
		return nil, fmt.Errorf("mta-sts policy: no \"mx\" field (required unless the mode is none)")
	}
	return p, nil
}

// parseLine parses one line into p; seen records the single-valued keys
// met so far.
func (p *Policy) parseLine(line string, seen map[string]bool) error {
	if line == "" {
		return errors.New("empty line")
	}
	key, value, ok := strings.Cut(line, ":")
	if !ok {
		return fmt.Errorf("%q is not \"key: value\"", line)
	}
	if !validExtName(key) {
		return fmt.Errorf("bad key %q", key)
	}
	value = strings.Trim(value, " \t")
	switch key {
	case "version", "mode", "max_age":
		if seen[key] {
			return fmt.Errorf("second %q field", key)
		}
		seen[key] = true
	}
	switch key {
	case "version":
		if value != "STSv1" {
			return fmt.Errorf("version %q, want STSv1", value)
		}
	case "mode":
		switch m := Mode(value); m {
		case Enforce, Testing, None:
			p.Mode = m
		default:
			return fmt.Errorf("mode %q, want enforce, testing or none", value)
		}
	case "max_age":
		secs, err := parseMaxAge(value)
		if err != nil {
			return err
		}
		p.MaxAge = time.Duration(secs) * time.Second
	case "mx":
		pat, err := parseMXPattern(value)
		if err != nil {
			return err
		}
		p.MX = append(p.MX, pat)
	default:
		if !validExtValue(value) {
			return fmt.Errorf("bad value %q of extension field %q", value, key)
		}
	}
	return nil
}

// parseMaxAge parses 1*10DIGIT, at most 31557600.
func parseMaxAge(v string) (int64, error) {
	if v == "" || len(v) > 10 || strings.Trim(v, "0123456789") != "" {
		return 0, fmt.Errorf("max_age %q is not 1 to 10 digits", v)
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs > int64(MaxMaxAge/time.Second) {
		return 0, fmt.Errorf("max_age %s is over %d seconds", v, int64(MaxMaxAge/time.Second))
	}
	return secs, nil
}

// parseMXPattern checks ["*."] Domain and returns it lower-cased without
// a trailing dot.
func parseMXPattern(v string) (string, error) {
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	if !validDomain(strings.TrimPrefix(v, "*.")) {
		return "", fmt.Errorf("mx %q is not a host name or \"*.\" and a host name", v)
	}
	return v, nil
}

// validDomain reports whether s is an RFC 5321 Domain: dot-separated
// labels of letters, digits and hyphens, not starting or ending with a
// hyphen, each 1 to 63 characters, 253 in all.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// normalDomain lower-cases a domain and drops one trailing dot.
func normalDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validExtName is the extension name of RFC 8461 sections 3.1 and 3.2:
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
func validExtName(s string) bool {
	if s == "" || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validExtValue is sts-policy-ext-value: visible ASCII or UTF-8
// characters, with single spaces allowed inside, neither leading nor
// trailing white space.
func validExtValue(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}
