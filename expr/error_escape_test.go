package expr

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/expr-lang/expr/file"

	"github.com/postern-mta/postern/internal/textsafe"
)

// noRawControls fails when s has a control character other than the line
// feeds of a snippet, invalid UTF-8, or a bidirectional control.
func noRawControls(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("not valid UTF-8: %q", s)
	}
	for _, r := range s {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || (r >= 0x2028 && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Errorf("raw %U in %q", r, s)
		}
	}
	for i, l := range strings.Split(s, "\n") {
		if i > 0 && !strings.HasPrefix(l, " | ") {
			t.Errorf("line %d does not start a snippet line: %q", i, l)
		}
	}
}

func TestErrorEscapes(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  Error
		want string
	}{
		{"plain text unchanged", Error{File: "p.yaml", Line: 3, Column: 5, Setting: "tls.dane", Message: `"x\d" is not one of a, b`},
			`p.yaml:3:5: tls.dane: "x\d" is not one of a, b`},
		{"message", Error{File: "p.yaml", Line: 2, Column: 1, Setting: "limits",
			Message: "unknown key \"a\nb.yaml:1:1: forged\" \x1b[2J\u202edone\r"},
			`p.yaml:2:1: limits: unknown key "a\nb.yaml:1:1: forged" \x1b[2J\u202edone\r`},
		{"setting and file", Error{File: "dir\n/p\x1b.yaml", Line: 1, Column: 1, Setting: "lists.a\x1bb\u2028", Message: "bad\xff"},
			`dir\n/p\x1b.yaml:1:1: lists.a\x1bb\u2028: bad\xff`},
		{"file without line", Error{File: "p\r.yaml", Message: "YAML syntax: x\ny"}, `p\r.yaml: YAML syntax: x\ny`},
		{"snippet: caret moves with the escapes", Error{File: "p.yaml", Line: 4, Column: 33, Setting: "routing.route[0].if",
			Message: "invalid operation: +", ExprLine: 1, ExprColumn: 22,
			Snippet: "\n | rcpt == \"\x1b[2J\u202e\" && 1 + \"x\"\n | .....................^"},
			"p.yaml:4:33: routing.route[0].if: invalid operation: + (1:22)\n | rcpt == \"\\x1b[2J\\u202e\" && 1 + \"x\"\n | .............................^"},
		{"snippet: caret past the end", Error{Message: "m", ExprLine: 1, ExprColumn: 5, Snippet: "\n | a\x01b\n | .....^"},
			"m (1:5)\n | a\\x01b\n | ........^"},
		{"snippet: invalid UTF-8 counts a rune a byte", Error{Message: "m", ExprLine: 1, ExprColumn: 4, Snippet: "\n | \xff\xfeb + 1\n | ...^"},
			"m (1:4)\n | \\xff\\xfeb + 1\n | .........^"},
		{"snippet of another shape keeps only its snippet breaks", Error{Message: "m", ExprLine: 1, ExprColumn: 1,
			Snippet: "\n | a\nforged line\n | x\x1b\n | not a caret"},
			"m (1:1)\n | a\\nforged line\n | x\\x1b\n | not a caret"},
		{"snippet with a line feed in its source line", Error{Message: "m", ExprLine: 1, ExprColumn: 2,
			Snippet: "\n | a\nb\n | .^"},
			"m (1:2)\n | a\\nb\n | .^"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.err.Error()
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			noRawControls(t, got)
		})
	}
}

// TestErrorSnippetCaret binds expr-lang errors to sources with characters
// that Escape widens and checks that the caret stays under the same
// character of the escaped line.
func TestErrorSnippetCaret(t *testing.T) {
	for _, src := range []string{
		`rcpt == "x" && nope`,
		"rcpt == \"\x1b[2J\u202e\" && nope",
		"sender == \"\u0085\x7f中é\" && nope",
		"a\x00b\x01c + \xff\xfe + nope",
		"line one\nrcpt == \"\r\u2028\" && nope",
	} {
		target := strings.LastIndex(src, "nope")
		from := utf8.RuneCountInString(src[:target]) // Location.From counts runes
		fe := (&file.Error{Location: file.Location{From: from}, Message: "unknown name nope"}).Bind(file.NewSource(src))
		e := &Error{File: "p.yaml", Line: 1, Column: 1, Setting: "x", Message: fe.Message,
			ExprLine: fe.Line, ExprColumn: fe.Column + 1, Snippet: fe.Snippet}
		got := e.Error()
		noRawControls(t, got)
		lines := strings.Split(got, "\n")
		if len(lines) != 3 {
			t.Errorf("%q: %d lines, want 3:\n%s", src, len(lines), got)
			continue
		}
		code := []rune(strings.TrimPrefix(lines[1], " | "))
		caret := strings.TrimPrefix(lines[2], " | ")
		col := strings.IndexByte(caret, '^')
		if col < 0 || strings.Trim(caret[:col], ".") != "" || col > len(code) || !strings.HasPrefix(string(code[col:]), "nope") {
			t.Errorf("%q: the caret is not under nope:\n%s", src, got)
		}
	}
}

// FuzzErrorSnippet binds an expr-lang error anywhere in any source and
// checks that Error has no raw control character and that the caret is
// under the escaped form of the character it pointed at.
func FuzzErrorSnippet(f *testing.F) {
	for _, s := range []string{"rcpt == \"\x1b[2J\u202e\" && nope", "a\tb\r\nc\xff + 1", "中é\u0085x", "\n\n"} {
		f.Add(s, uint(7))
	}
	f.Fuzz(func(t *testing.T, src string, k uint) {
		from := int(k % uint(utf8.RuneCountInString(src)+1))
		fe := (&file.Error{Location: file.Location{From: from}, Message: "m"}).Bind(file.NewSource(src))
		if fe.Snippet == "" {
			return
		}
		got := (&Error{Message: fe.Message, ExprLine: fe.Line, ExprColumn: fe.Column + 1, Snippet: fe.Snippet}).Error()
		noRawControls(t, got)
		lines := strings.Split(got, "\n")
		if len(lines) != 3 {
			t.Fatalf("%d lines:\n%s", len(lines), got)
		}
		code := []rune(strings.TrimPrefix(lines[1], " | "))
		caret := strings.TrimPrefix(lines[2], " | ")
		col := strings.IndexByte(caret, '^')
		if col < 0 || col != len(caret)-1 || strings.Trim(caret[:col], ".") != "" {
			t.Fatalf("bad caret line %q", lines[2])
		}
		// The characters of the source line as expr-lang counts them
		// (tabs are shown as spaces).
		var units []string
		line := strings.ReplaceAll(strings.Split(src, "\n")[fe.Line-1], "\t", " ")
		for i := range line {
			_, size := utf8.DecodeRuneInString(line[i:])
			units = append(units, line[i:i+size])
		}
		if fe.Column < len(units) {
			if want := textsafe.Escape(units[fe.Column]); col > len(code) || !strings.HasPrefix(string(code[col:]), want) {
				t.Fatalf("the caret is not under %q:\n%s", want, got)
			}
		} else if want := len(code) + fe.Column - len(units); col != want {
			t.Fatalf("caret at %d, want %d past the end:\n%s", col, want, got)
		}
	})
}
