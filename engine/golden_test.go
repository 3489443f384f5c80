package engine_test

// Golden tests of the dry-run output, in the style of Caddy's adapter
// tests: every testdata/*.txtar archive is one case, and its expected
// outputs sit next to its inputs.
//
// An archive holds
//
//	policy.yaml  the policy (positions in the output are "policy.yaml:L")
//	zone.txt     the DNS answers (a static resolver, passed as
//	             Options.Resolver; the policy needs no dns: block)
//	message      the message and the dry-run flags, see parseMessage
//	want.txt     Decision.WriteText
//	want.json    Decision.WriteJSON
//
// plus any other file the policy reads (a list's {file:}). The comment
// before the first file says what the case shows; review the golden output
// against docs and spec before accepting it.
//
// A comment line starting with "BUG:" marks a case whose want files were
// written by hand with the correct output because the engine gets it wrong:
// the case fails until the engine is fixed, and -update leaves it alone
// (remove the BUG: lines after the fix, then -update if needed).
//
// Regenerate the outputs after a deliberate change with
//
//	go test ./engine -run TestGolden -update
//
// To replay a case with the CLI, extract it, add
// `dns: {resolver: static, zone-file: zone.txt}` (and `secure: true` when
// the message says so) to policy.yaml, and run `postern dry-run -c
// policy.yaml --seed N ...` with the message's flags.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/transport/dns"
)

var update = flag.Bool("update", false, "rewrite want.txt and want.json of the golden tests")

// goldenHostname is the machine host name the tests pretend to have (the
// default of the hostname setting), so outputs do not depend on the machine.
const goldenHostname = "mta.test.example"

// dryRun is a parsed message file: what `postern dry-run` takes as flags.
type dryRun struct {
	msg    engine.Message
	seed   uint64
	noDNS  bool
	secure bool
}

// parseMessage reads the message file: one "key: value" a line, # comments,
// blank lines ignored. Keys:
//
//	from: ADDR         envelope sender; "<>" or an empty value is the null sender
//	to: ADDR           a recipient (repeat for several, in order)
//	size: N            message size in bytes
//	seed: N            --seed N (default 1: goldens must repeat)
//	var: NAME=VALUE    --var NAME=VALUE, a recipient-phase variable
//	meta: K=V          --meta K=V
//	no-dns: true       --no-dns
//	secure: true       the static zone's answers are DNSSEC-secure
//	requiretls: true   the message carries REQUIRETLS (RFC 8689)
//	tls-required-no: true  the message has "TLS-Required: No" (RFC 8689 section 5)
func parseMessage(data []byte) (dryRun, error) {
	d := dryRun{seed: 1}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return d, fmt.Errorf("message:%d: want key: value", i+1)
		}
		value = strings.TrimSpace(value)
		var err error
		switch key {
		case "from":
			if value != "<>" {
				d.msg.From = value
			}
		case "to":
			d.msg.To = append(d.msg.To, value)
		case "size":
			d.msg.Size, err = strconv.Atoi(value)
		case "seed":
			d.seed, err = strconv.ParseUint(value, 10, 64)
		case "var":
			name, v, ok := strings.Cut(value, "=")
			if !ok {
				return d, fmt.Errorf("message:%d: var: want NAME=VALUE", i+1)
			}
			err = d.msg.SetVar(name, v)
		case "meta":
			k, v, ok := strings.Cut(value, "=")
			if !ok {
				return d, fmt.Errorf("message:%d: meta: want K=V", i+1)
			}
			if d.msg.Meta == nil {
				d.msg.Meta = map[string]string{}
			}
			d.msg.Meta[k] = v
		case "no-dns":
			d.noDNS, err = strconv.ParseBool(value)
		case "secure":
			d.secure, err = strconv.ParseBool(value)
		case "requiretls":
			d.msg.RequireTLS, err = strconv.ParseBool(value)
		case "tls-required-no":
			d.msg.TLSRequiredNo, err = strconv.ParseBool(value)
		default:
			return d, fmt.Errorf("message:%d: unknown key %q", i+1, key)
		}
		if err != nil {
			return d, fmt.Errorf("message:%d: %s: %v", i+1, key, err)
		}
	}
	if len(d.msg.To) == 0 {
		return d, fmt.Errorf("message: no to:")
	}
	return d, nil
}

// seeded is the random source of `postern dry-run --seed n`.
func seeded(n uint64) func() uint64 {
	return rand.New(rand.NewPCG(n, n^0x9e3779b97f4a7c15)).Uint64
}

// goldenCase is one extracted archive.
type goldenCase struct {
	name    string
	archive *txtar.Archive
	run     dryRun
	zone    []byte
}

func (c *goldenCase) file(name string) ([]byte, bool) {
	for _, f := range c.archive.Files {
		if f.Name == name {
			return f.Data, true
		}
	}
	return nil, false
}

func (c *goldenCase) setFile(name string, data []byte) {
	for i, f := range c.archive.Files {
		if f.Name == name {
			c.archive.Files[i].Data = data
			return
		}
	}
	c.archive.Files = append(c.archive.Files, txtar.File{Name: name, Data: data})
}

// knownBug reports whether the archive's comment has BUG: notes.
func (c *goldenCase) knownBug() bool {
	for _, line := range strings.Split(string(c.archive.Comment), "\n") {
		if strings.HasPrefix(line, "BUG:") {
			return true
		}
	}
	return false
}

// loadGolden reads testdata/NAME.txtar.
func loadGolden(t testing.TB, path string) *goldenCase {
	t.Helper()
	a, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &goldenCase{name: strings.TrimSuffix(filepath.Base(path), ".txtar"), archive: a}
	for _, need := range []string{"policy.yaml", "zone.txt", "message"} {
		if _, ok := c.file(need); !ok {
			t.Fatalf("%s: no %s in the archive", path, need)
		}
	}
	data, _ := c.file("message")
	if c.run, err = parseMessage(data); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	c.zone, _ = c.file("zone.txt")
	return c
}

// evaluate writes the archive's inputs into a temporary directory, makes it
// the working directory (so the policy is "policy.yaml" in every position)
// and evaluates the message as `postern dry-run` does.
func (c *goldenCase) evaluate(t *testing.T) *engine.Decision {
	t.Helper()
	return c.evaluateWith(t, true)
}

// evaluateWith evaluates the case, with or without the trace.
func (c *goldenCase) evaluateWith(t *testing.T, trace bool) *engine.Decision {
	t.Helper()
	dir := t.TempDir()
	for _, f := range c.archive.Files {
		if strings.HasPrefix(f.Name, "want.") {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	res, err := dns.NewStaticFromReader(bytes.NewReader(c.zone), "zone.txt", c.run.secure)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.LoadFile("policy.yaml", engine.Options{
		Resolver: res,
		Hostname: goldenHostname,
		Clock:    func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatalf("policy.yaml does not load:\n%v", err)
	}
	opts := []engine.EvalOption{engine.WithRand(seeded(c.run.seed))}
	if trace {
		opts = append(opts, engine.WithTrace())
	}
	if c.run.noDNS {
		opts = append(opts, engine.WithoutDNS())
	}
	d, err := eng.Evaluate(context.Background(), c.run.msg, opts...)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	return d
}

func goldenFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txtar")
	}
	return files
}

// eachGolden runs f as a subtest for every golden case; path is the
// archive's path as listed, abs its absolute path.
func eachGolden(t *testing.T, f func(t *testing.T, c *goldenCase, path, abs string)) {
	for _, path := range goldenFiles(t) {
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		c := loadGolden(t, abs)
		t.Run(c.name, func(t *testing.T) { f(t, c, path, abs) })
	}
}

func TestGolden(t *testing.T) {
	eachGolden(t, func(t *testing.T, c *goldenCase, path, abs string) {
		d := c.evaluate(t)
		var text, js bytes.Buffer
		if err := d.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		if err := d.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		if *update && c.knownBug() {
			t.Logf("%s has BUG: notes; not rewritten", path)
		} else if *update {
			c.setFile("want.txt", text.Bytes())
			c.setFile("want.json", js.Bytes())
			if err := os.WriteFile(abs, txtar.Format(c.archive), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		if c.knownBug() {
			t.Logf("known engine bug, see the BUG: notes in %s", path)
		}
		for _, out := range []struct {
			name string
			got  []byte
		}{{"want.txt", text.Bytes()}, {"want.json", js.Bytes()}} {
			want, ok := c.file(out.name)
			if !ok {
				t.Errorf("%s: no %s (run go test ./engine -run TestGolden -update)", path, out.name)
				continue
			}
			if !bytes.Equal(out.got, want) {
				t.Errorf("%s: %s differs (go test ./engine -run TestGolden -update rewrites it; review the diff):\n%s",
					path, out.name, lineDiff(string(want), string(out.got)))
			}
		}
	})
}

// TestGoldenWithoutTrace: what delivery decides (no trace) is what the
// dry-run shows, for every golden case: the decisions are the same once
// the trace-only parts (trace, DNS questions, throttle use) are left out.
// Shortcuts taken without a trace must not change a decision.
func TestGoldenWithoutTrace(t *testing.T) {
	eachGolden(t, func(t *testing.T, c *goldenCase, _, _ string) {
		shown, decided := c.evaluateWith(t, true), c.evaluateWith(t, false)
		for _, g := range shown.Groups {
			g.Trace, g.Lookups = nil, nil
			for i := range g.Throttles {
				g.Throttles[i].InUse, g.Throttles[i].WouldWait = 0, 0
			}
		}
		for _, g := range decided.Groups {
			g.Trace = nil
		}
		var a, b bytes.Buffer
		if err := shown.WriteJSON(&a); err != nil {
			t.Fatal(err)
		}
		if err := decided.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() {
			t.Errorf("the decision without a trace differs from the dry-run's:\n%s", lineDiff(a.String(), b.String()))
		}
	})
}

// lineDiff returns a small line diff of want and got ("-" want, "+" got,
// two lines of context), from a longest common subsequence: outputs are a
// few hundred lines at most.
func lineDiff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var ops []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, line{' ', a[i]})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			ops = append(ops, line{'+', b[j]})
			j++
		default:
			ops = append(ops, line{'-', a[i]})
			i++
		}
	}
	const context, limit = 2, 60
	var out strings.Builder
	shown, last := 0, -1
	for k, op := range ops {
		near := false
		for d := -context; d <= context; d++ {
			if k+d >= 0 && k+d < len(ops) && ops[k+d].op != ' ' {
				near = true
				break
			}
		}
		if !near {
			continue
		}
		if last >= 0 && k > last+1 {
			out.WriteString("   ...\n")
		}
		if shown == limit {
			out.WriteString("   (diff cut)\n")
			break
		}
		fmt.Fprintf(&out, " %c %s\n", op.op, op.text)
		shown++
		last = k
	}
	return out.String()
}
