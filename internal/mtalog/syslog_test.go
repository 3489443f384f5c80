package mtalog

import "testing"

// TestParseSyslog splits the syslog prefixes the Postfix reader meets,
// and refuses lines that have none.
func TestParseSyslog(t *testing.T) {
	for _, tc := range []struct {
		line            string
		host, prog, msg string
	}{
		{"Nov  4 10:12:01 mx1 postfix/qmgr[998]: A1: removed", "mx1", "postfix/qmgr", "A1: removed"},
		{"Dec 02 02:43:01 pf postfix/qmgr[26047]: A1: removed", "pf", "postfix/qmgr", "A1: removed"},
		{"Nov 24 10:13:00.123456 mx1 postfix/pickup[1100]: A1: uid=0 from=<root>", "mx1", "postfix/pickup", "A1: uid=0 from=<root>"},
		{"<22>Nov 24 10:13:00 mx1 postfix/qmgr[1]: x", "mx1", "postfix/qmgr", "x"},
		{"Nov 24 10:13:00 postfix/qmgr[1]: x", "", "postfix/qmgr", "x"},
		{"2026-11-24T10:12:01.123456+00:00 mx2 postfix-out/smtp[80]: x: y", "mx2", "postfix-out/smtp", "x: y"},
		{"2026-11-24T10:12:01+0000 mx2 postfix/smtp[80]: x", "mx2", "postfix/smtp", "x"}, // journalctl -o short-iso
		{"2026-11-24T10:12:01Z mx2 postfix/smtp: x", "mx2", "postfix/smtp", "x"},
		{"<22>1 2026-11-24T10:12:01.003Z mx3 postfix/qmgr 998 - - A1: removed", "mx3", "postfix/qmgr", "A1: removed"},
		{`<22>1 2026-11-24T10:12:01.003Z mx3 postfix/local 1300 - [a b="]\""][c] A1: removed`, "mx3", "postfix/local", "A1: removed"},
		{"<22>1 2026-11-24T10:12:01.003Z - postfix/qmgr - - - \ufeffmsg", "", "postfix/qmgr", "msg"},
		{"Nov 24 10:13:00 mx1 postfix/anvil[1]:", "mx1", "postfix/anvil", ""},
	} {
		sl, ok := parseSyslog(tc.line)
		if !ok || sl.host != tc.host || sl.prog != tc.prog || sl.msg != tc.msg {
			t.Errorf("%q: %+v %v, want host %q prog %q msg %q", tc.line, sl, ok, tc.host, tc.prog, tc.msg)
		}
	}
	for _, line := range []string{
		"",
		"this line is not a syslog line",
		"2026-11-24 10:00:01 1qXyZa-000Abc-4F <= a@example.org S=1", // Exim's own file format
		"Nov 24 10:13 mx1 postfix/qmgr[1]: x",
		"Nov 124 10:13:00 mx1 postfix/qmgr[1]: x",
		"Nov 24 10:13:00 mx1 no tag here",
		"<22>1 2026-11-24T10:12:01Z mx3 postfix/qmgr 998 - [unclosed A1: removed",
		"<99999>Nov 24 10:13:00 mx1 postfix/qmgr[1]: x",
	} {
		if sl, ok := parseSyslog(line); ok {
			t.Errorf("%q: parsed as %+v", line, sl)
		}
	}
}
