package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// diffDir holds two policies, a zone and a corpus with known changes:
// relayed.example goes direct (route; its first host is compared with
// the relay's), partner.example needs STARTTLS (TLS) and gets a throttle
// of its own, bulk.example's mail leaves from another address (source
// IP).
const diffDir = "testdata/diff"

func runDiff(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runIO(append([]string{"diff"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDiffReportsEachChangeWithItsRule(t *testing.T) {
	t.Chdir(diffDir)
	code, out, errs := runDiff(t, "", "--old", "old.yaml", "--new", "new.yaml", "--envelopes", "corpus.jsonl")
	want := `4 envelopes, 8 recipients, 4 changed
line 1 (Q1): b@partner.example: throttles: per-domain "partner.example" rate 100/1m0s -> per-domain "partner.example" rate 100/1m0s; partner "partner.example" concurrency 2
    new: limits.throttles.partner.match rule 1  if rcpt_domain == "partner.example"  => YES  new.yaml:35
line 1 (Q1): b@partner.example: tls.starttls at mx.partner.example: optional -> require
    old: tls.starttls                 = optional  old.yaml:17
    new: tls.starttls                 rule 1  if rcpt_domain == "partner.example"  => YES -> require  new.yaml:19
line 1 (Q1): b@partner.example: tls at mx.partner.example: opportunistic -> required, verify pkix
    old: tls.starttls                 = optional  old.yaml:17
    new: tls.starttls                 rule 1  if rcpt_domain == "partner.example"  => YES -> require  new.yaml:19
line 2 (Q2): c@relayed.example: route: relay -> mx
    old: routing.route                rule 1  if rcpt_domain == "relayed.example"  => YES -> relay  old.yaml:8
    new: routing.route                else  => mx  new.yaml:11
line 2 (Q2): c@relayed.example: hosts: relay.example -> mx.relayed.example
    old: routing.route                rule 1  if rcpt_domain == "relayed.example"  => YES -> relay  old.yaml:8
    new: routing.route                else  => mx  new.yaml:11
line 2 (Q2): c@relayed.example: source-ip at relay.example 192.0.2.200 -> mx.relayed.example 192.0.2.30: 192.0.2.1 -> 192.0.2.2
    old: ip-strategy.source-ips       = [192.0.2.1]  old.yaml:20
    new: ip-strategy.source-ips       rule 1  if sender_domain == "bulk.example"  => YES -> [192.0.2.2]  new.yaml:25
line 2 (Q2): h@shuffled.example: source-ip at mx1.shuffled.example 192.0.2.11, mx3.shuffled.example 192.0.2.13, mx2.shuffled.example 192.0.2.12: 192.0.2.1 -> 192.0.2.2
    old: ip-strategy.source-ips       = [192.0.2.1]  old.yaml:20
    new: ip-strategy.source-ips       rule 1  if sender_domain == "bulk.example"  => YES -> [192.0.2.2]  new.yaml:25
line 3: d@partner.example: throttles: per-domain "partner.example" rate 100/1m0s -> per-domain "partner.example" rate 100/1m0s; partner "partner.example" concurrency 2
    new: limits.throttles.partner.match rule 1  if rcpt_domain == "partner.example"  => YES  new.yaml:35
line 3: d@partner.example: tls.starttls at mx.partner.example: optional -> require
    old: tls.starttls                 = optional  old.yaml:17
    new: tls.starttls                 rule 1  if rcpt_domain == "partner.example"  => YES -> require  new.yaml:19
line 3: d@partner.example: tls at mx.partner.example: opportunistic -> required, verify pkix
    old: tls.starttls                 = optional  old.yaml:17
    new: tls.starttls                 rule 1  if rcpt_domain == "partner.example"  => YES -> require  new.yaml:19
`
	if code != exitChanged || out != want || errs != "" {
		t.Errorf("exit %d (want 4), stderr %q, stdout:\n%s\nwant:\n%s", code, errs, out, want)
	}
}

func TestDiffJSON(t *testing.T) {
	t.Chdir(diffDir)
	code, out, _ := runDiff(t, "", "--old", "old.yaml", "--new", "new.yaml", "--envelopes", "corpus.jsonl", "--format", "json")
	var rep struct {
		Envelopes, Recipients, Changed int
		Changes                        []struct {
			Line             int
			ID               string
			Recipient, Field string
			At               []struct {
				Host, Address string
				OldHost       string `json:"old_host"`
				OldAddress    string `json:"old_address"`
			}
			Old, New string
			OldRule  map[string]any `json:"old_rule"`
			NewRule  map[string]any `json:"new_rule"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != exitChanged || rep.Envelopes != 4 || rep.Recipients != 8 || rep.Changed != 4 || len(rep.Changes) != 10 {
		t.Fatalf("exit %d, report %+v", code, rep)
	}
	route := rep.Changes[3]
	if route.Line != 2 || route.ID != "Q2" || route.Recipient != "c@relayed.example" || route.Field != "route" ||
		route.Old != "relay" || route.New != "mx" || route.OldRule["at"] != "old.yaml:8:7" || route.NewRule["at"] != "new.yaml:11:7" {
		t.Errorf("route change %+v", route)
	}
	src := rep.Changes[6]
	if src.Field != "source-ip" || len(src.At) != 3 || src.At[0].Address == "" || src.At[0].OldHost != "" || src.NewRule["at"] != "new.yaml:25:7" {
		t.Errorf("source-ip change %+v", src)
	}
	paired := rep.Changes[5].At
	if len(paired) != 1 || paired[0].OldHost != "relay.example" || paired[0].OldAddress != "192.0.2.200" ||
		paired[0].Host != "mx.relayed.example" || paired[0].Address != "192.0.2.30" {
		t.Errorf("first hosts compared across a route change: %+v", paired)
	}
	if rep.Changes[0].OldRule != nil {
		t.Errorf("a throttle the old policy does not have has an old rule: %+v", rep.Changes[0])
	}
}

// TestDiffSamePolicy: a policy compared with itself changes nothing, for
// any seed, though the equal-preference MX hosts of shuffled.example are
// ordered differently by each seed.
func TestDiffSamePolicy(t *testing.T) {
	t.Chdir(diffDir)
	orders := map[string]bool{}
	for seed := 1; seed <= 8; seed++ {
		s := fmt.Sprint(seed)
		code, out, errs := runDiff(t, "", "--old", "old.yaml", "--new", "old.yaml", "--envelopes", "corpus.jsonl", "--seed", s)
		if code != exitOK || out != "4 envelopes, 8 recipients, 0 changed\n" || errs != "" {
			t.Errorf("seed %d: exit %d, stdout %q, stderr %q", seed, code, out, errs)
		}
		_, dry, _ := runCLI(t, "dry-run", "--brief", "-c", "old.yaml", "--seed", s, "--from", "a@example.org", "--to", "x@shuffled.example")
		orders[dry] = true
	}
	if len(orders) < 2 {
		t.Errorf("8 seeds gave one host order, the test shows nothing: %v", orders)
	}
}

func TestDiffBadInput(t *testing.T) {
	t.Chdir(diffDir)
	corpus := `{"from":"a@example.org","to":["x@relayed.example"]}
{"from":"a@example.org"}
{"from":"a@example.org","to":["y@example.org"],"vars":{"retry_num":"often"}}
{"from":"a@example.org","to":["z@partner.example"]}
`
	code, out, errs := runDiff(t, corpus, "--old", "old.yaml", "--new", "new.yaml", "--envelopes", "-")
	if code != exitFailed || !strings.HasPrefix(out, "2 envelopes, 2 recipients, 2 changed\n") {
		t.Errorf("exit %d (want 1), stdout:\n%s", code, out)
	}
	for _, w := range []string{
		`postern diff: standard input:2: no recipients: "to" is a non-empty list` + "\n",
		`postern diff: standard input:3: vars: retry_num: "often" is not an integer` + "\n",
		"postern diff: 2 lines of standard input could not be compared\n",
	} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
	for _, args := range [][]string{
		{"--old", "old.yaml", "--new", "new.yaml"},
		{"--old", "old.yaml", "--envelopes", "corpus.jsonl"},
		{"--old", "old.yaml", "--new", "new.yaml", "--envelopes", "corpus.jsonl", "--format", "yaml"},
		{"--old", "old.yaml", "--new", "new.yaml", "--envelopes", "corpus.jsonl", "extra"},
	} {
		if code, _, _ := runDiff(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errs := runDiff(t, "", "--old", "old.yaml", "--new", "new.yaml", "--envelopes", "missing.jsonl"); code != exitFailed || !strings.Contains(errs, "no such file") {
		t.Errorf("missing corpus: exit %d, stderr %q", code, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\ntls:\n  starttls: sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runDiff(t, "", "--old", "old.yaml", "--new", bad, "--envelopes", "corpus.jsonl"); code != exitFailed || !strings.Contains(errs, "tls.starttls") {
		t.Errorf("bad new policy: exit %d, stderr %q", code, errs)
	}
}
