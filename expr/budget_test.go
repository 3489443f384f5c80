package expr

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func compileWith(t *testing.T, lim Limits, src string, typ Type) (*Program, error) {
	t.Helper()
	lib := testLib().WithLimits(lim)
	return lib.Compile(src, Spec{Setting: "s", Type: typ, Phase: Connection}, Position{File: "f", Line: 3, Column: 5})
}

// TestHostileNesting: expressions nested far too deep are refused before
// expr-lang's recursive parser sees them (3,000,000 parentheses used to
// kill the process with a fatal stack overflow), with the position of the
// first level too many.
func TestHostileNesting(t *testing.T) {
	ceil := Limits{MaxSize: CeilingMaxSize, MaxDepth: CeilingMaxDepth}
	tests := []struct {
		name string
		lim  Limits
		src  string
		want string // in the error
	}{
		{"6 MB of parentheses", Limits{}, strings.Repeat("(", 3000000) + "true" + strings.Repeat(")", 3000000),
			"expression too long: 6000004 bytes, the limit is 16384 (limits.expressions.max-size)"},
		{"parentheses at the size ceiling", ceil, strings.Repeat("(", 500000) + "true" + strings.Repeat(")", 500000),
			"f:3:1005: s: expression nested too deeply: more than 1000 levels"},
		{"default depth", Limits{}, strings.Repeat("(", 65) + "true" + strings.Repeat(")", 65),
			"f:3:69: s: expression nested too deeply: more than 64 levels"},
		{"brackets", Limits{}, "len(" + strings.Repeat("[", 100) + strings.Repeat("]", 100) + ") > 0",
			"nested too deeply"},
		{"prefix operators", ceil, strings.Repeat("!", 900000) + "true", "more than 1000 levels"},
		{"not", ceil, strings.Repeat("not ", 200000) + "true", "more than 1000 levels"},
		{"unary minus", Limits{}, strings.Repeat("- ", 100) + "1 < 0", "more than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := compileWith(t, tt.lim, tt.src, Bool)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %.300v, want it to contain %q", err, tt.want)
			}
			// Refused before parsing: nothing in proportion to the input
			// (100,000 parentheses used to cost 250 MB).
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
		})
	}
	// Within the bounds: still compiles. Strings do not count as nesting.
	for _, src := range []string{
		strings.Repeat("(", 64) + "true" + strings.Repeat(")", 64),
		`rcpt == "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((" || !!!!!!true`,
		`"not not not" != "" and not (rcpt == "a") && notify_num >= 0`,
	} {
		if _, err := compileWith(t, Limits{}, src, Bool); err != nil {
			t.Errorf("%.60s: %v", src, err)
		}
	}
	if _, err := compileWith(t, ceil, strings.Repeat("(", 1000)+"true"+strings.Repeat(")", 1000), Bool); err != nil {
		t.Errorf("1000 levels at the ceiling: %.200v", err)
	}
}

// TestLimitsCeilings: a policy cannot lift the bounds past their ceilings.
func TestLimitsCeilings(t *testing.T) {
	got := Limits{MaxSize: 1 << 30, MaxDepth: 1 << 20, MaxSteps: 1 << 40}.withDefaults()
	if got != (Limits{CeilingMaxSize, CeilingMaxDepth, CeilingMaxSteps}) {
		t.Errorf("clamped to %+v", got)
	}
	if got := (Limits{}).withDefaults(); got != (Limits{DefaultMaxSize, DefaultMaxDepth, DefaultMaxSteps}) {
		t.Errorf("defaults %+v", got)
	}
}

// hostile are expressions that pass the load-time checks and would run
// for hours or build gigabytes without the evaluation budget.
var hostile = []struct{ name, src string }{
	{"nested loops (8e9 iterations)", `let x = 1..2000; all(x, all(x, all(x, # > 0)))`},
	{"let doubling", `let a = rcpt + rcpt; let b = a + a; let c = b + b; let d = c + c; let e = d + d; let f = e + e; let g = f + f; let h = g + g; let i = h + h; let j = i + i; let k = j + j; let l = k + k; let m = l + l; let n = m + m; let o = n + n; let p = o + o; let q = p + p; let r = q + q; let s = r + r; let t = s + s; let u = t + t; let v = u + u; let w = v + v; let x = w + w; let y = x + x; let z = y + y; len(z + z + z + z) > 0`},
	{"replace doubling", strings.Repeat("replace(", 40) + "rcpt" + strings.Repeat(`, "a", "aa")`, 40) + ` != ""`},
	{"map doubling (unknown element type)", "len(" + strings.Repeat("map(", 40) + `["aaaa"]` + strings.Repeat(", # + #)", 40) + ") > 0"},
	{"upper in a loop", `all(1..900000, upper(rcpt) != "")`},
	{"split in a loop", `all(1..50000, len(split(last_status, "")) > 0)`},
	{"join of a big list", `let l = map(1..90000, rcpt); len(join(l, rcpt)) > 0`},
}

// TestEvaluationBudget: each hostile expression stops with ErrBudget, in
// bounded memory (a generous limit: the bound is what matters, not the
// figure).
func TestEvaluationBudget(t *testing.T) {
	env := &Env{Rcpt: "aaaa@example.com", LastStatus: strings.Repeat("x", 4096)}
	env.Funcs = testLib().Funcs(Hooks{})
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			p, err := compileWith(t, Limits{}, tt.src, Bool)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			var m VM
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = p.Bool(&m, env)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrBudget) {
				t.Fatalf("error %.300v, want ErrBudget", err)
			}
			if !strings.Contains(err.Error(), "run-time error: evaluation budget exceeded: more than 100000 steps (limits.expressions.max-steps)") {
				t.Errorf("message %.300v", err)
			}
			t.Logf("allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
			// The VM is reusable afterwards, with a fresh budget.
			ok, err := mustCompile(t, `all(1..10, # > 0)`).Bool(&m, env)
			if err != nil || !ok {
				t.Errorf("next run: %v %v", ok, err)
			}
		})
	}
}

func mustCompile(t *testing.T, src string) *Program {
	t.Helper()
	p, err := compileWith(t, Limits{}, src, Bool)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBudgetSetting: the budget is the policy's number of steps.
func TestBudgetSetting(t *testing.T) {
	env := &Env{Recipients: []string{"a@x", "b@x", "c@x"}}
	env.Funcs = testLib().Funcs(Hooks{})
	var m VM
	for _, tt := range []struct {
		src  string
		fits bool
	}{
		{`all(1..10, # > 0)`, true},
		{`all(1..11, # > 0)`, false},
		{`any(recipients, any(recipients, # == "c@x"))`, true}, // 3 + 3 + 3 + 1 steps at most
		{`count(1..5, true) + count(1..6, true) > 0`, false},
	} {
		p, err := compileWith(t, Limits{MaxSteps: 10}, tt.src, Bool)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Bool(&m, env)
		if fits := err == nil; fits != tt.fits {
			t.Errorf("%s: error %v, want fits=%v", tt.src, err, tt.fits)
		}
	}
}

// TestBudgetContext: a run stops when the VM's context is done, so a
// delivery's deadline reaches the evaluation.
func TestBudgetContext(t *testing.T) {
	p, err := compileWith(t, Limits{MaxSteps: CeilingMaxSteps}, `let x = 1..2000; all(x, all(x, all(x, # > 0)))`, Bool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var m VM
	m.SetContext(ctx)
	env := &Env{}
	_, err = p.Bool(&m, env)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "evaluation interrupted") {
		t.Fatalf("error %v, want the context's", err)
	}
}

// TestBuiltinsRefused: builtins outside the policy set, and the reserved
// __ names, are load errors with a position.
func TestBuiltinsRefused(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{`repeat(rcpt, 1000000) != ""`, "f:3:5: s: repeat is not available in policies (the builtins policies may use: all, any"},
		{`reduce(1..10, #acc + #) > 0`, "reduce is not available in policies"},
		{`now().Year() > 2000`, "now is not available in policies"},
		{`toJSON(recipients) != ""`, "toJSON is not available"},
		{`rcpt == "a" || concat([1], [2])[0] == 1`, "f:3:20: s: concat is not available"},
		{`__meter == nil`, "unknown name __meter: names starting with __ are reserved"},
		{`__tick(nil)`, "names starting with __ are reserved"},
	} {
		_, err := compileWith(t, Limits{}, tt.src, Bool)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.src, err, tt.want)
		}
	}
}

// TestMeteredBuiltins: the metered builtins and + keep their meaning.
func TestMeteredBuiltins(t *testing.T) {
	env := &Env{Rcpt: "Bob.Smith@Example.COM", Size: 41, Meta: map[string]string{"a": "x", "b": "y"},
		Recipients: []string{"a@x", "b@y"}}
	for _, src := range []string{
		`lower(rcpt) == "bob.smith@example.com" && upper(rcpt) == "BOB.SMITH@EXAMPLE.COM"`,
		`trim("  a ") == "a" && trim("xxaxx", "x") == "a" && trimPrefix(rcpt, "Bob.") == "Smith@Example.COM" && trimSuffix(rcpt, ".COM") == "Bob.Smith@Example"`,
		`split(rcpt, "@")[1] == "Example.COM" && len(split("a,b,c", ",", 2)) == 2 && splitAfter("a,b", ",")[0] == "a,"`,
		`replace(rcpt, ".", "-") == "Bob-Smith@Example-COM" && replace("aaa", "a", "b", 2) == "bba" && replace("ab", "", "-") == "-a-b-"`,
		`join(recipients, ",") == "a@x,b@y" && join(["x", "y"]) == "xy" && join(split("a b", " "), "+") == "a+b"`,
		`string(size) == "41" && string(size + 1) == "42"`,
		`"mx." + lower(email_part(rcpt, "domain")) == "mx.example.com" && meta.a + meta.b == "xy" && ["a"][0] + "b" == "ab"`,
		`size + 1 == 42 && 1.5 + 1 == 2.5`,
		`len(map(recipients, # + "!")) == 2 && map(recipients, upper(#))[1] == "B@Y"`,
	} {
		if !eval(t, src, env) {
			t.Errorf("%s: false", src)
		}
	}
	// A string-typed + keeps the string type (a computed setting must still
	// be known to be a string when the policy loads).
	for _, src := range []string{`"mx." + rcpt_domain`, `"a" + rcpt + "." + rcpt_domain + ".example"`, `"bulk" + split(local_ip, ".")[3] + ".example"`} {
		if _, err := compileWith(t, Limits{}, src, String); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// TestCompileNestedOverloads: nested calls of builtins that expr-lang
// overloads (replace, trim, split, join) used to take time exponential in
// the nesting to type-check (24 nested replace calls: over a minute).
func TestCompileNestedOverloads(t *testing.T) {
	for _, f := range []string{"replace(%s, \"a\", \"b\")", "trim(%s, \"x\")", "trimPrefix(%s, \"x\")", "join(split(%s, \",\"), \",\")"} {
		src := "rcpt"
		for range 30 {
			src = strings.Replace(f, "%s", src, 1)
		}
		src += ` != ""`
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := compileWith(t, Limits{MaxSize: 64 << 10}, src, Bool); err != nil {
			t.Errorf("%.40s: %v", src, err)
		}
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
			t.Errorf("%.40s: compiling allocated %d MiB", src, alloc>>20)
		}
	}
}

func BenchmarkBudgetExhausted(b *testing.B) {
	for _, tt := range hostile[:3] {
		b.Run(tt.name, func(b *testing.B) {
			lib := testLib()
			p, err := lib.Compile(tt.src, Spec{Setting: "s", Type: Bool, Phase: Connection}, Position{})
			if err != nil {
				b.Fatal(err)
			}
			env := &Env{Rcpt: "aaaa@example.com"}
			env.Funcs = lib.Funcs(Hooks{})
			var m VM
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Bool(&m, env); !errors.Is(err, ErrBudget) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPredicate measures a loop with its per-iteration tick.
func BenchmarkPredicate(b *testing.B) {
	lib := testLib()
	p, err := lib.Compile(`any(recipients, # endsWith "@z")`, Spec{Setting: "s", Type: Bool, Phase: Connection}, Position{})
	if err != nil {
		b.Fatal(err)
	}
	env := &Env{Recipients: []string{"a@x", "b@x", "c@x", "d@x", "e@x", "f@x", "g@x", "h@x", "i@x", "j@x"}}
	env.Funcs = lib.Funcs(Hooks{})
	var m VM
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Bool(&m, env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostileCompile: what refusing a hostile expression costs, and
// compiling the deepest one allowed.
func BenchmarkHostileCompile(b *testing.B) {
	ceil := Limits{MaxSize: CeilingMaxSize, MaxDepth: CeilingMaxDepth}
	for _, bb := range []struct {
		name string
		lim  Limits
		src  string
	}{
		{"6MB parentheses (size)", Limits{}, strings.Repeat("(", 3000000) + "true" + strings.Repeat(")", 3000000)},
		{"500k parentheses (depth)", ceil, strings.Repeat("(", 500000) + "true" + strings.Repeat(")", 500000)},
		{"900k prefix operators", ceil, strings.Repeat("!", 900000) + "true"},
		{"1000 levels (allowed)", ceil, strings.Repeat("(", 1000) + "true" + strings.Repeat(")", 1000)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			lib := testLib().WithLimits(bb.lim)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = lib.Compile(bb.src, Spec{Setting: "s", Type: Bool, Phase: Connection}, Position{})
			}
		})
	}
}

// TestLongExpressionSnippet: the caret snippet of an error in a long
// expression shows a window of the line around the caret, not all of it.
func TestLongExpressionSnippet(t *testing.T) {
	src := strings.Repeat("(", 1500) + "true" + strings.Repeat(")", 1500)
	_, err := compileWith(t, Limits{MaxSize: CeilingMaxSize, MaxDepth: CeilingMaxDepth}, src, Bool)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	want := "\n | ..." + strings.Repeat("(", snippetWidth) + "...\n | " + strings.Repeat(".", snippetWidth/2+3) + "^"
	if !strings.HasSuffix(msg, want) || len(msg) > 600 {
		t.Errorf("error (%d bytes):\n%s", len(msg), msg)
	}
	short := `rcpt == "a" &&& true`
	_, err = compileWith(t, Limits{}, short, Bool)
	if err == nil || !strings.Contains(err.Error(), "\n | "+short+"\n | ") {
		t.Errorf("a short line is shown whole: %v", err)
	}
}
