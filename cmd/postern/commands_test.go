package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTableFlagsAreParsed: what -h prints for each command (the flags of
// the FlagSet it parses) is what the table's FlagSet prints, so the
// flags completion and the man page read are the ones the command takes;
// a command whose table entry has no flags parses none (-h does not
// print a usage of its own).
func TestTableFlagsAreParsed(t *testing.T) {
	for _, c := range commands {
		code, out, errs := runCLI(t, c.name, "-h")
		if c.flags == nil {
			if strings.Contains(out+errs, "usage: postern "+c.name) {
				t.Errorf("%s -h printed a usage, but the table gives it no flags:\n%s", c.name, out+errs)
			}
			continue
		}
		var want bytes.Buffer
		fs := c.flags()
		fs.SetOutput(&want)
		fs.Usage()
		if code != exitOK || out != "" || errs != want.String() {
			t.Errorf("%s -h: exit %d, stdout %q, stderr:\n%s\nthe table's FlagSet says:\n%s", c.name, code, out, errs, want.String())
		}
	}
}

// section returns the part of text from the first line that is start to
// the first line after it that starts with one of ends.
func section(t *testing.T, text, start string, ends ...string) string {
	t.Helper()
	i := strings.Index(text, "\n"+start+"\n")
	if i < 0 {
		t.Errorf("no line %q", start)
		return ""
	}
	rest := text[i+len(start)+2:]
	end := len(rest)
	for _, e := range ends {
		if j := strings.Index(rest, "\n"+e); j >= 0 && j < end {
			end = j
		}
	}
	return rest[:end]
}

// TestEveryFlagEverywhere checks the generators against the table: each
// command has its case in both scripts and its subsection in the page,
// with each of its flags in both forms (bash, zsh) or as people write it
// (the page), and each word a flag or an argument takes.
func TestEveryFlagEverywhere(t *testing.T) {
	bash, zsh, page := script(t, "bash"), script(t, "zsh"), manPage()
	_, names, _ := strings.Cut(bash, "\t\t_postern_words \"$cur\" ")
	names, _, _ = strings.Cut(names, "\n")
	for _, c := range commands {
		b := section(t, bash, "\t"+c.name+")", "\t;;")
		z := section(t, zsh, "\t"+c.name+")", "\t\t;;")
		m := section(t, page, `.SS "postern `+roff(c.name)+`"`, ".SS", ".SH")
		if !strings.Contains(" "+names+" ", " "+c.name+" ") {
			t.Errorf("bash: %s is not among the commands %q", c.name, names)
		}
		if !strings.Contains(zsh, "\t\t'"+c.name+":") {
			t.Errorf("zsh: %s is not among the commands", c.name)
		}
		var bashFlags string
		if i := strings.Index(b, "flags='"); i >= 0 {
			bashFlags, _, _ = strings.Cut(b[i+len("flags='"):], "'")
		}
		for _, f := range c.flagInfos() {
			if !strings.Contains(" "+bashFlags+" ", " "+f.name+" ") {
				t.Errorf("bash: %s: no flag %s in %q", c.name, f.name, bashFlags)
			}
			if f.arg != "" && !strings.Contains(b, "["+f.name+"]=") {
				t.Errorf("bash: %s: %s is not known to take a value", c.name, f.name)
			}
			eq := ""
			if f.arg != "" {
				eq = "="
			}
			if forms := "{-" + f.name + eq + ",--" + f.name + eq + "}"; !strings.Contains(z, forms) {
				t.Errorf("zsh: %s: no %s", c.name, forms)
			}
			if tag := `\fB` + roff(f.dashed()) + `\fR`; !strings.Contains(m, tag) {
				t.Errorf("man: %s: no %s", c.name, tag)
			}
			for _, w := range f.words {
				if !strings.Contains(b, w) || !strings.Contains(z, w) {
					t.Errorf("%s %s: word %q missing from a script", c.name, f.dashed(), w)
				}
				name, value, _ := strings.Cut(w, "=")
				if !strings.Contains(m, roff(name)) || !strings.Contains(m, roff(value)) {
					t.Errorf("man: %s %s: word %q missing", c.name, f.dashed(), w)
				}
			}
		}
		for _, w := range c.args.words {
			if !strings.Contains(b, w) || !strings.Contains(z, w) || !strings.Contains(m, w) {
				t.Errorf("%s: argument %q missing from a script or the page", c.name, w)
			}
		}
	}
}

// TestEnumWordsAccepted: each word completion offers for a flag is one
// the command takes, and a word not in the list is refused (exit 2); so
// the lists in the table are the ones the commands check against.
func TestEnumWordsAccepted(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	quickstart := "../../examples/quickstart/policy.yaml"
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Arguments that make the rest of each command's line valid (send
	// then stops at its empty message, exit 1, not 2).
	base := map[string][]string{
		"check":   {quickstart},
		"dry-run": {"-c", quickstart, "--from", "a@example.org", "--to", "b@example.com", "--no-dns"},
		"diff":    {"--old", quickstart, "--new", quickstart, "--envelopes", empty},
		"send":    {"-c", quickstart, "--from", "a@example.org", "--to", "b@example.com"},
		// A policy that is not there: the daemon stops at start (exit
		// 1) after a valid --log-format, never runs.
		"relay": {"-c", filepath.Join(t.TempDir(), "missing.yaml"), "--spool", t.TempDir()},
	}
	n := 0
	for _, c := range commands {
		for flagName, words := range c.enums {
			args, ok := base[c.name]
			if !ok {
				t.Errorf("%s: no arguments to try --%s with", c.name, flagName)
				continue
			}
			for _, w := range append(words, "bogus") {
				if strings.HasSuffix(w, "=") {
					w += "1" // NAME=: any value of its type
				}
				code, _, errs := runCLI(t, append([]string{c.name, "--" + flagName, w}, args...)...)
				n++
				switch {
				case w == "bogus" && code != exitUsage:
					t.Errorf("%s --%s %s: exit %d, want %d", c.name, flagName, w, code, exitUsage)
				case w != "bogus" && code == exitUsage:
					t.Errorf("%s --%s %s: refused: %s", c.name, flagName, w, errs)
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d words tried", n)
	}
}

// TestCompletionAndManUsage: completion needs one shell it knows; man
// takes no argument; -h prints their usage.
func TestCompletionAndManUsage(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "fish"}, {"completion", "bash", "zsh"}, {"man", "extra"}, {"man", "-x"}} {
		if code, out, errs := runCLI(t, args...); code != exitUsage || out != "" || errs == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, _, errs := runCLI(t, "completion", "-h"); code != exitOK || !strings.HasPrefix(errs, "usage: postern completion bash|zsh\n") {
		t.Errorf("completion -h: exit %d, %q", code, errs)
	}
}

// TestUsageListsEveryCommand: the list of commands has a line for each,
// its summary at the column the others use.
func TestUsageListsEveryCommand(t *testing.T) {
	code, out, _ := runCLI(t, "help")
	if code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, c := range commands {
		line := "  " + c.short
		if pad := 39 - len(line); pad > 0 {
			line += strings.Repeat(" ", pad-1)
		}
		if !strings.Contains(out, "\n"+line+" "+c.summary+"\n") {
			t.Errorf("no line for %s:\n%s", c.name, out)
		}
	}
}
