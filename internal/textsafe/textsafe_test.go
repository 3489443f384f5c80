package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"bob@example.com", "bob@example.com"},
		{`matches "^\\d+$" \n`, `matches "^\\d+$" \n`}, // backslashes are kept
		{"café 中文 ✓ \U0001F600", "café 中文 ✓ \U0001F600"},
		{"\ufffd is valid UTF-8", "\ufffd is valid UTF-8"},
		{"a\nb", `a\nb`},
		{"a\r\nb", `a\r\nb`},
		{"a\tb", `a\tb`},
		{"\x1b[2J\x1b]0;title\x07", `\x1b[2J\x1b]0;title\x07`},
		{"\x00\x01\x1f\x7f", `\x00\x01\x1f\x7f`},
		{"\u0080\u0085\u009b\u009f", `\u0080\u0085\u009b\u009f`},
		{"\u00a0 stays", "\u00a0 stays"}, // no-break space: printable
		{"abc\u202edef", `abc\u202edef`},
		{"\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069", `\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069`},
		{"\u061c\u200e\u200f", `\u061c\u200e\u200f`},
		{"line\u2028para\u2029", `line\u2028para\u2029`},
		{"\u2027\u202f\u2065\u206a", "\u2027\u202f\u2065\u206a"}, // neighbours stay
		{"bad \xff\xfe byte", `bad \xff\xfe byte`},
		{"cut \xe2\x80", `cut \xe2\x80`},                     // truncated sequence
		{"surrogate \xed\xa0\x80", `surrogate \xed\xa0\x80`}, // not valid UTF-8
		{"é\xc3", `é\xc3`},
		{"x@y\nbob@z DELIVERED 250", `x@y\nbob@z DELIVERED 250`},
	} {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscapeUnchangedDoesNotAllocate(t *testing.T) {
	s := strings.Repeat("bob@example.com é 中 \\n ", 20)
	if got := Escape(s); got != s {
		t.Fatalf("Escape changed %q", s)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Escape(s) }); n != 0 {
		t.Errorf("Escape of a safe string: %v allocations, want 0", n)
	}
}

// checkEscaped checks the invariants of Escape's output.
func checkEscaped(t *testing.T, in, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("Escape(%q) = %q: not valid UTF-8", in, out)
	}
	for i := 0; i < len(out); i++ {
		if c := out[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("Escape(%q) = %q: byte %#x at %d", in, out, c, i)
		}
	}
	for _, r := range out {
		if unsafeRune(r) {
			t.Fatalf("Escape(%q) = %q: rune %U", in, out, r)
		}
	}
	if again := Escape(out); again != out {
		t.Fatalf("Escape is not idempotent: Escape(%q) = %q, again %q", in, out, again)
	}
	if firstUnsafe(in) < 0 && out != in {
		t.Fatalf("Escape(%q) = %q: a safe string was changed", in, out)
	}
	if firstUnsafe(in) >= 0 && out == in {
		t.Fatalf("Escape(%q) left it unchanged", in)
	}
	if strings.Count(out, "\\") < strings.Count(in, "\\") {
		t.Fatalf("Escape(%q) = %q lost a backslash", in, out)
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "bob@example.com", "a\r\nb", "\x1b[2J", "\u202e", "\u2028\u2029",
		"\xff", "é中", "\u0085", `\n`, "x@y\nbob@z DELIVERED 250", "\xed\xa0\x80", "\u061c\u200f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkEscaped(t, s, Escape(s))
	})
}

func BenchmarkEscapeSafe(b *testing.B) {
	s := "routing.route                rule 1  if in_list(\"microsoft\", rcpt_domain)  => YES -> smarthost"
	b.ReportAllocs()
	for b.Loop() {
		_ = Escape(s)
	}
}

func BenchmarkEscapeUnsafe(b *testing.B) {
	s := "evil@example.com\nbob@example.com DELIVERED 250 \x1b[2J\u202e"
	b.ReportAllocs()
	for b.Loop() {
		_ = Escape(s)
	}
}
