package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// manPath is the committed page.
var manPath = filepath.Join("..", "..", "docs", "postern.1")

// TestManUpToDate fails when docs/postern.1 differs from what `postern
// man` prints: a flag or command changed without the page being made
// again.
func TestManUpToDate(t *testing.T) {
	code, generated, errs := runCLI(t, "man")
	if code != exitOK || errs != "" {
		t.Fatalf("man: exit %d, stderr %q", code, errs)
	}
	committed, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatalf("%v: run: go run ./cmd/postern man > docs/postern.1", err)
	}
	if string(committed) != generated {
		t.Errorf("docs/postern.1 is out of date (%s): run: go run ./cmd/postern man > docs/postern.1", firstDifference(string(committed), generated))
	}
}

// firstDifference describes the first line where the committed text
// differs from the generated one.
func firstDifference(committed, generated string) string {
	c, g := strings.Split(committed, "\n"), strings.Split(generated, "\n")
	for i := 0; i < len(c) && i < len(g); i++ {
		if c[i] != g[i] {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, c[i], g[i])
		}
	}
	return fmt.Sprintf("committed %d lines, generated %d", len(c), len(g))
}

// render runs a formatter on the committed page and returns its output;
// anything on standard error fails the test.
func render(t *testing.T, env []string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, errb.String())
	}
	return out.String()
}

// TestManRenders formats the page with groff, every warning on, and
// fails on any; then reads it as man -l shows it: a subsection per
// command, and in each the command's flags as the table has them, with
// their value's name, and each word a flag takes.
func TestManRenders(t *testing.T) {
	groff := testbed.Require(t, "groff")
	man := testbed.Require(t, "man")
	render(t, nil, groff, "-man", "-Tutf8", "-ww", "-z", manPath)
	text := render(t, []string{"MANWIDTH=80", "MAN_KEEP_FORMATTING="}, man, "-l", manPath)
	for _, c := range commands {
		section := manSection(text, "postern "+c.name)
		if section == "" {
			t.Errorf("no section %q in the page", "postern "+c.name)
			continue
		}
		for _, f := range c.flagInfos() {
			want := f.dashed()
			if f.arg != "" {
				want += " " + f.arg
			}
			if !hasTag(section, want) {
				t.Errorf("postern %s: no line %q in its section:\n%s", c.name, want, section)
			}
			for _, w := range f.words {
				w, _, _ = strings.Cut(w, "=") // NAME=VALUE: the NAME, and VALUE below
				if !strings.Contains(strings.Join(strings.Fields(section), " "), w) {
					t.Errorf("postern %s %s: %q is not in its section", c.name, f.dashed(), w)
				}
			}
		}
	}
	for _, want := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "SEE ALSO"} {
		if !hasLine(text, want) {
			t.Errorf("no heading %s", want)
		}
	}
}

// TestManInstalled runs the lines of docs/cli.md that install the page
// in a man1 directory and read it with man.
func TestManInstalled(t *testing.T) {
	bash := testbed.Require(t, "bash")
	testbed.Require(t, "man")
	env := []string{posternPath(t), "HOME=" + t.TempDir()}
	text := render(t, env, bash, "--norc", "--noprofile", "-c",
		"mkdir -p ~/man/man1 && postern man > ~/man/man1/postern.1\nMANPATH=~/man: MANWIDTH=80 man postern")
	if !hasLine(text, "postern - check, dry-run and apply outbound mail policies") {
		t.Errorf("man postern:\n%s", text)
	}
}

// manSection is the text of the subsection titled title, up to the next
// heading of any level; "" when there is none.
func manSection(text, title string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != title || !strings.HasPrefix(l, "   ") || strings.HasPrefix(l, "    ") {
			continue
		}
		end := i + 1
		for end < len(lines) && (lines[end] == "" || strings.HasPrefix(lines[end], "     ")) {
			end++
		}
		return strings.Join(lines[i+1:end], "\n")
	}
	return ""
}

// hasLine reports whether a line of text is want, spaces around aside.
func hasLine(text, want string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

// hasTag reports whether a line of text starts with the tag want: alone,
// or followed by its text after two spaces (a short tag such as -v).
func hasTag(text, want string) bool {
	for _, l := range strings.Split(text, "\n") {
		// groff puts a tag shorter than the indent (7 columns) on the
		// text's line, padded to the indent: one space after a
		// six-character tag.
		pad := "  "
		if n := len(want); n < 7 {
			pad = strings.Repeat(" ", 7-n)
		}
		if l = strings.TrimSpace(l); l == want || strings.HasPrefix(l, want+pad) {
			return true
		}
	}
	return false
}

// TestManSeeAlsoExists: every page of docs/ the man page names is in the
// repository.
func TestManSeeAlsoExists(t *testing.T) {
	for _, d := range manDocs() {
		if _, err := os.Stat(filepath.Join("..", "..", "docs", d)); err != nil {
			t.Errorf("the man page names docs/%s: %v", d, err)
		}
	}
}
