package main

// Control characters in addresses, policy keys and values, file names and
// server replies do not reach the text output raw: they cannot add a line
// that looks like a result, nor send a terminal escape sequence.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/postern-mta/postern/internal/testbed"
)

const (
	// forgedRcpt would add a line "bob@... DELIVERED 250 forged" if it
	// were printed raw.
	forgedRcpt        = "evil@example.com\nbob@example.com DELIVERED 250 forged"
	forgedRcptEscaped = `evil@example.com\nbob@example.com DELIVERED 250 forged`
	// forgedFrom has a carriage return, a clear-screen sequence and a
	// right-to-left override.
	forgedFrom        = "al\rice\x1b[2J@example.org\u202e"
	forgedFromEscaped = `al\rice\x1b[2J@example.org\u202e`
)

// checkNoRaw fails when out has a control character other than line
// feeds, invalid UTF-8, or a bidirectional control or line separator.
func checkNoRaw(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s is not valid UTF-8: %q", what, out)
	}
	for _, r := range out {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || r == 0x061c || r == 0x200e || r == 0x200f ||
			(r >= 0x2028 && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Errorf("%s has a raw %U:\n%s", what, r, out)
			return
		}
	}
}

// noForgedLine fails when a line of out starts with what a forged value
// would have put at the start of a line.
func noForgedLine(t *testing.T, what, out string) {
	t.Helper()
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "bob@example.com DELIVERED") || strings.HasPrefix(l, "ice") {
			t.Errorf("%s has a forged line %q:\n%s", what, l, out)
		}
	}
}

func TestDryRunTextEscapes(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "x")
	args := func(from string, to ...string) []string {
		a := []string{"dry-run", "-c", "../../examples/quickstart/policy.yaml", "--seed", "1", "--from", from}
		for _, r := range to {
			a = append(a, "--to", r)
		}
		return a
	}
	// The same message with every special character replaced by a space
	// (the addresses stay as invalid as they were): the layout the forged
	// run must have, line for line.
	plain := strings.NewReplacer("\n", " ", "\r", " ", "\x1b", " ", "\u202e", " ")
	from, to := forgedFrom, []string{forgedRcpt, "ev\x1bil@example.com", "dave@outlook.com"}
	plainTo := make([]string, len(to))
	for i, r := range to {
		plainTo[i] = plain.Replace(r)
	}
	code, want, errs := runCLI(t, args(plain.Replace(from), plainTo...)...)
	if code != 0 || errs != "" {
		t.Fatalf("plain run: exit %d, stderr %q", code, errs)
	}
	code, got, errs := runCLI(t, args(from, to...)...)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	checkNoRaw(t, "dry-run output", got)
	noForgedLine(t, "dry-run output", got)
	gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(gotLines) != len(wantLines) {
		t.Fatalf("%d lines, want %d as without the special characters:\n%s\n---- without:\n%s", len(gotLines), len(wantLines), got, want)
	}
	for i := range gotLines {
		// Line for line, the same kind of line: the same indentation.
		g, w := gotLines[i], wantLines[i]
		if len(g)-len(strings.TrimLeft(g, " ")) != len(w)-len(strings.TrimLeft(w, " ")) {
			t.Errorf("line %d is %q, want a line like %q", i+1, g, w)
		}
	}
	if line := "message " + forgedFromEscaped + " -> " + forgedRcptEscaped + `, ev\x1bil@example.com, dave@outlook.com (0 bytes)`; gotLines[1] != line {
		t.Errorf("line 2 is %q, want %q", gotLines[1], line)
	}
	if !strings.Contains(got, "\n  recipients: "+forgedRcptEscaped) {
		t.Errorf("no recipients line with %q:\n%s", forgedRcptEscaped, got)
	}

	// JSON is left to encoding/json: the values come back as they were.
	code, js, _ := runCLI(t, append(args(from, to...), "--format", "json")...)
	var doc struct {
		Message struct {
			Sender     string
			Recipients []string
		}
	}
	if err := json.Unmarshal([]byte(js), &doc); code != 0 || err != nil {
		t.Fatalf("json: exit %d, %v", code, err)
	}
	if doc.Message.Sender != from || strings.Join(doc.Message.Recipients, "|") != strings.Join(to, "|") {
		t.Errorf("json: %+v", doc.Message)
	}
	// encoding/json escapes control characters (it leaves U+202E as it
	// is: valid JSON, and JSON output is left unchanged).
	for i := 0; i < len(js); i++ {
		if js[i] < 0x20 && js[i] != '\n' {
			t.Fatalf("dry-run JSON has a raw %#x at %d", js[i], i)
		}
	}
}

// replyServer is an SMTP server on loopback that refuses every session
// with reply (CRLF line ends included) and answers QUIT.
func replyServer(t *testing.T, reply string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := c.Write([]byte(reply)); err != nil {
					return
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if strings.EqualFold(strings.TrimSpace(sc.Text()), "QUIT") {
						_, _ = c.Write([]byte("221 2.0.0 bye\r\n"))
						return
					}
					if _, err := c.Write([]byte("503 5.5.1 go away\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port
}

func TestSendTextEscapes(t *testing.T) {
	for _, tt := range []struct {
		name     string
		port     func(t *testing.T) int
		from     string
		rcpts    []string
		escaped  []string // the start of each line
		contains string
	}{
		{
			name:    "closed port, forged sender and recipients",
			port:    func(t *testing.T) int { return testbed.FreePort(t, "127.0.0.1") },
			from:    forgedFrom,
			rcpts:   []string{forgedRcpt, "ca\x1b[2Jrol@dest.test\u202e", "dave@dest.test"},
			escaped: []string{forgedRcptEscaped, `ca\x1b[2Jrol@dest.test\u202e`, "dave@dest.test"},
		},
		{
			name:     "closed port, valid sender",
			port:     func(t *testing.T) int { return testbed.FreePort(t, "127.0.0.1") },
			from:     "alice@sender.test",
			rcpts:    []string{"dave@dest.test", forgedRcpt},
			escaped:  []string{"dave@dest.test", forgedRcptEscaped},
			contains: " host=127.0.0.1 ",
		},
		{
			name: "server refuses with control characters",
			port: func(t *testing.T) int {
				return replyServer(t, "554-5.7.1 \x1b]0;owned\x07\u202e first\r\n554 5.7.1 second\x1b[2J\r\n")
			},
			from:     "alice@sender.test",
			rcpts:    []string{"dave@dest.test", forgedRcpt},
			escaped:  []string{"dave@dest.test", forgedRcptEscaped},
			contains: `x1b]0;owned`, // %q of the reply, or of the error quoting it
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := sendDir(t, sendRoute("127.0.0.1", uint16(tt.port(t))))
			args := []string{"send", "-c", filepath.Join(dir, "policy.yaml"), "--from", tt.from}
			for _, r := range tt.rcpts {
				args = append(args, "--to", r)
			}
			var out, errb bytes.Buffer
			code := runIO(args, strings.NewReader(sendMessage), &out, &errb)
			res := fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
			if code != exitPartial {
				t.Errorf("want exit 3:\n%s", res)
			}
			checkNoRaw(t, "stdout", out.String())
			checkNoRaw(t, "stderr", errb.String())
			noForgedLine(t, "stdout", out.String())
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(got) != len(tt.rcpts) || !strings.HasSuffix(out.String(), "\n") {
				t.Fatalf("want exactly one line per recipient:\n%s", res)
			}
			for i, l := range got {
				if !strings.HasPrefix(l, tt.escaped[i]+" ") {
					t.Errorf("line %d does not start with %q: %q", i+1, tt.escaped[i], l)
				}
			}
			if !strings.Contains(out.String(), tt.contains) {
				t.Errorf("the output lacks %q:\n%s", tt.contains, res)
			}
		})
	}
}

func TestCheckEscapes(t *testing.T) {
	dir := t.TempDir()
	// A key, a value and a list name with control characters and a
	// right-to-left override (written as YAML double-quoted escapes: YAML
	// refuses most raw control characters).
	policy := "version: 1\n" +
		"\"lim\\eits\\npolicy.yaml:1:1: forged\": 3\n" +
		"hostname: \"mta\\r.ex\\u202eample\"\n" +
		"lists:\n  \"a\\eb\": [x]\n" +
		"routing:\n  route:\n    - if: \"rcpt == \\\"\\e[2J\\u202e\\\" && 1 + \\\"x\\\"\"\n      then: mx\n"
	p := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(p, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "check", "-c", p)
	want := p + `:2:1: lim\x1bits\npolicy.yaml:1:1: forged: unknown key "lim\x1bits\npolicy.yaml:1:1: forged" in the top level (known keys: version, hostname, local-domains, lists, routing, tls, ip-strategy, limits, queue, dns, relay)` + "\n" +
		p + `:3:11: hostname: "mta\r.ex\u202eample" is not a host name` + "\n" +
		p + `:5:3: lists.a\x1bb: "a\x1bb" is not a valid list name (letters, digits, _ . -)` + "\n"
	snippet := "\n | rcpt == \"\\x1b[2J\\u202e\" && 1 + \"x\"\n | .............................^\n"
	if code != 1 || out != "" || !strings.HasPrefix(errs, want) || !strings.Contains(errs, snippet) || !strings.HasSuffix(errs, p+": 4 errors\n") {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant it to start with:\n%s\nand to have the snippet%s", code, out, errs, want, snippet)
	}
	if n := strings.Count(errs, "\n"); n != 7 {
		t.Errorf("%d lines on stderr, want 7 (4 errors, 2 snippet lines, the count):\n%s", n, errs)
	}
	checkNoRaw(t, "stderr", errs)

	// Raw control characters: YAML refuses them, and its error is printed
	// escaped, as is the file name.
	raw := filepath.Join(dir, "raw\x1b[2J\nforged.yaml")
	if err := os.WriteFile(raw, []byte("version: 1\nhostname: mta\x1b[2J.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "check", "-c", raw)
	esc := strings.NewReplacer("\x1b", `\x1b`, "\n", `\n`).Replace(raw)
	if code != 1 || errs != esc+": YAML syntax: control characters are not allowed\n"+esc+": 1 error\n" {
		t.Errorf("raw control characters: exit %d, stderr:\n%s", code, errs)
	}
	checkNoRaw(t, "stderr", errs)

	// A file that is not there: the "postern:" line is escaped too.
	code, _, errs = runCLI(t, "check", "-c", filepath.Join(dir, "missing\r\x1b[2J.yaml"))
	if code != 1 || !strings.Contains(errs, `missing\r\x1b[2J.yaml`) || strings.Count(errs, "\n") != 1 {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
	checkNoRaw(t, "stderr", errs)

	// A policy that loads: the "ok" line escapes the file name.
	good := filepath.Join(dir, "good\x1b[2J.yaml")
	if err := os.WriteFile(good, []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, "check", "-c", good); code != 0 || out != filepath.Join(dir, `good\x1b[2J.yaml`)+": ok\n" || errs != "" {
		t.Errorf("good policy: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
