package policies

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/internal/safefile"
)

// measure runs f and returns the bytes it allocated.
func measure(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// bigRule is one rule of terms OR'ed comparisons, anchored as &r.
func bigRule(terms int) string {
	var b strings.Builder
	b.WriteString("    - &r\n      if: '")
	for i := range terms {
		if i > 0 {
			b.WriteString(" || ")
		}
		fmt.Fprintf(&b, "rcpt_domain == \"d%d.example\"", i)
	}
	b.WriteString("'\n      then: local\n")
	return b.String()
}

// TestAliasAmplification: one 300-term rule anchored once and aliased
// 20,000 times (a 190 KB file) used to cost check minutes and gigabytes,
// each alias compiled again. Now: too many rules is an error found before
// anything is compiled; within the rule cap, each aliased node is compiled
// once; and aliases that expand the document without bound are refused.
func TestAliasAmplification(t *testing.T) {
	head := "version: 1\nrouting:\n  route:\n" + bigRule(300)
	t.Run("20000 aliases", func(t *testing.T) {
		src := head + strings.Repeat("    - *r\n", 20000) + "    - else: mx\n"
		var err error
		alloc := measure(func() { _, err = Parse("p.yaml", []byte(src), Options{Hostname: "mta.test"}) })
		if err == nil || !strings.Contains(err.Error(), "p.yaml:4:5: routing.route: 20002 rules: a setting has at most 1000") {
			t.Fatalf("error %.300v", err)
		}
		if alloc > 512<<20 {
			t.Errorf("allocated %d MiB", alloc>>20)
		}
	})
	t.Run("900 aliases compile once", func(t *testing.T) {
		src := head + strings.Repeat("    - *r\n", 900) + "    - else: mx\n"
		var s *Set
		var err error
		alloc := measure(func() { s, err = Parse("p.yaml", []byte(src), Options{Hostname: "mta.test"}) })
		if err != nil {
			t.Fatal(err)
		}
		if n := len(s.Route.rules); n != 901 {
			t.Fatalf("%d rules", n)
		}
		if s.Route.rules[0].cond.Source() != s.Route.rules[900].cond.Source() {
			t.Error("aliased rules differ")
		}
		// One compilation of the 300-term rule allocates about a
		// megabyte; 901 of them would be close to a gigabyte.
		if alloc > 64<<20 {
			t.Errorf("allocated %d MiB: the aliased rule was compiled again", alloc>>20)
		}
	})
	t.Run("aliases of aliases", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("version: 1\nlists:\n  l0: &l0 [a.example, b.example, c.example, d.example, e.example, f.example, g.example, h.example, i.example, j.example]\n")
		for i := 1; i <= 8; i++ {
			fmt.Fprintf(&b, "  l%d: &l%d [", i, i)
			for j := range 10 {
				if j > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "*l%d", i-1)
			}
			b.WriteString("]\n")
		}
		var err error
		alloc := measure(func() { _, err = Parse("p.yaml", []byte(b.String()), Options{Hostname: "mta.test"}) })
		if err == nil || !strings.Contains(err.Error(), "YAML aliases expand the policy past 100000 nodes") {
			t.Fatalf("error %.300v", err)
		}
		if alloc > 256<<20 {
			t.Errorf("allocated %d MiB", alloc>>20)
		}
	})
}

// TestSpecialFiles: lists, secrets and the policy itself must be regular
// files of bounded size: a FIFO never blocks, /dev/zero never grows
// memory.
func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(big, []byte(strings.Repeat("a.example\n", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, policy, want string
	}{
		{"list from /dev/zero", "lists:\n  l: {file: /dev/zero}\n", "lists.l.file: cannot read the list: /dev/zero: not a regular file (a device)"},
		{"list from /dev/urandom", "lists:\n  l: {file: /dev/urandom}\n", "not a regular file (a device)"},
		{"list from a FIFO", "lists:\n  l: {file: fifo}\n", "not a regular file (a FIFO)"},
		{"list from a directory", "lists:\n  l: {file: .}\n", "not a regular file (a directory)"},
		{"list over the file cap", "limits:\n  max-file-size: 1KiB\nlists:\n  l: {file: big.txt}\n", "lists.l.file: cannot read the list: big.txt: file too large (the limit is 1024 bytes)"},
		{"secret from a FIFO", "routing:\n  route: r\n  routes:\n    r: {type: relay, address: 192.0.2.1, auth: {username: u, secret: {file: fifo}}}\n",
			"routing.routes.r.auth.secret.file: cannot use the secret file: secret unavailable: " + fifo + ": not a regular file (a FIFO)"},
		{"secret from /dev/zero", "routing:\n  route: r\n  routes:\n    r: {type: relay, address: 192.0.2.1, auth: {username: u, secret: {file: /dev/zero}}}\n",
			"cannot use the secret file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "p.yaml")
			if err := os.WriteFile(p, []byte("version: 1\n"+tt.policy), 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			alloc := measure(func() { _, err = LoadFile(p, Options{Hostname: "mta.test"}) })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if alloc > 64<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
		})
	}
	for _, p := range []string{"/dev/zero", "/dev/urandom", fifo, dir} {
		if _, err := LoadFile(p, Options{}); !errors.Is(err, safefile.ErrNotRegular) {
			t.Errorf("LoadFile(%s) = %v, want ErrNotRegular", p, err)
		}
	}
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, []byte("version: 1\n# "+strings.Repeat("x", DefaultMaxPolicySize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(huge, Options{}); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("a policy over 1 MiB: %v", err)
	}
	if _, err := LoadFile(huge, Options{MaxSize: 2 << 20}); err != nil {
		t.Errorf("with a larger MaxSize: %v", err)
	}
	// A missing secret file may exist where the policy runs: a warning.
	p := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(p, []byte("version: 1\nrouting:\n  route: r\n  routes:\n    r: {type: relay, address: 192.0.2.1, auth: {username: u, secret: {file: missing}}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadFile(p, Options{})
	if err != nil || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0].String(), "cannot read the secret file here") {
		t.Errorf("missing secret file: %v %v", err, s)
	}
}

// TestDurationsDoNotOverflow: 213504d used to wrap around to 25m26s.
func TestDurationsDoNotOverflow(t *testing.T) {
	for _, bad := range []string{"213504d", "106752d", "106751d24h", "9223372036854775808d", "99999999999999999999d"} {
		_, err := ParseDuration(bad)
		if err == nil || !strings.Contains(err.Error(), "too large: a duration is at most 106751d") {
			t.Errorf("ParseDuration(%q) = %v", bad, err)
		}
	}
	if d, err := ParseDuration("106751d"); err != nil || d != 106751*24*time.Hour {
		t.Errorf("106751d = %v, %v", d, err)
	}
	if _, err := ParseRate("5/213504d"); err == nil {
		t.Error("rate with an overflowing period accepted")
	}
	for _, policy := range []string{
		"limits:\n  timeouts:\n    data: 213504d\n",
		"dns:\n  cache:\n    max-ttl: 213504d\n",
		"limits:\n  throttles:\n    - {name: t, rate: 1/213504d}\n",
	} {
		if _, err := Parse("p.yaml", []byte("version: 1\n"+policy), Options{Hostname: "mta.test"}); err == nil {
			t.Errorf("accepted:\n%s", policy)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "16KiB": 16384, "16kib": 16384, "10MB": 10000000, "1GiB": 1 << 30, "0": 0, "7 B": 7} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5MiB", "MiB", "10 XB", "99999999999GiB", "9223372036854775808"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
	for in, want := range map[int64]string{16384: "16KiB", 1 << 20: "1MiB", 1000: "1000", 3 << 30: "3GiB"} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestExpressionLimitSettings: limits.expressions bounds every expression
// of the policy, and is read before any of them is compiled (wherever it
// stands in the file).
func TestExpressionLimitSettings(t *testing.T) {
	src := `version: 1
routing:
  route:
    - if: '((rcpt_domain == "a.example"))'
      then: local
    - else: mx
limits:
  expressions:
    max-depth: 1
`
	_, err := Parse("p.yaml", []byte(src), Options{Hostname: "mta.test"})
	if err == nil || !strings.Contains(err.Error(), "p.yaml:4:13: routing.route[0].if: expression nested too deeply: more than 1 levels") {
		t.Fatalf("error %v", err)
	}
	src = `version: 1
limits:
  expressions: {max-size: 20, max-steps: 10}
routing:
  route:
    - if: 'all(1..11, # > 0) && rcpt_domain == "a.example"'
      then: local
    - else: mx
`
	_, err = Parse("p.yaml", []byte(src), Options{Hostname: "mta.test"})
	if err == nil || !strings.Contains(err.Error(), "expression too long: 47 bytes, the limit is 20") {
		t.Fatalf("error %v", err)
	}
	s, err := Parse("p.yaml", []byte(strings.Replace(src, "max-size: 20", "max-size: 1KiB", 1)), Options{Hostname: "mta.test"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Limits.Expressions != (expr.Limits{MaxSize: 1024, MaxDepth: expr.DefaultMaxDepth, MaxSteps: 10}) {
		t.Errorf("limits %+v", s.Limits.Expressions)
	}
	var m expr.VM
	env := newEnv(s)
	env.RcptDomain = "a.example"
	got, err := s.Route.Eval(&m, env, nil)
	if !errors.Is(err, expr.ErrBudget) || got != "" {
		t.Errorf("route = %q, %v; want the fallback (defer) and ErrBudget", got, err)
	}
	for _, bad := range []string{"max-size: 2MiB", "max-depth: 1001", "max-steps: 0", "max-size: lots"} {
		if _, err := Parse("p.yaml", []byte("version: 1\nlimits:\n  expressions:\n    "+bad+"\n"), Options{Hostname: "mta.test"}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// BenchmarkAliasPolicy: loading the alias-amplified policies of
// TestAliasAmplification.
func BenchmarkAliasPolicy(b *testing.B) {
	head := "version: 1\nrouting:\n  route:\n" + bigRule(300)
	for _, n := range []int{900, 20000} {
		src := []byte(head + strings.Repeat("    - *r\n", n) + "    - else: mx\n")
		b.Run(fmt.Sprintf("%d aliases", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Parse("p.yaml", src, Options{Hostname: "mta.test"})
			}
		})
	}
}
