package dns

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
)

// zonePosRE matches the end of miekg/dns's parse error message, the
// position: " at line: L:C".
var zonePosRE = regexp.MustCompile(` at line: (\d+):(\d+)$`)

// zoneError rewrites a zone parse error of file name as "FILE:LINE:COL:
// dns: static zone: MSG", the position first like every configuration
// error, keeping the original in the chain.
//
// miekg/dns words it "FILE: dns: MSG: "TOKEN" at line: L:C", where TOKEN
// (quoted by strconv.QuoteToASCII) is the text the parser choked on. That
// is content of the file, and the file may be anything a policy names
// (/etc/shadow), so TOKEN is dropped. A message of another form is not
// shown at all: "FILE: dns: static zone: not a valid zone file".
func zoneError(name string, err error) error {
	const invalid = "not a valid zone file"
	generic := &posError{pos: name, msg: invalid, err: err}
	var pe *mdns.ParseError
	if !errors.As(err, &pe) {
		return generic
	}
	prefix := "dns: "
	if name != "" {
		prefix = name + ": dns: "
	}
	rest, ok := strings.CutPrefix(pe.Error(), prefix)
	if !ok {
		return generic
	}
	loc := zonePosRE.FindStringSubmatchIndex(rest)
	if loc == nil {
		return generic
	}
	pos := rest[loc[2]:loc[3]] + ":" + rest[loc[4]:loc[5]]
	if name != "" {
		pos = name + ":" + pos
	}
	msg, ok := dropQuotedToken(rest[:loc[0]])
	if !ok {
		return generic
	}
	if msg == "" {
		msg = invalid
	}
	return &posError{pos: pos, msg: msg, err: err}
}

// dropQuotedToken splits `MSG: "TOKEN"` and returns MSG. TOKEN is a Go
// double-quoted string, in which every '"' but the first and the last is
// escaped by a backslash: the first '"' after ": " from which the rest of
// s is one valid quoted string opens it.
func dropQuotedToken(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] != '"' || !strings.HasSuffix(s[:i], ": ") {
			continue
		}
		if _, err := strconv.Unquote(s[i:]); err == nil {
			return s[:i-len(": ")], true
		}
	}
	return "", false
}

// posError is an error at a position in a file; its message is ours.
type posError struct {
	pos, msg string // pos is "FILE:LINE:COL", or "FILE" alone
	err      error
}

func (e *posError) Error() string {
	if e.pos == "" {
		return "dns: static zone: " + e.msg
	}
	return e.pos + ": dns: static zone: " + e.msg
}
func (e *posError) Unwrap() error { return e.err }
