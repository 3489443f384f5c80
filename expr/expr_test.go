package expr

import (
	"errors"
	"strings"
	"testing"
)

func testLib() *Library {
	return NewLibrary(map[string][]string{"microsoft": {"Outlook.com", "hotmail.com."}}, []string{"Example.org"})
}

func eval(t *testing.T, src string, env *Env) bool {
	t.Helper()
	lib := testLib()
	p, err := lib.Compile(src, Spec{Setting: "s", Type: Bool, Phase: Connection}, Position{File: "f", Line: 1, Column: 1})
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	env.Funcs = lib.Funcs(Hooks{})
	var m VM
	got, err := p.Bool(&m, env)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	return got
}

func TestFunctions(t *testing.T) {
	env := &Env{Rcpt: "Bob@Outlook.COM", RcptDomain: "outlook.com", RemoteIP: "192.0.2.7", LocalIP: "2001:db8::1",
		Meta: map[string]string{"tenant": "blue"}}
	tests := []struct {
		src  string
		want bool
	}{
		{`is_local_domain("EXAMPLE.ORG.")`, true},
		{`is_local_domain("example.com")`, false},
		{`is_local_address("a@example.org")`, false},
		{`in_list("microsoft", rcpt_domain)`, true},
		{`in_list("microsoft", "HOTMAIL.com")`, true},
		{`in_list("microsoft", "gmail.com")`, false},
		{`email_part(rcpt, "local") == "Bob"`, true},
		{`email_part(rcpt, "domain") == "outlook.com"`, true},
		{`email_part("no-at-sign", "domain") == ""`, true},
		{`is_ip_in_cidr(remote_ip, "192.0.2.0/24")`, true},
		{`is_ip_in_cidr(remote_ip, "192.0.2.7")`, true},
		{`is_ip_in_cidr(remote_ip, "198.51.100.0/24")`, false},
		{`is_ip_in_cidr("::ffff:192.0.2.9", "192.0.2.0/24")`, true},
		{`is_ip_in_cidr(local_ip, "2001:db8::/32")`, true},
		{`is_ip_in_cidr("not-an-ip", "2001:db8::/32")`, false},
		{`is_ipv4(remote_ip) && !is_ipv6(remote_ip)`, true},
		{`is_ipv6(local_ip) && !is_ipv4(local_ip)`, true},
		{`is_ipv4("::ffff:192.0.2.1")`, true},
		{`domain_matches("mx1.Example.com", "*.example.com")`, true},
		{`domain_matches("example.com", "*.example.com")`, false},
		{`domain_matches("badexample.com", "*.example.com")`, false},
		{`domain_matches("example.com.", "example.com")`, true},
		{`meta.tenant == "blue" && meta["missing"] == ""`, true},
		{`let x = rcpt_domain; x == "outlook.com"`, true},
	}
	for _, tt := range tests {
		if got := eval(t, tt.src, env); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func TestHooks(t *testing.T) {
	lib := testLib()
	f := lib.Funcs(Hooks{
		IsLocalDomain:  func(d string) bool { return d == "hooked.example" },
		IsLocalAddress: func(a string) bool { return a == "u@hooked.example" },
	})
	if !f.IsLocalDomain("Hooked.Example.") || f.IsLocalDomain("example.org") {
		t.Error("IsLocalDomain hook not used (or domain not normalised)")
	}
	if !f.IsLocalAddress("u@hooked.example") {
		t.Error("IsLocalAddress hook not used")
	}
}

func TestCompileErrors(t *testing.T) {
	pos := Position{File: "p.yaml", Line: 10, Column: 9, Indent: 5}
	tests := []struct {
		src  string
		spec Spec
		want string
	}{
		{`mx == "a"`, Spec{Setting: "routing.route[0].if", Type: Bool, Phase: Recipient, Why: "the route decides which MX hosts exist"},
			"p.yaml:10:9: routing.route[0].if: mx is not known when routing.route is evaluated: the route decides which MX hosts exist (mx is a host-phase variable; routing.route is a recipient-phase setting) (1:1)\n | mx == \"a\"\n | ^"},
		{`route == "x" && mx == "a"`, Spec{Setting: "tls.mta-sts", Type: Bool, Phase: Recipient, Extra: []string{"route"}},
			"p.yaml:10:25: tls.mta-sts: mx is not known when tls.mta-sts is evaluated: it is decided per recipient, before any MX host is chosen (mx is a host-phase variable; tls.mta-sts is a recipient-phase setting) (1:17)\n | route == \"x\" && mx == \"a\"\n | ................^"},
		{"size > 1 &&\n  local_ip == \"\"", Spec{Setting: "tls.dane", Type: Bool, Phase: Host},
			"p.yaml:11:7: tls.dane: local_ip is not known when tls.dane is evaluated: it is decided per host, before the host's addresses are tried (local_ip is a connection-phase variable; tls.dane is a host-phase setting) (2:3)\n |   local_ip == \"\"\n | ..^"},
		{`in_list(name, rcpt)`, Spec{Setting: "x", Type: Bool},
			"p.yaml:10:17: x: in_list: the list name must be a string literal, e.g. in_list(\"microsoft\", rcpt_domain) (1:9)\n | in_list(name, rcpt)\n | ........^"},
		{`email_part(rcpt, "user") == ""`, Spec{Setting: "x", Type: Bool},
			"p.yaml:10:26: x: email_part: the part must be \"local\" or \"domain\", not \"user\" (1:18)\n | email_part(rcpt, \"user\") == \"\"\n | .................^"},
		{`domain_matches(rcpt_domain, "*.")`, Spec{Setting: "x", Type: Bool},
			"p.yaml:10:37: x: domain_matches: \"*.\" is not a domain or *.domain pattern (1:29)\n | domain_matches(rcpt_domain, \"*.\")\n | ............................^"},
		{`$env["mx"]`, Spec{Setting: "x", Type: String},
			"p.yaml:10:9: x: $env is not available in policies: use the variables by name (1:1)\n | $env[\"mx\"]\n | ^"},
		{`  `, Spec{Setting: "x", Type: String}, "p.yaml:10:9: x: empty expression: write an expression of type string"},
		{`rcpt_domain`, Spec{Setting: "x", Type: StringList}, "p.yaml:10:9: x: expected slice, but got string"},
		{`is_local_domain(1)`, Spec{Setting: "x", Type: Bool},
			"p.yaml:10:25: x: cannot use int as argument (type string) to call is_local_domain  (1:17)\n | is_local_domain(1)\n | ................^"},
	}
	lib := testLib()
	for _, tt := range tests {
		_, err := lib.Compile(tt.src, tt.spec, pos)
		if err == nil {
			t.Errorf("%q compiled; want %s", tt.src, tt.want)
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %T is not *Error", tt.src, err)
		}
		if err.Error() != tt.want {
			t.Errorf("%q:\n got: %s\nwant: %s", tt.src, err, tt.want)
		}
	}
}

func TestRunTimeErrors(t *testing.T) {
	lib := testLib()
	p, err := lib.Compile(`recipients[5] == "x"`, Spec{Setting: "tls.dane[0].if", Type: Bool, Phase: Host}, Position{File: "p.yaml", Line: 3, Column: 11})
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Funcs: lib.Funcs(Hooks{}), Recipients: []string{"a@b"}}
	var m VM
	_, err = p.Bool(&m, env)
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *Error", err, err)
	}
	if !strings.HasPrefix(err.Error(), "p.yaml:3:21: tls.dane[0].if: run-time error: index out of range") {
		t.Errorf("error text: %s", err)
	}
	// The VM stays usable after a failure.
	env.Recipients = []string{"1", "2", "3", "4", "5", "x"}
	if ok, err := p.Bool(&m, env); err != nil || !ok {
		t.Errorf("after a failure: %v %v", ok, err)
	}
}

func TestStrings(t *testing.T) {
	lib := testLib()
	p, err := lib.Compile(`size > 10 ? ["192.0.2.1", rcpt_domain] : recipients`, Spec{Setting: "x", Type: StringList, Phase: Host}, Position{})
	if err != nil {
		t.Fatal(err)
	}
	var m VM
	got, err := p.Strings(&m, &Env{Size: 11, RcptDomain: "d.example"})
	if err != nil || strings.Join(got, ",") != "192.0.2.1,d.example" {
		t.Errorf("got %v %v", got, err)
	}
	rcpts := []string{"a@x"}
	got, err = p.Strings(&m, &Env{Recipients: rcpts})
	if err != nil || len(got) != 1 || got[0] != "a@x" {
		t.Errorf("got %v %v", got, err)
	}
	got[0] = "changed"
	if rcpts[0] != "a@x" {
		t.Error("Strings returned the environment's own slice")
	}
	bad, err := lib.Compile(`[1, 2]`, Spec{Setting: "x", Type: StringList}, Position{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Strings(&m, &Env{}); err == nil || !strings.Contains(err.Error(), "element 0 is int, not a string") {
		t.Errorf("got %v", err)
	}
}

func TestAlwaysTrue(t *testing.T) {
	lib := testLib()
	for src, want := range map[string]bool{`true`: true, `1 == 1`: true, `retry_num > 0`: false, `false`: false} {
		p, err := lib.Compile(src, Spec{Setting: "x", Type: Bool}, Position{})
		if err != nil {
			t.Fatal(err)
		}
		if p.AlwaysTrue() != want {
			t.Errorf("AlwaysTrue(%s) = %v", src, !want)
		}
	}
}

func TestVariablesMatchEnv(t *testing.T) {
	// Every documented variable compiles in its phase, so the table and the
	// struct tags cannot drift apart.
	lib := testLib()
	for _, v := range Variables {
		if _, err := lib.Compile(v.Name+" == "+v.Name, Spec{Setting: "x", Type: Bool, Phase: v.Phase}, Position{}); err != nil {
			t.Errorf("%s: %v", v.Name, err)
		}
	}
	if got := len(VariablesOf(Recipient)); got != 19 {
		t.Errorf("recipient phase has %d variables, want 19", got)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{`is_local_domain(rcpt_domain)`, `mx endsWith ".x" && retry_num > 2`, `in_list("microsoft", rcpt)`,
		`size > 10 ? "a" : "b"`, `let x = 1; x`, `meta.a ?? "z"`, `all(recipients, {# endsWith "x"})`, "a\n|| b", `[1,2][3]`} {
		f.Add(s, uint8(0), uint8(0))
	}
	lib := testLib()
	f.Fuzz(func(t *testing.T, src string, typ, phase uint8) {
		spec := Spec{Setting: "fuzz", Type: Type(typ % 4), Phase: Phase(phase % 4)}
		p, err := lib.Compile(src, spec, Position{File: "f", Line: 1, Column: 1})
		if err != nil {
			if err.Error() == "" {
				t.Error("empty error text")
			}
			return
		}
		env := &Env{Funcs: lib.Funcs(Hooks{}), Recipients: []string{"a@b"}, Meta: map[string]string{}}
		var m VM
		switch spec.Type {
		case Bool:
			_, _ = p.Bool(&m, env)
		case Int:
			_, _ = p.Int(&m, env)
		case StringList:
			_, _ = p.Strings(&m, env)
		default:
			_, _ = p.String(&m, env)
		}
	})
}
