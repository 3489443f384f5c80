package engine_test

// Regression tests for engine bugs found while writing the golden tests.
// Each states the input and what the engine must do. (Bugs that showed in
// whole outputs are covered by golden cases: dane-require-insecure,
// split-recipients and the skipped-host cases.)

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
)

const bugZone = `$TTL 300
$ORIGIN example.com.
@         IN SOA ns1 hostmaster 1 3600 600 604800 300
@         IN MX  10 mx1
mx1       IN A   192.0.2.25
$ORIGIN two-sts.example.
@         IN SOA ns1 hostmaster 1 3600 600 604800 300
@         IN MX  10 mx1
mx1       IN A   192.0.2.26
_mta-sts  IN TXT "v=STSv1; id=1;"
_mta-sts  IN TXT "v=STSv1; id=2;"
`

// "@example.com" has no local part, which the engine's own message says an
// address needs, yet it is routed and delivered like ok@example.com.
func TestEmptyLocalPart(t *testing.T) {
	e := staticEngine(t, "version: 1\n", bugZone, false)
	d := evaluate(t, e, "alice@example.org", "@example.com", "ok@example.com")
	if g := groupOf(t, d, "@example.com"); g.Outcome != engine.OutcomeFail {
		t.Errorf("@example.com: outcome %s with %d hosts; want fail (invalid recipient address)", g.Outcome, len(g.Hosts))
	}
}

// An invalid address and a recipient whose route fails to evaluate share
// the group key (domain, route ""), so the second joins the first's group
// and is failed permanently as "invalid recipient address" instead of being
// deferred (temporary, class policy) as docs/policy.md says.
func TestInvalidAddressAndRouteErrorMerged(t *testing.T) {
	policy := `version: 1
routing:
  route:
    - if: rcpt startsWith "err" && recipients[9] == ""
      then: mx
    - else: mx
`
	e := staticEngine(t, policy, bugZone, false)
	d := evaluate(t, e, "alice@example.org", "dave smith@example.com", "err@example.com")
	g := groupOf(t, d, "err@example.com")
	if g.Outcome != engine.OutcomeDefer || g.Error == nil || g.Error.Class != engine.ClassPolicy {
		t.Errorf("err@example.com (route expression error): outcome %s, error %+v; want defer, class policy", g.Outcome, g.Error)
	}
	if slices.Contains(g.Recipients, "dave smith@example.com") {
		t.Errorf("err@example.com shares a group with the invalid address: %v", g.Recipients)
	}
}

// Invalid recipients without a domain ("bob", "carol@") all land in the
// group of domain "", whose error names only the first one: the error of
// carol@'s group talks about "bob".
func TestInvalidRecipientsShareOneError(t *testing.T) {
	e := staticEngine(t, "version: 1\n", bugZone, false)
	d := evaluate(t, e, "alice@example.org", "bob", "carol@")
	for _, rcpt := range []string{"bob", "carol@"} {
		g := groupOf(t, d, rcpt)
		if g.Error == nil || !strings.Contains(g.Error.Message, `"`+rcpt+`"`) {
			t.Errorf("%s: group error %+v does not name it", rcpt, g.Error)
		}
	}
}

// A group error with several lines (an expression error carries its source
// snippet) breaks the text layout: the snippet lines start at column 1 and
// "(temporary, class policy)" ends up after the caret line.
func TestGroupErrorTextIndented(t *testing.T) {
	policy := `version: 1
routing:
  route:
    - if: recipients[5] == "x"
      then: mx
    - else: mx
`
	e := staticEngine(t, policy, bugZone, false)
	d := evaluate(t, e, "alice@example.org", "bob@example.com")
	var b bytes.Buffer
	if err := d.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, " |") || strings.HasPrefix(line, " ..") {
			t.Errorf("line not indented under its group:\n%s\nwhole output:\n%s", line, b.String())
			break
		}
	}
}

// RFC 8461 section 3.1: when more than one TXT record at _mta-sts starts
// with "v=STSv1", the domain has no available MTA-STS policy. The engine
// takes the last one, so tls.mta-sts require delivers instead of failing.
func TestMTASTSMultipleRecords(t *testing.T) {
	e := staticEngine(t, "version: 1\ntls:\n  mta-sts: require\n", bugZone, false)
	d := evaluate(t, e, "alice@example.org", "bob@two-sts.example")
	g := groupOf(t, d, "bob@two-sts.example")
	if g.Outcome != engine.OutcomeFail || g.MTASTS.Record != "" {
		t.Errorf("two v=STSv1 records with mta-sts require: outcome %s, record %q; want fail, no record", g.Outcome, g.MTASTS.Record)
	}
}

// A tls.mta-sts expression that fails takes require (never weaker), but a
// domain without a policy is then deferred, not bounced: a broken policy
// must not lose mail for good.
func TestMTASTSExpressionErrorDefers(t *testing.T) {
	e := staticEngine(t, "version: 1\ntls:\n  mta-sts: {expr: 'recipients[3]'}\n", bugZone, false)
	d := evaluate(t, e, "alice@example.org", "bob@example.com")
	g := groupOf(t, d, "bob@example.com")
	if g.MTASTS.Setting != "require" || g.Outcome != engine.OutcomeDefer || g.Error == nil || g.Error.Class != engine.ClassPolicy ||
		!strings.Contains(g.Error.Message, "index out of range") {
		t.Errorf("mta-sts %q, outcome %s, error %+v; want require, defer, class policy naming the expression error", g.MTASTS.Setting, g.Outcome, g.Error)
	}
}
