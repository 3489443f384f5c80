package mtalog

import (
	"strconv"
	"strings"
)

// postfixLine reads one line of a Postfix log.
func (im *Importer) postfixLine(line string) error {
	sl, ok := parseSyslog(line)
	if !ok {
		im.stats.Unknown++
		return nil
	}
	instance, ok := postfixInstance(sl.prog)
	if !ok || im.opts.PostfixInstance != "" && instance != im.opts.PostfixInstance {
		return nil // another program's line
	}
	qid, text, ok := strings.Cut(sl.msg, ": ")
	if !ok || !isPostfixQueueID(qid) {
		return nil // NOQUEUE, warning:, statistics, ...
	}
	// Queue IDs are unique within one instance's queue at a time: several
	// hosts (a central log) or instances may use the same ID at once.
	key := sl.host + "\x00" + instance + "\x00" + qid
	switch {
	case text == "removed":
		im.stats.Used++
		return im.end(key)
	case strings.HasPrefix(text, "from=<"):
		// qmgr: "from=<sender>, size=N, nrcpt=M (queue active)", again at
		// each retry; "from=<sender>, status=expired, returned to sender".
		addr, rest, ok := angleAddr(text[len("from="):])
		if !ok {
			return nil
		}
		im.stats.Used++
		m := im.get(key, qid)
		if !m.hasFrom {
			m.from, m.hasFrom = addr, true
		}
		if n, ok := sizeField(rest); ok && !m.hasSize {
			m.size, m.hasSize = n, true
		}
	case strings.HasPrefix(text, "to=<"):
		// A delivery agent (or qmgr, deferring): "to=<rcpt>,
		// [orig_to=<rcpt>,] relay=..., status=sent (...)", once per
		// attempt.
		addr, rest, ok := angleAddr(text[len("to="):])
		if !ok {
			return nil
		}
		im.stats.Used++
		m := im.get(key, qid)
		m.addTo(addr)
		if strings.Contains(rest, ", status=deliverable") || strings.Contains(rest, ", status=undeliverable") {
			m.probe = true
		}
	}
	return nil
}

// postfixInstance returns the instance's syslog_name of a Postfix
// program name, "postfix" in "postfix/qmgr", "postfix-out" in
// "postfix-out/smtp" (a second instance), "postfix" again in
// "postfix/submission/smtpd" (a service with its own syslog_name).
func postfixInstance(prog string) (string, bool) {
	name, _, ok := strings.Cut(prog, "/")
	if !ok || !strings.HasPrefix(name, "postfix") {
		return "", false
	}
	return name, true
}

// isPostfixQueueID tells a queue ID from the other words before ": " in
// Postfix's lines (NOQUEUE, warning, fatal, statistics, ...). Short IDs
// are upper-case hexadecimal; long ones (enable_long_queue_ids) use
// letters and digits but no vowels, and a "z" between time and inode
// number.
func isPostfixQueueID(s string) bool {
	if len(s) < 6 || len(s) > 64 {
		return false
	}
	hex := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			hex = false
			break
		}
	}
	if hex {
		return true
	}
	if len(s) < 12 || !strings.ContainsRune(s, 'z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		default:
			return false
		}
		if strings.IndexByte("AEIOUaeiou", c) >= 0 {
			return false
		}
	}
	return true
}

// angleAddr reads "<address>" at the start of s and returns the address
// and what follows. Inside quotes (a quoted local part, which may hold
// ", " or ">") a backslash escapes the next character.
func angleAddr(s string) (addr, rest string, ok bool) {
	if !strings.HasPrefix(s, "<") {
		return "", s, false
	}
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return s[1:i], s[i+1:], true
		}
	}
	return "", s, false
}

// sizeField reads ", size=N" at the start of s.
func sizeField(s string) (int, bool) {
	s, ok := strings.CutPrefix(s, ", size=")
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(s[:end])
	return n, err == nil && n >= 0
}
