package transport

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  int
		enh   string
		lines []string
		err   string // substring; "" = no error
		proto bool   // the error is a protocol error
	}{
		{name: "simple", in: "250 ok\r\n", code: 250, lines: []string{"ok"}},
		{name: "enhanced", in: "550 5.1.1 no such user\r\n", code: 550, enh: "5.1.1", lines: []string{"no such user"}},
		{name: "enhanced wrong class ignored", in: "550 2.1.1 odd\r\n", code: 550, lines: []string{"2.1.1 odd"}},
		{name: "code only", in: "250\r\n", code: 250, lines: []string{""}},
		{name: "empty text", in: "250 \r\n", code: 250, lines: []string{""}},
		{name: "bare LF", in: "220 hi\n", code: 220, lines: []string{"hi"}},
		{name: "multi-line", in: "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n", code: 250,
			lines: []string{"mx.example", "PIPELINING", "SIZE 100"}},
		{name: "multi-line enhanced", in: "452-4.2.2 mailbox\r\n452 4.2.2 full\r\n", code: 452, enh: "4.2.2", lines: []string{"mailbox", "full"}},
		{name: "utf8 text", in: "250 ok ünïcode\r\n", code: 250, lines: []string{"ok ünïcode"}},
		{name: "code change", in: "250-a\r\n251 b\r\n", err: "code changed", proto: true},
		{name: "garbage", in: "hello there\r\n", err: "does not start with a reply code", proto: true},
		{name: "short", in: "25\r\n", err: "short reply line", proto: true},
		{name: "bad first digit", in: "650 no\r\n", err: "reply code", proto: true},
		{name: "bad separator", in: "250+x\r\n", err: "bad separator", proto: true},
		{name: "control char", in: "250 a\x00b\r\n", err: "control character", proto: true},
		{name: "too long", in: "250 " + strings.Repeat("x", 5000) + "\r\n", err: "longer than", proto: true},
		{name: "too many lines", in: strings.Repeat("250-x\r\n", 200) + "250 x\r\n", err: "longer than 100 lines", proto: true},
		{name: "eof", in: "", err: "EOF"},
		{name: "eof mid line", in: "250 ok", err: "unexpected EOF"},
		{name: "eof mid reply", in: "250-ok\r\n", err: "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readReply(bufio.NewReaderSize(strings.NewReader(tt.in), maxReplyLine))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if errors.Is(err, errProtocol) != tt.proto {
					t.Errorf("errors.Is(err, errProtocol) = %v, want %v", !tt.proto, tt.proto)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tt.code || r.Enhanced.String() != tt.enh || !reflect.DeepEqual(r.Lines, tt.lines) {
				t.Errorf("got %d %q %q, want %d %q %q", r.Code, r.Enhanced, r.Lines, tt.code, tt.enh, tt.lines)
			}
		})
	}
}

func TestReadReplySequence(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("250 a\r\n550 5.1.1 b\r\n354 go\r\n"), maxReplyLine)
	var got []string
	for {
		r, err := readReply(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.String())
	}
	want := []string{"250 a", "550 5.1.1 b", "354 go"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 x\r\n", "garbage\n", "250-\n", "4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(b)), maxReplyLine)
		for range 10 {
			r, err := readReply(br)
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 559 || len(r.Lines) == 0 || len(r.Lines) > maxReplyLines {
				t.Fatalf("bad reply %+v", r)
			}
			_ = parseEHLO(r.Lines)
		}
	})
}

func TestParseEHLO(t *testing.T) {
	ext := parseEHLO([]string{"mx.example greets you", "PIPELINING", "size 1000", "8BITMIME",
		"AUTH=LOGIN", "AUTH PLAIN CRAM-MD5", "STARTTLS", "", "DSN", "ENHANCEDSTATUSCODES  "})
	want := extensions{"PIPELINING": "", "SIZE": "1000", "8BITMIME": "", "AUTH": "LOGIN PLAIN CRAM-MD5",
		"STARTTLS": "", "DSN": "", "ENHANCEDSTATUSCODES": ""}
	if !reflect.DeepEqual(ext, want) {
		t.Errorf("got %q\nwant %q", ext, want)
	}
	if ext.size() != 1000 {
		t.Errorf("size = %d", ext.size())
	}
	if m := ext.authMechanism(); m != "PLAIN" {
		t.Errorf("auth = %q", m)
	}
	for _, tt := range []struct {
		lines []string
		size  int64
		auth  string
	}{
		{[]string{"x", "SIZE"}, 0, ""},
		{[]string{"x", "SIZE abc"}, 0, ""},
		{[]string{"x", "SIZE -5"}, 0, ""},
		{[]string{"x", "AUTH LOGIN"}, 0, "LOGIN"},
		{[]string{"x", "AUTH CRAM-MD5 XOAUTH2"}, 0, ""},
		{[]string{"only a greeting"}, 0, ""},
	} {
		e := parseEHLO(tt.lines)
		if e.size() != tt.size || e.authMechanism() != tt.auth {
			t.Errorf("%q: size %d auth %q, want %d %q", tt.lines, e.size(), e.authMechanism(), tt.size, tt.auth)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, data, bdat string
	}{
		{"empty", "", ".\r\n", ""},
		{"crlf", "a\r\nb\r\n", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{"no final newline", "a\r\nb", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{"bare LF", "a\nb\n", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{"bare CR", "a\rb\r", "a\r\nb\r\n.\r\n", "a\r\nb\r\n"},
		{"CR CR LF", "a\r\r\nb", "a\r\n\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n"},
		{"dot lines", ".\r\n..x\r\n.y", "..\r\n...x\r\n..y\r\n.\r\n", ".\r\n..x\r\n.y\r\n"},
		{"smuggling LF dot LF", "a\n.\nMAIL FROM:<x>\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n", "a\r\n.\r\nMAIL FROM:<x>\r\n"},
		{"smuggling CR dot CR", "a\r.\rb", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n"},
		{"dot after CR LF split", "x\r\n.", "x\r\n..\r\n.\r\n", "x\r\n.\r\n"},
		{"8bit", "h\xc3\xa9\n", "h\xc3\xa9\r\n.\r\n", "h\xc3\xa9\r\n"},
		{"mid-line dot", "a.b\r\n", "a.b\r\n.\r\n", "a.b\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(normalize([]byte(tt.in), true)); got != tt.data {
				t.Errorf("DATA: got %q, want %q", got, tt.data)
			}
			if got := string(normalize([]byte(tt.in), false)); got != tt.bdat {
				t.Errorf("BDAT: got %q, want %q", got, tt.bdat)
			}
			// Byte at a time must give the same (state across writes).
			var b strings.Builder
			w := newDataWriter(&b, true)
			for i := range len(tt.in) {
				_, _ = w.Write([]byte{tt.in[i]})
			}
			_ = w.Close()
			if b.String() != tt.data {
				t.Errorf("byte-wise DATA: got %q, want %q", b.String(), tt.data)
			}
		})
	}
}

// checkWire verifies the invariants of a DATA stream: only CRLF line ends,
// ends with CRLF.CRLF, and no line (other than the last) is a lone dot.
func checkWire(t *testing.T, in, out []byte) {
	t.Helper()
	for i, c := range out {
		if c == '\r' && (i+1 >= len(out) || out[i+1] != '\n') {
			t.Fatalf("bare CR at %d in %q (from %q)", i, out, in)
		}
		if c == '\n' && (i == 0 || out[i-1] != '\r') {
			t.Fatalf("bare LF at %d in %q (from %q)", i, out, in)
		}
	}
	if !strings.HasSuffix(string(out), "\r\n.\r\n") && string(out) != ".\r\n" {
		t.Fatalf("no final dot: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
	for _, l := range lines[:len(lines)-1] {
		if l == "." {
			t.Fatalf("lone dot line inside %q (from %q)", out, in)
		}
	}
	// Undoing the stuffing gives the input with normalised line ends.
	var un []string
	for _, l := range lines[:len(lines)-1] {
		un = append(un, strings.TrimPrefix(l, "."))
	}
	want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(in))
	got := strings.Join(un, "\n")
	if len(un) > 0 {
		got += "\n"
	}
	if !strings.HasSuffix(want, "\n") && want != "" {
		want += "\n"
	}
	if got != want {
		t.Fatalf("round trip: got %q, want %q", got, want)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "a\r\n", ".\n", "\r.\r", "a\n.\nb", "\r\r\n\n", "..."} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		out := normalize(in, true)
		checkWire(t, in, out)
		// Writes split at any point give the same stream.
		if split > 0 && split < len(in) {
			var b strings.Builder
			w := newDataWriter(&b, true)
			_, _ = w.Write(in[:split])
			_, _ = w.Write(in[split:])
			_ = w.Close()
			if b.String() != string(out) {
				t.Fatalf("split %d: %q != %q", split, b.String(), out)
			}
		}
	})
}
