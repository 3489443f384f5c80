package xtext

import (
	"strings"
	"testing"
)

func TestEncodeDecode(t *testing.T) {
	for _, c := range []struct{ in, enc string }{
		{"", ""},
		{"bob@example.com", "bob@example.com"},
		{"a+b=c d", "a+2Bb+3Dc+20d"},
		{"\x00\x7f\xff", "+00+7F+FF"},
		{"jörg", "j+C3+B6rg"},
	} {
		if got := Encode(c.in); got != c.enc {
			t.Errorf("Encode(%q) = %q, want %q", c.in, got, c.enc)
		}
		if got, err := Decode(c.enc); err != nil || got != c.in {
			t.Errorf("Decode(%q) = %q, %v; want %q", c.enc, got, err, c.in)
		}
	}
	if got, err := Decode("a+2bb"); err != nil || got != "a+b" {
		t.Errorf("Decode(lower-case hex) = %q, %v; want \"a+b\"", got, err)
	}
	for _, c := range []struct{ in, err string }{
		{"a+2", `"+" at offset 1`},
		{"a+zz", `"+" at offset 1`},
		{"a=b", "byte 0x3D at offset 1"},
		{"a b", "byte 0x20 at offset 1"},
		{"é", "byte 0xC3 at offset 0"},
	} {
		if _, err := Decode(c.in); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("Decode(%q): %v, want an error about %s", c.in, err, c.err)
		}
	}
}

// FuzzRoundTrip: whatever Encode writes, Decode reads back unchanged, and
// it is printable ASCII without "=".
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "QQ314159", "bob+x@example.com", "a+b=c d", "\x00=+ \xff\r\n", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Encode(s)
		if strings.ContainsAny(e, "= ") || strings.ContainsFunc(e, func(r rune) bool { return r < '!' || r > '~' }) {
			t.Fatalf("Encode(%q) = %q: outside xtext", s, e)
		}
		if d, err := Decode(e); err != nil || d != s {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", s, d, err)
		}
	})
}
