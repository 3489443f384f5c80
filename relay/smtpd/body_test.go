package smtpd

import (
	"strings"
	"testing"
)

// split runs s through a lineSplitter in chunks of size n (0: at once).
func split(s string, n int, reject bool) (string, error) {
	ls := lineSplitter{reject: reject}
	var out strings.Builder
	emit := func(l []byte) error { out.Write(l); return nil }
	for n > 0 && len(s) > n {
		if err := ls.feed([]byte(s[:n]), emit); err != nil {
			return out.String(), err
		}
		s = s[n:]
	}
	if err := ls.feed([]byte(s), emit); err != nil {
		return out.String(), err
	}
	err := ls.finish(emit)
	return out.String(), err
}

func TestLineSplitterNormalizes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"a\r\r\nb", "a\r\n\r\nb\r\n"},
		{"a\n\r\n", "a\r\n\r\n"},
		{"\n.\r\n", "\r\n.\r\n"},
		{"no end", "no end\r\n"},
		{"", ""},
		{"\r", "\r\n"},
	} {
		for _, n := range []int{0, 1, 2, 3} {
			got, err := split(tc.in, n, false)
			if err != nil || got != tc.want {
				t.Errorf("normalize %q in chunks of %d: %q, %v; want %q", tc.in, n, got, err, tc.want)
			}
		}
	}
}

func TestLineSplitterRejects(t *testing.T) {
	for _, in := range []string{"a\nb\r\n", "a\rb\r\n", "a\r\n\n", "a\r"} {
		for _, n := range []int{0, 1} {
			if _, err := split(in, n, true); err != errBareNewline {
				t.Errorf("reject %q (chunks of %d): %v, want errBareNewline", in, n, err)
			}
		}
	}
	if got, err := split("a\r\nb\r\n", 1, true); err != nil || got != "a\r\nb\r\n" {
		t.Errorf("CRLF content refused in reject mode: %q %v", got, err)
	}
}

func TestLineSplitterLineCap(t *testing.T) {
	ok := strings.Repeat("x", MaxLineLength-2) + "\r\n"
	if got, err := split(ok, 100, false); err != nil || got != ok {
		t.Errorf("a line of exactly %d octets with CRLF: %v", MaxLineLength, err)
	}
	if _, err := split("x"+ok, 100, false); err != errLineTooLong {
		t.Errorf("one octet more: %v, want errLineTooLong", err)
	}
}

func scan(t *testing.T, msg string, hops, limit int) (*headerScan, string, error) {
	t.Helper()
	h := &headerScan{limit: limit, maxHops: hops}
	lines := strings.SplitAfter(msg, "\r\n")
	for i, l := range lines {
		if l == "" {
			continue
		}
		end, err := h.add([]byte(l))
		if err != nil {
			return h, "", err
		}
		if end {
			h.endField()
			return h, strings.Join(lines[i:], ""), nil
		}
	}
	h.endField()
	return h, "", nil
}

func TestHeaderScan(t *testing.T) {
	msg := "Received: a\r\nreceived : b\r\n\tcontinued\r\nMessage-ID:\r\n <folded@id> (comment)\r\nMessage-ID: <second@id>\r\nX-Received: not a hop\r\n\r\nReceived: body\r\n"
	h, body, err := scan(t, msg, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if h.hops != 2 || h.messageID != "<folded@id>" || body != "\r\nReceived: body\r\n" {
		t.Errorf("hops %d, Message-ID %q, body %q", h.hops, h.messageID, body)
	}
	if !strings.HasPrefix(msg, h.buf.String()) || h.buf.Len()+len(body) != len(msg) {
		t.Errorf("header section %q", h.buf.String())
	}
}

func TestHeaderScanEndsAtNonField(t *testing.T) {
	h, body, err := scan(t, "Subject: x\r\nthis is no field\r\nReceived: x\r\n", 1, 1<<20)
	if err != nil || body != "this is no field\r\nReceived: x\r\n" || h.hops != 0 {
		t.Errorf("body %q hops %d err %v", body, h.hops, err)
	}
	_, body, _ = scan(t, " leading continuation\r\nSubject: x\r\n", 1, 1<<20)
	if body != " leading continuation\r\nSubject: x\r\n" {
		t.Errorf("a message starting with white space has no header section: %q", body)
	}
}

func TestHeaderScanLimits(t *testing.T) {
	if _, _, err := scan(t, "Received: 1\r\nReceived: 2\r\nReceived: 3\r\n\r\n", 3, 1<<20); err != errTooManyHops {
		t.Errorf("3 Received with hops=3: %v", err)
	}
	if _, _, err := scan(t, "Received: 1\r\nReceived: 2\r\n\r\n", 3, 1<<20); err != nil {
		t.Errorf("2 Received with hops=3: %v", err)
	}
	if _, _, err := scan(t, "Subject: "+strings.Repeat("x", 100)+"\r\n\r\n", 3, 100); err != errHeaderTooLarge {
		t.Errorf("header over the limit: %v", err)
	}
}
