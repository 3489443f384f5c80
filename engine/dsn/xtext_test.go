package dsn_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postern-mta/postern/engine/dsn"
)

// TestParseORCPT reads ORCPT values of both encodings and refuses what
// RFC 3461 and RFC 6533 do not allow, and what decodes to a control
// character.
func TestParseORCPT(t *testing.T) {
	for _, tt := range []struct {
		in, typ, addr string
	}{
		{"rfc822;bob@example.com", "rfc822", "bob@example.com"},
		{"RFC822;bob+2Btag@example.com", "rfc822", "bob+tag@example.com"},
		{"rfc822;+22a+20b+22@example.com", "rfc822", `"a b"@example.com`},
		{"rfc822;b+c3+b3b@example.com", "rfc822", "bób@example.com"}, // bytes, lower-case hex
		{`utf-8;b\x{F3}b@ex\x{E4}mple.org`, "utf-8", "bób@exämple.org"},
		{`UTF-8;bób@exämple.org`, "utf-8", "bób@exämple.org"}, // utf-8-addr-unitext
		{`utf-8;a\x{2B}b\x{3D}c\x{5C}d@example.com`, "utf-8", `a+b=c\d@example.com`},
		{`utf-8;\x{1F600}@example.com`, "utf-8", "\U0001F600@example.com"},
		{"x400;/C+3DGB/A+3DBT/", "x400", "/C=GB/A=BT/"},
	} {
		typ, addr, err := dsn.ParseORCPT(tt.in)
		if err != nil || typ != tt.typ || addr != tt.addr {
			t.Errorf("ParseORCPT(%q) = %q, %q, %v; want %q, %q", tt.in, typ, addr, err, tt.typ, tt.addr)
		}
	}
	for _, in := range []string{
		"bob@example.com",                    // no type
		";bob@example.com",                   // empty type
		"rfc 822;bob@example.com",            // type not an atom
		"rfc822;",                            // no address
		"rfc822;bob@example.com+2",           // short hex
		"rfc822;bob+ZZ@example.com",          // not hex
		"rfc822;bob=x@example.com",           // "=" is never xtext
		"rfc822;bob x@example.com",           // space
		"rfc822;bób@example.com",             // raw UTF-8 in xtext
		"rfc822;bob+0D+0AX:+20y",             // decodes to CRLF
		"rfc822;bob+00@example.com",          // NUL
		"rfc822;bob+FF@example.com",          // not UTF-8
		`utf-8;bob+2B@example.com`,           // xtext "+" in a utf-8 address
		`utf-8;bob\x{D800}@x`,                // surrogate
		`utf-8;bob\x{110000}@x`,              // beyond Unicode
		`utf-8;bob\x{}@x`,                    // empty escape
		`utf-8;bob\x{1F600@x`,                // unterminated
		`utf-8;bob\u00e9@x`,                  // not \x{
		`utf-8;a\x{D}\x{A}X: y@x`,            // decodes to CRLF
		"utf-8;bob\xff@example.com",          // invalid UTF-8
		"rfc822;" + strings.Repeat("a", 901), // too long
	} {
		if typ, addr, err := dsn.ParseORCPT(in); err == nil {
			t.Errorf("ParseORCPT(%q) = %q, %q, want an error", in, typ, addr)
		}
	}
}

// TestFormatORCPT writes xtext for ASCII rfc822 addresses and the 7-bit
// utf-8 form for the others (RFC 6533).
func TestFormatORCPT(t *testing.T) {
	for _, tt := range []struct{ typ, addr, want string }{
		{"rfc822", "bob@example.com", "rfc822;bob@example.com"},
		{"rfc822", "bob+tag=1@example.com", "rfc822;bob+2Btag+3D1@example.com"},
		{"rfc822", `"a b"@example.com`, "rfc822;\"a+20b\"@example.com"},
		{"rfc822", "bób@example.com", `utf-8;b\x{F3}b@example.com`},
		{"utf-8", "a+b@example.com", `utf-8;a\x{2B}b@example.com`},
		{"UTF-8", `a\b@example.com`, `utf-8;a\x{5C}b@example.com`},
	} {
		got, err := dsn.FormatORCPT(tt.typ, tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("FormatORCPT(%q, %q) = %q, %v; want %q", tt.typ, tt.addr, got, err, tt.want)
		}
	}
	for _, tt := range [][2]string{{"rfc822", ""}, {"rfc 822", "a@b"}, {"rfc822", "a\r\nb@c"}, {"rfc822", "a\xffb"}} {
		if got, err := dsn.FormatORCPT(tt[0], tt[1]); err == nil {
			t.Errorf("FormatORCPT(%q, %q) = %q, want an error", tt[0], tt[1], got)
		}
	}
}

// FuzzORCPT: whatever FormatORCPT accepts, it writes as 7-bit xtext that
// ParseORCPT reads back to the same address (and the type, lower case, or
// utf-8 for a non-ASCII rfc822 address); whatever ParseORCPT accepts
// formats and parses back to itself.
func FuzzORCPT(f *testing.F) {
	for _, s := range [][2]string{{"rfc822", "bob@example.com"}, {"rfc822", "bób@exämple.org"}, {"utf-8", `a+b=c\d e@x`}, {"X400", "/C=GB/"}, {"rfc822", "a\r\nb"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, typ, addr string) {
		if enc, err := dsn.FormatORCPT(typ, addr); err == nil {
			for i := 0; i < len(enc); i++ {
				if enc[i] < '!' || enc[i] > '~' || enc[i] == '=' && i > strings.IndexByte(enc, ';') {
					t.Fatalf("FormatORCPT(%q, %q) = %q: byte %q is not xtext", typ, addr, enc, enc[i])
				}
			}
			gt, ga, err := dsn.ParseORCPT(enc)
			wantType := strings.ToLower(typ)
			if wantType == "rfc822" && !isASCII([]byte(addr)) {
				wantType = "utf-8"
			}
			if err != nil || gt != wantType || ga != addr {
				t.Fatalf("ParseORCPT(FormatORCPT(%q, %q) = %q) = %q, %q, %v", typ, addr, enc, gt, ga, err)
			}
		}
		if pt, pa, err := dsn.ParseORCPT(typ + ";" + addr); err == nil {
			if !utf8.ValidString(pa) || strings.ContainsAny(pa, "\r\n\x00") {
				t.Fatalf("ParseORCPT(%q) gave address %q", typ+";"+addr, pa)
			}
			enc, err := dsn.FormatORCPT(pt, pa)
			if err != nil {
				t.Fatalf("FormatORCPT(ParseORCPT(%q)): %v", typ+";"+addr, err)
			}
			if _, a2, err := dsn.ParseORCPT(enc); err != nil || a2 != pa {
				t.Fatalf("%q -> %q -> %q, %v", typ+";"+addr, enc, a2, err)
			}
		}
	})
}
