package expr

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestSessionPhase: relay.permit's phase knows the session's variables and
// no other; the delivery phases do not know the session's own.
func TestSessionPhase(t *testing.T) {
	lib := testLib()
	compile := func(src string, p Phase) error {
		_, err := lib.Compile(src, Spec{Setting: "relay.permit[0].if", Type: Bool, Phase: p}, Position{File: "p.yaml", Line: 3, Column: 9})
		return err
	}
	for _, src := range []string{
		`authenticated_as == "" && !is_ip_in_cidr(received_from_ip, "10.1.0.0/16")`,
		`listener == "mta" && tls`,
		`sender_domain == "example.org" || domain_matches(rcpt_domain, "*.example.net")`,
		`in_list("microsoft", rcpt_domain) && rcpt != sender`,
	} {
		if err := compile(src, Session); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
	for _, c := range []struct{ src, want string }{
		{`route == "mx"`, `p.yaml:3:9: relay.permit[0].if: route is not known when relay.permit is evaluated: it is decided per RCPT command while the relay receives the message, before any delivery: only sender, sender_domain, rcpt, rcpt_domain, received_from_ip, authenticated_as, listener and tls are known then (route is a host-phase variable; relay.permit is a session-phase setting) (1:1)` + "\n | route == \"mx\"\n | ^"},
		{`tls && mx endsWith ".example"`, "p.yaml:3:16: relay.permit[0].if: mx is not known when relay.permit is evaluated"},
		{`remote_ip == "192.0.2.1"`, "p.yaml:3:9: relay.permit[0].if: remote_ip is not known when relay.permit is evaluated"},
		{`retry_num > 0`, "retry_num is a recipient-phase variable; relay.permit is a session-phase setting"},
		{`size > 100`, "size is not known when relay.permit is evaluated"},
	} {
		err := compile(c.src, Session)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v\nwant %s", c.src, err, c.want)
		}
	}
	for _, p := range []Phase{Recipient, Host, Connection} {
		err := compile(`listener == "mta" || tls`, p)
		if err == nil || !strings.Contains(err.Error(), "listener is not known when relay.permit is evaluated: it is known only while the relay receives a message over SMTP, in relay.permit, not when the message is delivered (listener is a session-phase variable") {
			t.Errorf("%s phase: %v", p, err)
		}
	}
	if got, want := VariablesOf(Session), []string{"sender", "sender_domain", "rcpt", "rcpt_domain", "received_from_ip", "authenticated_as", "listener", "tls"}; !slices.Equal(got, want) {
		t.Errorf("VariablesOf(Session) = %v, want %v", got, want)
	}
	if slices.Contains(VariablesOf(Connection), "listener") || slices.Contains(VariablesOf(Recipient), "tls") {
		t.Error("a delivery phase lists a session variable")
	}
	if Session.String() != "session" {
		t.Errorf("Session.String() = %q", Session)
	}
}

// TestSessionEval: the session's variables reach the program.
func TestSessionEval(t *testing.T) {
	lib := testLib()
	p, err := lib.Compile(`listener == "submission" && tls && authenticated_as != ""`, Spec{Setting: "x", Type: Bool, Phase: Session}, Position{})
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Funcs: lib.Funcs(Hooks{}), Listener: "submission", TLS: true, AuthenticatedAs: "app"}
	var m VM
	if ok, err := p.Bool(&m, env); err != nil || !ok {
		t.Errorf("got %v, %v; want true", ok, err)
	}
	env.TLS = false
	if ok, err := p.Bool(&m, env); err != nil || ok {
		t.Errorf("without TLS: got %v, %v; want false", ok, err)
	}
}

// TestImplies: what a condition proves about its atoms, for each polarity.
func TestImplies(t *testing.T) {
	lib := testLib()
	// authenticated: authenticated_as is not empty; client: the client's
	// address is tested against a literal prefix.
	authenticated := func(a Atom) bool {
		switch {
		case a.Var != "authenticated_as":
			return false
		case a.Op == "!=":
			return a.Args[0] == ""
		case a.Op == "==" || a.Op == "in":
			return !slices.Contains(a.Args, "")
		}
		return false
	}
	clientOrAuth := func(a Atom) bool {
		return authenticated(a) || a.Var == "received_from_ip" && a.Op == "is_ip_in_cidr" && !a.Negated
	}
	tests := []struct {
		src  string
		want bool
		ok   func(Atom) bool
		ans  bool
	}{
		{`authenticated_as != ""`, true, authenticated, true},
		{`"" != authenticated_as`, true, authenticated, true},
		{`authenticated_as == ""`, true, authenticated, false},
		{`authenticated_as == ""`, false, authenticated, true},
		{`!(authenticated_as == "")`, true, authenticated, true},
		{`not (authenticated_as == "")`, true, authenticated, true},
		{`authenticated_as == "app"`, true, authenticated, true},
		{`authenticated_as in ["a", "b"]`, true, authenticated, true},
		{`authenticated_as in ["a", ""]`, true, authenticated, false},
		{`authenticated_as not in ["", "x"]`, true, authenticated, false},
		{`authenticated_as != "" && tls`, true, authenticated, true},
		{`tls and authenticated_as != ""`, true, authenticated, true},
		{`authenticated_as != "" || tls`, true, authenticated, false},
		{`authenticated_as != "" or authenticated_as == "x"`, true, authenticated, true},
		{`tls`, true, authenticated, false},
		{`true`, true, authenticated, false},
		{`false`, true, authenticated, true},
		{`true`, false, authenticated, true},
		{`len(authenticated_as) > 0`, true, authenticated, false},
		{`authenticated_as != "" ? true : false`, true, authenticated, false},
		{`is_ip_in_cidr(received_from_ip, "10.0.0.0/8")`, true, clientOrAuth, true},
		{`!is_ip_in_cidr(received_from_ip, "10.0.0.0/8")`, true, clientOrAuth, false},
		{`authenticated_as == "" && !is_ip_in_cidr(received_from_ip, "10.1.0.0/16")`, false, clientOrAuth, true},
		{`authenticated_as == "" && !is_ip_in_cidr(received_from_ip, "10.1.0.0/16")`, true, clientOrAuth, false},
		{`authenticated_as == "" || !is_ip_in_cidr(received_from_ip, "10.1.0.0/16")`, false, clientOrAuth, true},
		{`authenticated_as == "" && tls`, false, clientOrAuth, false},
		{`is_ip_in_cidr(received_from_ip, rcpt)`, true, clientOrAuth, false},
	}
	for _, c := range tests {
		p, err := lib.Compile(c.src, Spec{Setting: "x", Type: Bool, Phase: Session}, Position{})
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if got := p.Implies(c.want, c.ok); got != c.ans {
			t.Errorf("Implies(%v, %s) = %v, want %v", c.want, c.src, got, c.ans)
		}
	}
	// The atoms as ok sees them.
	p, err := lib.Compile(`!is_ip_in_cidr(received_from_ip, "10.0.0.0/8") || in_list("microsoft", authenticated_as)`, Spec{Setting: "x", Type: Bool, Phase: Session}, Position{})
	if err != nil {
		t.Fatal(err)
	}
	var seen []Atom
	p.Implies(false, func(a Atom) bool { seen = append(seen, a); return false })
	want := []Atom{{Var: "received_from_ip", Op: "is_ip_in_cidr", Args: []string{"10.0.0.0/8"}}, {Var: "authenticated_as", Op: "in_list", Args: []string{"microsoft"}, Negated: true}}
	if len(seen) != len(want) {
		t.Fatalf("atoms %+v, want %+v", seen, want)
	}
	for i := range want {
		if seen[i].Var != want[i].Var || seen[i].Op != want[i].Op || !slices.Equal(seen[i].Args, want[i].Args) || seen[i].Negated != want[i].Negated {
			t.Errorf("atom %d: %+v, want %+v", i, seen[i], want[i])
		}
	}
	// A program of another type proves nothing.
	s, err := lib.Compile(`authenticated_as`, Spec{Setting: "x", Type: String, Phase: Session}, Position{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Implies(true, func(Atom) bool { return true }) {
		t.Error("a string program implied something")
	}
}

// TestImpliesSound: for random conditions over a few atoms, whenever
// Implies(want, ok) says so, every environment (of a grid) in which the
// condition gives want makes one of the atoms ok accepted hold. The
// conditions mix what Implies reasons about with what it must not see
// through (a ternary, a comparison with a computed value).
func TestImpliesSound(t *testing.T) {
	lib := testLib()
	atoms := []string{
		`authenticated_as != ""`, `authenticated_as == "a"`, `authenticated_as in ["a", "b"]`, `authenticated_as == ""`,
		`is_ip_in_cidr(received_from_ip, "10.0.0.0/8")`, `received_from_ip == "192.0.2.1"`, `in_list("microsoft", authenticated_as)`,
		`listener == "x"`, `tls`, `true`, `false`, `(tls ? authenticated_as != "" : listener == "y")`, `authenticated_as == listener`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var gen func(depth int) string
	gen = func(depth int) string {
		if depth == 0 || rng.IntN(3) == 0 {
			return atoms[rng.IntN(len(atoms))]
		}
		switch rng.IntN(5) {
		case 0:
			return "!(" + gen(depth-1) + ")"
		case 1:
			return "not (" + gen(depth-1) + ")"
		case 2:
			return "(" + gen(depth-1) + " || " + gen(depth-1) + ")"
		case 3:
			return "(" + gen(depth-1) + " and " + gen(depth-1) + ")"
		}
		return "(" + gen(depth-1) + " && " + gen(depth-1) + ")"
	}
	var envs []*Env
	for _, auth := range []string{"", "a", "b", "hotmail.com", "x"} {
		for _, ip := range []string{"10.1.2.3", "192.0.2.1", "198.51.100.1", "2001:db8::1"} {
			for _, l := range []string{"x", "y"} {
				for _, tls := range []bool{false, true} {
					envs = append(envs, &Env{Funcs: lib.Funcs(Hooks{}), AuthenticatedAs: auth, ReceivedFromIP: ip, Listener: l, TLS: tls})
				}
			}
		}
	}
	// atomText writes an atom back as an expression that holds when it does.
	atomText := func(a Atom) string {
		quoted := make([]string, len(a.Args))
		for i, s := range a.Args {
			quoted[i] = `"` + s + `"`
		}
		switch a.Op {
		case "==", "!=":
			return a.Var + " " + a.Op + " " + quoted[0]
		case "in", "not in":
			return a.Var + " " + a.Op + " [" + strings.Join(quoted, ", ") + "]"
		}
		var call string
		if a.Op == "in_list" {
			call = a.Op + "(" + quoted[0] + ", " + a.Var + ")"
		} else {
			call = a.Op + "(" + a.Var + ", " + strings.Join(quoted, ", ") + ")"
		}
		if a.Negated {
			return "!" + call
		}
		return call
	}
	var m VM
	compile := func(src string) *Program {
		p, err := lib.Compile(src, Spec{Setting: "x", Type: Bool, Phase: Session}, Position{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		return p
	}
	proved := 0
	for i := 0; i < 1500; i++ {
		src := gen(4)
		p := compile(src)
		for _, want := range []bool{true, false} {
			var accepted []*Program
			ok := func(a Atom) bool {
				if a.Var != "authenticated_as" && a.Var != "received_from_ip" {
					return false
				}
				accepted = append(accepted, compile(atomText(a)))
				return true
			}
			if !p.Implies(want, ok) {
				continue
			}
			proved++
			for _, env := range envs {
				got, err := p.Bool(&m, env)
				if err != nil {
					t.Fatalf("%s: %v", src, err)
				}
				if got != want {
					continue
				}
				held := false
				for _, a := range accepted {
					if h, err := a.Bool(&m, env); err == nil && h {
						held = true
						break
					}
				}
				if !held {
					t.Fatalf("Implies(%v, %s) is true, but with %+v the condition gives %v and no accepted atom holds", want, src, *env, want)
				}
			}
		}
	}
	if proved < 300 {
		t.Errorf("only %d of 3000 proofs: the generator no longer exercises Implies", proved)
	}
}
