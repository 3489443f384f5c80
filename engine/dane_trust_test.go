package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// untrusted is a static zone behind a resolver that says it does not
// validate DNSSEC (as a Client with dns.dnssec false, or only plain
// remote servers): its insecure answers prove nothing.
type untrusted struct{ *dns.Static }

func (untrusted) Validates() bool { return false }

const trustZone = `$TTL 300
$ORIGIN example.com.
@    IN SOA ns1 hostmaster 1 3600 600 604800 300
@    IN NS  ns1
ns1  IN A   192.0.2.53
@    IN MX  10 mx1
mx1  IN A   192.0.2.25
`

// tls.dane require never bounces mail because of our own resolver: when
// it cannot validate, an insecure answer defers the host (temporary), and
// the engine warns about the policy; when it can, the zone is provably
// insecure and the host fails for good.
func TestDANERequireWithUntrustedResolver(t *testing.T) {
	static, err := dns.NewStaticFromReader(strings.NewReader(trustZone), "zone.txt", false)
	if err != nil {
		t.Fatal(err)
	}
	load := func(policy string, res dns.Resolver) *engine.Engine {
		t.Helper()
		set, err := policies.Parse("policy.yaml", []byte(policy), policies.Options{Hostname: "mta.example.org"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := engine.New(set, engine.Options{Resolver: res})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	require := "version: 1\ntls:\n  dane:\n    - if: rcpt_domain == \"example.com\"\n      then: require\n"
	for _, tt := range []struct {
		name      string
		policy    string
		res       dns.Resolver
		warnings  int
		temporary bool
	}{
		{"validating resolver: provably insecure, permanent", require, static, 0, false},
		{"untrusted resolver: deferred, with a warning", require, untrusted{static}, 1, true},
		{"untrusted resolver, dane optional: no warning", "version: 1\n", untrusted{static}, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := load(tt.policy, tt.res)
			ws := e.Warnings()
			if len(ws) != tt.warnings {
				t.Fatalf("warnings %v, want %d", ws, tt.warnings)
			}
			if tt.warnings > 0 && (ws[0].Setting != "tls.dane" || ws[0].Line != 4 || !strings.Contains(ws[0].Message, "a resolver that validates DNSSEC")) {
				t.Errorf("warning %s", ws[0])
			}
			d, err := e.Evaluate(context.Background(), engine.Message{From: "a@example.org", To: []string{"b@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			g := d.Groups[0]
			if tt.policy == "version: 1\n" {
				if g.Outcome != engine.OutcomeDeliver {
					t.Errorf("dane optional: %s %+v", g.Outcome, g.Error)
				}
				return
			}
			wantOutcome := engine.OutcomeFail
			if tt.temporary {
				wantOutcome = engine.OutcomeDefer
			}
			if g.Outcome != wantOutcome || g.Error == nil || g.Error.Temporary != tt.temporary || g.Error.Class != "dane" {
				t.Errorf("outcome %s %+v, want %s class dane", g.Outcome, g.Error, wantOutcome)
			}
		})
	}
}
