package engine_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
)

// forged is what an attacker would put in an address, a DNS answer, a
// server reply or a policy value: a line feed followed by a line that
// looks real, a carriage return, a terminal escape sequence, a
// right-to-left override, a line separator, a C1 control and a byte that
// is not UTF-8.
const forged = "a\nb@z DELIVERED 250\r\x1b[2J\u202e\u2028\u0085\xff"

// forgedEscaped is forged as WriteText shows it.
const forgedEscaped = `a\nb@z DELIVERED 250\r\x1b[2J\u202e\u2028\u0085\xff`

// escapeDecision has s in every string WriteText prints, over two groups
// (an MX one and a relay one) so that every part of the layout is used.
func escapeDecision(s string) *engine.Decision {
	exprErr := (&expr.Error{File: "policy" + s + ".yaml", Line: 5, Column: 21, Setting: "routing.route[0].if" + s,
		Message: "run-time error: " + s, ExprLine: 1, ExprColumn: 11,
		Snippet: "\n | recipients[5] == \"" + s + "\"\n | ..........^"}).Error()
	trace := []policies.TraceEntry{
		{Setting: "routing.route" + s, Kind: policies.KindRule, Rule: 1, At: policies.Pos{File: "policy" + s + ".yaml", Line: 5, Column: 7}, If: "rcpt == \"" + s + "\"", Matched: true, Value: s, Context: "rcpt " + s},
		{Setting: "routing.route", Kind: policies.KindRule, Rule: 2, At: policies.Pos{File: "policy.yaml", Line: 6, Column: 7}, If: s, Value: s, Error: exprErr, Context: "rcpt " + s},
		{Setting: "tls.dane", Kind: policies.KindElse, Rule: 3, Value: s, Expr: s, Context: "rcpt " + s},
		{Setting: "tls.starttls", Kind: policies.KindDefault, Rule: 2, Value: s, Context: "host " + s},
		{Setting: "limits.mx", Kind: policies.KindLiteral, Value: s, Error: "dns: " + s, Context: "host " + s},
		{Setting: "hostname", Kind: policies.KindExpr, Expr: s, Value: s, Context: "host " + s},
		{Setting: "limits.throttles." + s + ".match", Kind: policies.KindRule, Rule: 1, If: s, Matched: true, Context: "host " + s},
		{Setting: s, Kind: policies.KindDefault, Value: s, Context: "host " + s},
	}
	skipped := "no address: " + s
	source := netip.MustParseAddr("192.0.2.10") // addresses are typed: nothing to forge there
	return &engine.Decision{
		Policy:  "policy" + s + ".yaml",
		Message: engine.MessageInfo{Sender: s, Recipients: []string{s, "bob@" + s}, Size: 10},
		Groups: []*engine.Group{
			{
				Domain: s, Route: engine.RouteInfo{Name: s, Type: policies.RouteMX}, Recipients: []string{s, "bob@" + s}, Outcome: "defer",
				Error: &engine.GroupError{Temporary: true, Class: transport.Class(s), Message: "routing.route failed to evaluate: " + exprErr},
				MTASTS: engine.MTASTSInfo{Setting: s, Record: "v=STSv1; id=" + s, Error: "fetch: " + s,
					Policy: &engine.MTASTSPolicy{ID: s, Mode: s, MX: []string{s, "mx." + s}, Source: "network"}},
				Limits: engine.GroupLimits{MX: 3, Recipients: 100},
				Hosts: []*engine.Host{
					{Name: s, Preference: 10, IPLookup: policies.Lookup(s), Skipped: &skipped},
					{Name: "mx." + s, Preference: 20, IPLookup: policies.Lookup(s), TLS: engine.HostTLS{STARTTLS: policies.TLSMode(s), DANE: policies.TLSMode(s), MinVersion: policies.TLSVersion(s),
						Required: true, Verify: s, MTASTS: s, DANEState: engine.DANEInfo{Active: true, Reason: "reason " + s, Names: []string{s},
							Records: []engine.TLSARecord{{Record: "3 1 1 " + s, Usable: true}, {Record: "0 0 1 " + s, Unusable: "usage " + s}}}},
						MessagesPerConnection: 20, Connections: []*engine.Connect{
							{RemoteIP: netip.MustParseAddr("192.0.2.2"), SourceIP: &source, EHLOHostname: s},
							{RemoteIP: netip.MustParseAddr("192.0.2.1"), EHLOHostname: s},
						}},
				},
				Throttles: []engine.ThrottleInfo{{Name: s, Key: s, Concurrency: 2, Rate: policies.Rate{Count: 5, Period: time.Minute}, Phase: s}},
				Lookups: []engine.DNSQuery{
					{Name: s, Type: "MX", Answer: []string{s, "10 " + s}, TTL: s, Cached: true},
					{Name: s, Type: s, Error: "dns: " + s},
					{Name: s, Type: "TXT"},
				},
				Trace: trace,
			},
			{
				Domain: "b" + s, Route: engine.RouteInfo{Name: s, Type: policies.RouteRelay, Address: s, Port: 587, Protocol: s,
					Auth: &engine.AuthInfo{Username: s, Secret: "<from env " + s + ">"}},
				Recipients: []string{s}, Outcome: "fail",
				Error: &engine.GroupError{Class: transport.Class(s), Message: "dns: " + s},
				Trace: trace,
			},
		},
	}
}

func writeText(t *testing.T, d *engine.Decision) string {
	t.Helper()
	var b bytes.Buffer
	if err := d.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestWriteTextEscapes(t *testing.T) {
	clean := writeText(t, escapeDecision("x"))
	got := writeText(t, escapeDecision(forged))

	if !utf8.ValidString(got) {
		t.Error("the output is not valid UTF-8")
	}
	for _, r := range got {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || (r >= 0x2028 && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Errorf("raw %U in the output:\n%s", r, got)
		}
	}
	// The forged strings add no line: the layout is the same as with a
	// plain value everywhere.
	if c, g := strings.Count(clean, "\n"), strings.Count(got, "\n"); c != g {
		t.Errorf("%d lines with forged values, %d without:\n%s", g, c, got)
	}
	for i, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "b@z DELIVERED") {
			t.Errorf("line %d is forged: %q", i+1, l)
		}
	}
	// Each place shows the value escaped; the lines of the expression
	// error's snippet stay lines of their own.
	for _, want := range []string{
		"policy  policy" + forgedEscaped + ".yaml\n",
		"message " + forgedEscaped + " -> " + forgedEscaped + ", bob@" + forgedEscaped + " (10 bytes)\n",
		"group 1: " + forgedEscaped + " via " + forgedEscaped + ": DEFER\n",
		"  error:      routing.route failed to evaluate: policy" + forgedEscaped + ".yaml:5:21: routing.route[0].if" + forgedEscaped +
			": run-time error: " + forgedEscaped + " (1:11) (temporary, class " + forgedEscaped + ")\n" +
			"               | recipients[5] == \"" + forgedEscaped + "\"\n" +
			"               | ..........^\n",
		"  recipients: " + forgedEscaped + ", bob@" + forgedEscaped + "\n",
		"  mta-sts:    " + forgedEscaped + " (record v=STSv1; id=" + forgedEscaped + ")\n",
		"    1. " + forgedEscaped + " (preference 10) lookup " + forgedEscaped + "\n       SKIPPED (permanent): no address: " + forgedEscaped + "\n",
		"       tls: starttls " + forgedEscaped + ", dane " + forgedEscaped + ", min " + forgedEscaped + ",",
		"       tls in effect: required, verify " + forgedEscaped + ", mta-sts " + forgedEscaped + "\n",
		"       dane ACTIVE: reason " + forgedEscaped + "\n         names: " + forgedEscaped + "\n",
		"         tlsa 3 1 1 " + forgedEscaped + " (usable)\n         tlsa 0 0 1 " + forgedEscaped + " (unusable: usage " + forgedEscaped + ")\n",
		"              policy " + forgedEscaped + ": mode " + forgedEscaped + ", mx " + forgedEscaped + ", mx." + forgedEscaped + ", max_age 0s; from the network, fetched 0s ago\n              fetch: " + forgedEscaped + "\n",
		"       -> 192.0.2.2 from 192.0.2.10, ehlo " + forgedEscaped + "\n",
		"    " + forgedEscaped + " key \"a\\nb@z DELIVERED 250\\r\\x1b[2J\\u202e\\u2028\\u0085\\xff\" (" + forgedEscaped + "): concurrency 2, rate 5/1m0s,",
		"    MX   " + forgedEscaped + ": " + forgedEscaped + ", 10 " + forgedEscaped + " [cached, ttl " + forgedEscaped + "]\n",
		"    " + forgedEscaped + " " + forgedEscaped + ": dns: " + forgedEscaped + "\n",
		"    rcpt " + forgedEscaped + "\n",
		"      routing.route" + forgedEscaped + " rule 1  if rcpt == \"" + forgedEscaped + "\"  => YES -> " + forgedEscaped + "  policy" + forgedEscaped + ".yaml:5\n",
		"        error: policy" + forgedEscaped + ".yaml:5:21: routing.route[0].if" + forgedEscaped + ": run-time error: " + forgedEscaped + " (1:11)\n" +
			"         | recipients[5] == \"" + forgedEscaped + "\"\n" +
			"         | ..........^\n",
		"      tls.dane                     else  => " + forgedEscaped + "  (from " + forgedEscaped + ")",
		"        error: dns: " + forgedEscaped + "\n",
		"      hostname                     expr " + forgedEscaped + "  => " + forgedEscaped + "\n",
		"      (not set, defaults)          " + forgedEscaped + "=" + forgedEscaped + "\n",
		"  relay:      " + forgedEscaped + " port 587, " + forgedEscaped + ", auth " + forgedEscaped + " secret <from env " + forgedEscaped + ">\n",
		"  error:      dns: " + forgedEscaped + " (permanent, class " + forgedEscaped + ")\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the output lacks\n%s\n---- output:\n%s", want, got)
		}
	}
}

// TestWriteTextLineFeedOutsideSnippet: only an expression error's snippet
// breaks a message into lines; a line feed anywhere else in a message is
// escaped.
func TestWriteTextLineFeedOutsideSnippet(t *testing.T) {
	d := &engine.Decision{Policy: "p.yaml", Message: engine.MessageInfo{Sender: "a@b", Recipients: []string{"c@d"}},
		Groups: []*engine.Group{{Domain: "d", Recipients: []string{"c@d"}, Outcome: "defer",
			Error: &engine.GroupError{Temporary: true, Class: "dns", Message: "lookup failed\nc@d DELIVERED\n | fake snippet\x1b"}}}}
	got := writeText(t, d)
	want := "policy  p.yaml\nmessage a@b -> c@d (0 bytes)\n\ngroup 1: d via (none): DEFER\n" +
		"  error:      lookup failed\\nc@d DELIVERED (temporary, class dns)\n" +
		"               | fake snippet\\x1b\n" +
		"  recipients: c@d\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestWriteJSONNotEscapedTwice: the JSON output carries the values
// themselves (encoding/json escapes them), not textsafe's escapes.
func TestWriteJSONNotEscapedTwice(t *testing.T) {
	const s = "a\nb@z\r\x1b[2J\u202e"
	d := &engine.Decision{Policy: "p.yaml", Message: engine.MessageInfo{Sender: s, Recipients: []string{s}}}
	var b bytes.Buffer
	if err := d.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Message struct {
			Sender     string
			Recipients []string
		}
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Message.Sender != s || len(doc.Message.Recipients) != 1 || doc.Message.Recipients[0] != s {
		t.Errorf("JSON does not carry the values as they are: %s", b.String())
	}
	if strings.Contains(b.String(), `\x1b`) {
		t.Errorf("JSON has textsafe escapes: %s", b.String())
	}
}
