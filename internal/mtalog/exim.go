package mtalog

import (
	"strconv"
	"strings"
)

// eximLine reads one line of an Exim main log, from a file ("2026-11-24
// 10:12:01 ID <= ...") or through syslog ("Nov 24 10:12:01 host
// exim[123]: 2026-11-24 10:12:01 ID <= ...", the timestamp there unless
// syslog_timestamp is false).
func (im *Importer) eximLine(line string) error {
	host := ""
	body, ok := cutEximTimestamp(line)
	if !ok {
		sl, ok := parseSyslog(line)
		if !ok {
			im.stats.Unknown++
			return nil
		}
		if !strings.HasPrefix(sl.prog, "exim") {
			return nil // another program's line
		}
		host = sl.host
		body = sl.msg
		if b, ok := cutEximTimestamp(body); ok {
			body = b
		}
	}
	id, rest, _ := strings.Cut(body, " ")
	if !isEximID(id) {
		return nil // "SMTP connection from ...", "Start queue run", ...
	}
	flag, rest, _ := strings.Cut(rest, " ")
	key := host + "\x00" + id
	switch flag {
	case "<=", "(=": // arrival; "(=" a fakereject, accepted all the same
		im.stats.Used++
		im.eximArrival(im.get(key, id), rest)
	case "=>", "->", ">>", "*>", "**", "==":
		// Delivered, more addresses of the same delivery, cutthrough
		// (logged before the arrival), suppressed by -N, failed,
		// deferred: each names a recipient of the message.
		if rcpt := eximRecipient(rest); rcpt != "" {
			im.stats.Used++
			im.get(key, id).addTo(rcpt)
		}
	case "Completed":
		im.stats.Used++
		return im.end(key)
	}
	return nil
}

// eximArrival reads what follows "<= ": "sender [fields] [from
// <raw-sender>] [for rcpt ...]".
func (im *Importer) eximArrival(m *message, rest string) {
	toks := eximTokens(rest)
	if len(toks) == 0 {
		return
	}
	if !m.hasFrom {
		m.from, m.hasFrom = toks[0], true
		if m.from == "<>" {
			m.from = ""
		}
	}
	for _, t := range toks[1:] {
		if v, ok := strings.CutPrefix(t, "S="); ok && allDigits(v) {
			if n, err := strconv.Atoi(v); err == nil && !m.hasSize {
				m.size, m.hasSize = n, true
			}
			break
		}
	}
	if list, complete, ok := eximForList(toks); ok {
		m.forList, m.forComplete = list, complete
	}
}

// eximForList returns the recipients of log_selector
// +received_recipients: the words after the last "for" of the arrival
// line, every one an address (they are qualified, so each has an "@").
// Exim cuts a list too long for its log buffer short with "<trunc>":
// then complete is false.
func eximForList(toks []string) (list []string, complete, ok bool) {
	i := len(toks) - 1
	for i > 0 && toks[i] != "for" {
		i--
	}
	if i <= 0 || i == len(toks)-1 {
		return nil, false, false
	}
	list, complete = toks[i+1:], true
	if last := list[len(list)-1]; strings.HasSuffix(last, "<trunc>") {
		list, complete = list[:len(list)-1], false
	}
	for _, a := range list {
		if !strings.Contains(a, "@") {
			return nil, false, false // not a recipient list after all
		}
	}
	return list, complete, true
}

// eximFieldStarts end the address part of a delivery line: the fields
// that may follow it (deliver.c: delivery_log, deferral_log,
// failure_log).
var eximFieldStarts = []string{" F=<", " Q=", " P=<", " R=", " T=", " H=", " routing defer (", " defer (", " : "}

// eximRecipient returns the recipient a delivery line is about: the
// original address, which Exim puts in angle brackets after the final
// one when they differ ("=> marv <marv@hitch.example>", "=>
// |/usr/bin/prog (parent) <orig@example>", "=> :blackhole:
// <hole@example>"), else the final address itself. The original is the
// envelope recipient as the message arrived, as in the arrival line's
// "for" list.
func eximRecipient(s string) string {
	end := len(s)
	for _, f := range eximFieldStarts {
		if i := strings.Index(s, f); i >= 0 && i < end {
			end = i
		}
	}
	// "** jim@example <jim@example>: unknown mail domain", and older
	// Exims' "** pat@example: Unrouteable address".
	if i := strings.Index(s, ">: "); i >= 0 && i+1 < end {
		end = i + 1
	}
	if i := strings.Index(s, ": "); i >= 0 && i < end && !strings.ContainsRune(s[:i], ' ') && strings.ContainsRune(s[:i], '@') {
		end = i
	}
	part := strings.TrimSuffix(strings.TrimRight(s[:end], " "), ":")
	if strings.HasSuffix(part, ">") {
		if i := strings.LastIndex(part, " <"); i >= 0 {
			return part[i+2 : len(part)-1]
		}
		if strings.HasPrefix(part, "<") {
			return part[1 : len(part)-1]
		}
	}
	if strings.ContainsAny(part, " <>") {
		return "" // not one address
	}
	return part
}

// eximTokens splits an arrival line's fields at spaces, except inside
// double quotes, where a backslash escapes (T="subject", quoted local
// parts).
func eximTokens(s string) []string {
	var toks []string
	start, quoted := -1, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\':
			i++
		case c == ' ' && !quoted:
			if start >= 0 {
				toks = append(toks, s[start:i])
				start = -1
			}
			continue
		case c == '"':
			quoted = !quoted
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		toks = append(toks, s[start:])
	}
	return toks
}

// cutEximTimestamp removes Exim's "YYYY-MM-DD hh:mm:ss", with
// log_selector +millisec's ".mmm", log_timezone's " +hhmm" and
// log_selector +pid's " [pid]" when present, and the space after.
func cutEximTimestamp(s string) (string, bool) {
	if len(s) < 20 || !isDate(s[:10]) || s[10] != ' ' {
		return "", false
	}
	clock, rest, ok := strings.Cut(s[11:], " ")
	if !ok || !isClock(clock) {
		return "", false
	}
	if len(rest) > 5 && (rest[0] == '+' || rest[0] == '-') && allDigits(rest[1:5]) && rest[5] == ' ' {
		rest = rest[6:]
	}
	if strings.HasPrefix(rest, "[") {
		if pid, after, ok := strings.Cut(rest[1:], "] "); ok && allDigits(pid) {
			rest = after
		}
	}
	return rest, true
}

// isEximID reports whether s is an Exim message ID: three parts of
// letters and digits (base 62), 6-6-2 before Exim 4.97 ("1qXyZa-000Abc-4F")
// and 6-11-4 since ("16VDhn-000000001bo-D342").
func isEximID(s string) bool {
	var want [3]int
	switch len(s) {
	case 16:
		want = [3]int{6, 6, 2}
	case 23:
		want = [3]int{6, 11, 4}
	default:
		return false
	}
	i := 0
	for p, n := range want {
		for j := 0; j < n; j++ {
			c := s[i]
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				return false
			}
			i++
		}
		if p < 2 {
			if s[i] != '-' {
				return false
			}
			i++
		}
	}
	return true
}
