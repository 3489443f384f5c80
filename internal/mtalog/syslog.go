package mtalog

import "strings"

// syslogLine is what a syslog line says besides its time: the host, the
// program (the tag without its "[pid]") and the message.
type syslogLine struct {
	host, prog, msg string
}

// parseSyslog splits a syslog line. It knows:
//
//   - RFC 3164 as files hold it: "Nov 24 10:12:01 host prog[pid]: msg",
//     the day space- or zero-padded (Postfix's maillog_file writes "Nov
//     04"), the seconds possibly with a fraction (journalctl -o
//     short-precise), a "<PRI>" in front or not;
//   - an ISO 8601 timestamp in its place, as rsyslog's default file format
//     and journalctl -o short-iso write: "2026-11-24T10:12:01.123456+00:00
//     host prog[pid]: msg";
//   - RFC 5424 itself: "<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG".
//
// A line with no host ("Nov 24 10:12:01 prog[pid]: msg", some local
// syslog setups) is read too.
func parseSyslog(line string) (syslogLine, bool) {
	rest := line
	if strings.HasPrefix(rest, "<") {
		end := strings.IndexByte(rest, '>')
		if end < 2 || end > 4 || !allDigits(rest[1:end]) {
			return syslogLine{}, false
		}
		rest = rest[end+1:]
		if r, ok := strings.CutPrefix(rest, "1 "); ok {
			return parse5424(r)
		}
	}
	rest, ok := cutTimestamp(rest)
	if !ok {
		return syslogLine{}, false
	}
	first, after, _ := strings.Cut(rest, " ")
	var sl syslogLine
	if strings.HasSuffix(first, ":") && strings.ContainsAny(first, "/[") {
		// No host: the first word is already the tag.
		after = rest
	} else {
		sl.host = first
	}
	tag, msg, ok := strings.Cut(after, ": ")
	if !ok {
		tag, ok = strings.CutSuffix(after, ":")
		if !ok {
			return syslogLine{}, false
		}
	}
	if strings.ContainsRune(tag, ' ') || tag == "" {
		return syslogLine{}, false
	}
	sl.prog, sl.msg = stripPID(tag), msg
	return sl, true
}

// cutTimestamp removes an RFC 3164 or ISO 8601 timestamp and the space
// after it.
func cutTimestamp(s string) (string, bool) {
	ts, rest, ok := strings.Cut(s, " ")
	if !ok {
		return "", false
	}
	if isISODateTime(ts) {
		return rest, true
	}
	// "Mmm dd hh:mm:ss" or "Mmm  d hh:mm:ss".
	if !isMonth(ts) {
		return "", false
	}
	rest = strings.TrimLeft(rest, " ")
	day, rest, ok := strings.Cut(rest, " ")
	if !ok || len(day) < 1 || len(day) > 2 || !allDigits(day) {
		return "", false
	}
	clock, rest, ok := strings.Cut(rest, " ")
	if !ok || !isClock(clock) {
		return "", false
	}
	return rest, true
}

// parse5424 reads what follows "<PRI>1 " in an RFC 5424 line.
func parse5424(s string) (syslogLine, bool) {
	var f [5]string // timestamp, host, app, procid, msgid
	for i := range f {
		var ok bool
		f[i], s, ok = strings.Cut(s, " ")
		if !ok || f[i] == "" {
			return syslogLine{}, false
		}
	}
	// Structured data: "-" or one or more [...] elements, in which "]"
	// may be escaped as "\]" inside quoted values.
	switch {
	case s == "-":
		s = ""
	case strings.HasPrefix(s, "- "):
		s = s[2:]
	case strings.HasPrefix(s, "["):
		end := sdEnd(s)
		if end < 0 {
			return syslogLine{}, false
		}
		s = strings.TrimPrefix(s[end:], " ")
	default:
		return syslogLine{}, false
	}
	s = strings.TrimPrefix(s, "\ufeff") // the BOM of a UTF-8 MSG
	sl := syslogLine{prog: f[2], msg: s}
	if f[1] != "-" {
		sl.host = f[1]
	}
	return sl, true
}

// sdEnd returns the index after the structured data at the start of s,
// or -1.
func sdEnd(s string) int {
	i := 0
	for i < len(s) && s[i] == '[' {
		quoted := false
		j := i + 1
		for ; j < len(s); j++ {
			c := s[j]
			if c == '\\' && quoted {
				j++
				continue
			}
			if c == '"' {
				quoted = !quoted
			}
			if c == ']' && !quoted {
				break
			}
		}
		if j >= len(s) {
			return -1
		}
		i = j + 1
	}
	return i
}

// stripPID removes a trailing "[pid]" from a tag.
func stripPID(tag string) string {
	if strings.HasSuffix(tag, "]") {
		if i := strings.LastIndexByte(tag, '['); i > 0 {
			return tag[:i]
		}
	}
	return tag
}

// isISODateTime reports whether s starts like "2026-11-24T10:12:01".
func isISODateTime(s string) bool {
	return len(s) >= 19 && isDate(s[:10]) && s[10] == 'T' && isClock(s[11:19])
}

// isDate reports whether s is "YYYY-MM-DD".
func isDate(s string) bool {
	return len(s) == 10 && allDigits(s[0:4]) && s[4] == '-' && allDigits(s[5:7]) && s[7] == '-' && allDigits(s[8:10])
}

// isClock reports whether s is "hh:mm:ss", with a fraction of a second or
// not.
func isClock(s string) bool {
	if len(s) < 8 || !allDigits(s[0:2]) || s[2] != ':' || !allDigits(s[3:5]) || s[5] != ':' || !allDigits(s[6:8]) {
		return false
	}
	frac := s[8:]
	return frac == "" || len(frac) > 1 && frac[0] == '.' && allDigits(frac[1:])
}

func isMonth(s string) bool {
	switch s {
	case "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec":
		return true
	}
	return false
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
