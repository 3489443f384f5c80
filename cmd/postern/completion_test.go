package main

// The completion scripts run in the real shells: bash's function is
// called as bash calls it (COMP_LINE, COMP_POINT, COMP_WORDS, COMP_CWORD),
// and both shells are also driven through a terminal (zsh's zpty module),
// TAB pressed and the result read back, with the scripts installed as
// docs/cli.md says.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// script returns what `postern completion SHELL` prints.
func script(t *testing.T, shell string) string {
	t.Helper()
	code, out, errs := runCLI(t, "completion", shell)
	if code != exitOK || errs != "" {
		t.Fatalf("completion %s: exit %d, stderr %q", shell, code, errs)
	}
	return out
}

// completionDir is a directory with the files completion should offer.
func completionDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"policy.yaml", "policy2.yaml", "cases.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runShell runs argv in dir with env added and returns its standard
// output; any output on standard error fails the test.
func runShell(t *testing.T, dir string, env []string, stdin string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("%s: %v\nstderr:\n%s\nstdout:\n%s", argv[0], err, errb.String(), out.String())
	}
	return out.String()
}

// sorted is words sorted, without repeats: the shells sort what they
// list, and the tests compare sets.
func sorted(words []string) []string {
	words = slices.Clone(words)
	slices.Sort(words)
	return slices.Compact(words)
}

var allCommands = []string{"check", "completion", "diff", "dry-run", "envelopes", "help", "man", "queue", "relay", "send", "test", "tlsrpt", "version"}

// TestBashCompletion calls _postern as bash does for each line, the
// cursor at its end (or at the |), and checks COMPREPLY.
func TestBashCompletion(t *testing.T) {
	bash := testbed.Require(t, "bash")
	dir := completionDir(t)
	scriptFile := filepath.Join(t.TempDir(), "postern.bash")
	if err := os.WriteFile(scriptFile, []byte(script(t, "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []string{"cases.yaml", "policy.yaml", "policy2.yaml", "sub"}
	cases := []struct {
		line string
		want []string
	}{
		{"postern ", allCommands},
		{"postern d", []string{"diff", "dry-run"}},
		{"postern diff --", []string{"--envelopes", "--format", "--new", "--old", "--seed"}},
		{"postern diff -", []string{"--envelopes", "--format", "--new", "--old", "--seed"}},
		{"postern diff ", []string{"--envelopes", "--format", "--new", "--old", "--seed"}}, // diff takes no argument
		{"postern test -", []string{"--run", "-c", "-v"}},
		{"postern test -r", []string{"-run"}},
		{"postern test --", []string{"--c", "--run", "--v"}},
		{"postern dry-run --format ", []string{"json", "jsonl", "text"}},
		{"postern dry-run --format=js", []string{"json", "jsonl"}},
		{"postern dry-run --format | --brief", []string{"json", "jsonl", "text"}},
		{"postern check --format ", []string{"json", "text"}},
		{"postern send --to a@example.com --format ", []string{"json", "text"}},
		{"postern check -c ", files},
		{"postern check -c pol", []string{"policy.yaml", "policy2.yaml"}},
		{"postern check -c=pol", []string{"policy.yaml", "policy2.yaml"}},
		{"postern diff --old policy.yaml --new ", files},
		{"postern send --ca-file ", files},
		{"postern test -c policy.yaml c", []string{"cases.yaml"}},
		{"postern envelopes --postfix-log ", files},
		{"postern dry-run --var retry", []string{"retry_num="}},
		{"postern dry-run --var last", []string{"last_error=", "last_status="}},
		// bash replaces what follows the last = (COMP_WORDBREAKS).
		{"postern dry-run --var last_error=t", []string{"tls"}},
		{"postern dry-run --var=last_error=un", []string{"unexpected-reply"}},
		{"postern completion ", []string{"bash", "zsh"}},
		// Free values, and nothing after the flags end.
		{"postern dry-run --from ", nil},
		{"postern check policy.yaml -", []string{"--format", "--print-defaults", "--strict", "-c"}}, // flags after the argument too
		{"postern test -c policy.yaml cases.yaml -", []string{"--run", "-c", "-v"}},
		{"postern test -c policy.yaml -- -", nil}, // "--" ends the flags
		{"postern version ", nil},
		{"postern frobnicate ", nil},
	}
	var in strings.Builder
	fmt.Fprintf(&in, "source %s\n", shellQuote(scriptFile))
	for _, c := range cases {
		line, point := c.line, len(c.line)
		if i := strings.Index(line, "|"); i >= 0 {
			line, point = line[:i]+line[i+1:], i
		}
		// _postern reads COMP_LINE and COMP_POINT; COMP_WORDS are set as
		// bash sets them for these lines (no = before the cursor), though
		// the script does not need them.
		fmt.Fprintf(&in, "COMP_LINE=%s COMP_POINT=%d\n", shellQuote(line), point)
		in.WriteString(`read -ra COMP_WORDS <<<"$COMP_LINE"
read -ra before <<<"${COMP_LINE:0:COMP_POINT}"
COMP_CWORD=$((${#before[@]} - 1))
[[ ${COMP_LINE:0:COMP_POINT} == *' ' ]] && ((COMP_CWORD++))
_postern
printf '%s\x1f' "${COMPREPLY[@]}"
echo
`)
	}
	out := runShell(t, dir, nil, in.String(), bash, "--norc", "--noprofile", "-s")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("%d lines of replies for %d cases:\n%s", len(lines), len(cases), out)
	}
	for i, c := range cases {
		var got []string
		if r := strings.TrimSuffix(lines[i], "\x1f"); r != "" {
			got = strings.Split(r, "\x1f")
		}
		if !slices.Equal(sorted(got), sorted(c.want)) {
			t.Errorf("%q: COMPREPLY %q, want %q", c.line, got, c.want)
		}
	}
}

// zptyDriver is a zsh script that starts argv[3...] in a terminal, waits
// for READY, then for each line of the file argv[1] types it and the keys
// argv[2] (ending with ^T, which the shell under test binds to print its
// line or its matches between <<< and >>>), prints what came back and
// clears the line.
const zptyDriver = `zmodload zsh/zpty
zpty -b sh "${(q@)@[3,-1]}"
zpty -r sh out '*READY*'
for l in "${(@f)$(<$1)}"; do
	zpty -w -n sh "$l$2"
	zpty -r sh out '*>>>*'
	out=${out##*<<<}
	print -r -- "${out%%>>>*}"
	zpty -w -n sh $'\x15'
done
zpty -d sh
`

// drive types each line and keys in a terminal running argv (see
// zptyDriver) and returns what the shell printed for each.
func drive(t *testing.T, dir string, env []string, lines []string, keys string, argv ...string) []string {
	t.Helper()
	zsh := testbed.Require(t, "zsh")
	tmp := t.TempDir()
	driver, input := filepath.Join(tmp, "driver.zsh"), filepath.Join(tmp, "lines")
	if err := os.WriteFile(driver, []byte(zptyDriver), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(input, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runShell(t, dir, env, "", append([]string{zsh, "-f", driver, input, keys}, argv...)...)
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != len(lines) {
		t.Fatalf("%d results for %d lines:\n%s", len(got), len(lines), out)
	}
	return got
}

// posternPath is PATH with the postern binary first, so that the shells
// run "postern completion ..." as docs/cli.md tells users to.
func posternPath(t *testing.T) string {
	return "PATH=" + filepath.Dir(posternBinary(t)) + string(os.PathListSeparator) + os.Getenv("PATH")
}

// TestBashCompletionInteractive presses TAB in an interactive bash that
// loaded the script with the line docs/cli.md gives, and reads the
// command line back: readline inserts what _postern offers (the common
// part when there are several), with the words split at = as bash splits
// them.
func TestBashCompletionInteractive(t *testing.T) {
	bash := testbed.Require(t, "bash")
	dir := completionDir(t)
	rc := filepath.Join(t.TempDir(), "bashrc")
	err := os.WriteFile(rc, []byte(`PS1='$ '
bind 'set bell-style none'
bind -x '"\C-t": printf "<<<%s>>>\n" "$READLINE_LINE"'
source <(postern completion bash)
echo READY
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cases := [][2]string{
		{"postern tlsr", "postern tlsrpt "},
		{"postern dry-run --no-d", "postern dry-run --no-dns "},
		{"postern dry-run --format=jso", "postern dry-run --format=json"},
		{"postern dry-run --format jsonl", "postern dry-run --format jsonl "},
		{"postern dry-run --var retry_n", "postern dry-run --var retry_num="},
		{"postern dry-run --var last_error=unex", "postern dry-run --var last_error=unexpected-reply "},
		{"postern check -c poli", "postern check -c policy"},
		{"postern check -c cas", "postern check -c cases.yaml "},
		{"postern check -c su", "postern check -c sub/"},
		{"postern completion z", "postern completion zsh "},
	}
	var lines []string
	for _, c := range cases {
		lines = append(lines, c[0])
	}
	got := drive(t, dir, []string{posternPath(t), "HOME=" + t.TempDir()}, lines, "\t\x14", bash, "--noprofile", "--rcfile", rc, "-i")
	for i, c := range cases {
		if got[i] != c[1] {
			t.Errorf("%q + TAB: line %q, want %q", c[0], got[i], c[1])
		}
	}
}

// zshLoad are the lines of docs/cli.md that load the script, by way of
// installing it.
var zshLoad = map[string]string{
	"fpath": `mkdir -p ~/.zfunc && postern completion zsh > ~/.zfunc/_postern
fpath=(~/.zfunc $fpath)
autoload -Uz compinit && compinit
`,
	"source": `autoload -Uz compinit && compinit
source <(postern completion zsh)
`,
}

// zshCapture binds ^T to a completion that prints the matches the
// completion functions added, instead of inserting them: compadd is
// wrapped to record what it adds (calls that only ask which words match,
// with -O, -A or -D, pass through).
const zshCapture = `typeset -ga got
compadd() {
	local a
	for a in "$@"; do
		[[ $a == -(|-) ]] && break
		[[ $a == -[OAD] ]] && { builtin compadd "$@"; return }
	done
	local -a m
	builtin compadd -O m "$@"
	got+=("${m[@]}")
	builtin compadd "$@"
}
_capture() {
	got=()
	_main_complete
	compstate[insert]=''
	compstate[list]=''
	print -rn -- $'\n<<<'"${(pj:\x1f:)got}"$'>>>\n'
}
zle -C capture complete-word _capture
bindkey '^T' capture
PS1='%% '
print READY
`

// TestZshCompletion checks the zsh script's syntax, loads it both ways
// docs/cli.md gives (a file in $fpath before compinit; source after it)
// with nothing said on standard error, and completes lines in an
// interactive zsh whose .zshrc has those lines.
func TestZshCompletion(t *testing.T) {
	zsh := testbed.Require(t, "zsh")
	dir := completionDir(t)
	file := filepath.Join(t.TempDir(), "_postern")
	if err := os.WriteFile(file, []byte(script(t, "zsh")), 0o644); err != nil {
		t.Fatal(err)
	}
	runShell(t, dir, nil, "", zsh, "-n", file)
	files := []string{"cases.yaml", "policy.yaml", "policy2.yaml", "sub"}
	cases := []struct {
		line string
		want []string
	}{
		{"postern ", allCommands},
		{"postern dr", []string{"dry-run"}},
		{"postern diff --", []string{"--envelopes", "--format", "--new", "--old", "--seed"}},
		{"postern test -", []string{"--c", "--run", "--v", "-c", "-run", "-v"}},
		{"postern test -c policy.yaml -", []string{"--run", "--v", "-run", "-v"}}, // -c is given
		{"postern dry-run --format ", []string{"json", "jsonl", "text"}},
		{"postern dry-run --format=j", []string{"json", "jsonl"}},
		{"postern check --format ", []string{"json", "text"}},
		{"postern check -c ", files},
		{"postern check -c pol", []string{"policy.yaml", "policy2.yaml"}},
		{"postern diff --old policy.yaml --new ", files},
		{"postern test -c policy.yaml c", []string{"cases.yaml"}},
		{"postern dry-run --var la", []string{"last_error", "last_status"}}, // each with = after it
		{"postern dry-run --var last_error=t", []string{"tls"}},
		{"postern send --var=last_error=c", []string{"concurrency", "connection"}},
		{"postern completion ", []string{"bash", "zsh"}},
		{"postern check policy.yaml --s", []string{"--strict"}}, // flags after the argument too
		{"postern test -c policy.yaml -- -", nil},               // "--" ends the flags
	}
	var lines []string
	for _, c := range cases {
		lines = append(lines, c.line)
	}
	for _, install := range []string{"fpath", "source"} {
		t.Run(install, func(t *testing.T) {
			home := t.TempDir()
			env := []string{posternPath(t), "HOME=" + home, "ZDOTDIR=" + home}
			// Without a terminal: no error, and compinit knows the
			// function.
			out := runShell(t, dir, env, "", zsh, "-f", "-c", zshLoad[install]+"print -r -- $_comps[postern]")
			if out != "_postern\n" {
				t.Fatalf("after loading, $_comps[postern] is %q, want _postern", out)
			}
			if err := os.WriteFile(filepath.Join(home, ".zshrc"), []byte(zshLoad[install]+zshCapture), 0o644); err != nil {
				t.Fatal(err)
			}
			// -d: no /etc/zsh/zshrc, only the .zshrc above.
			got := drive(t, dir, env, lines, "\x14", zsh, "-d", "-i")
			for i, c := range cases {
				matches := strings.Split(got[i], "\x1f")
				if got[i] == "" {
					matches = nil
				}
				if !slices.Equal(sorted(matches), sorted(c.want)) {
					t.Errorf("%q + TAB: matches %q, want %q", c.line, matches, c.want)
				}
			}
		})
	}
}
