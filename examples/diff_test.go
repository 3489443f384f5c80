package examples_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/internal/policydiff"
)

// TestQuickstartDiff checks what examples/quickstart/README.md says
// `postern diff` shows for policy-next.yaml over corpus.jsonl, with the
// code of the command.
func TestQuickstartDiff(t *testing.T) {
	t.Setenv("SMARTHOST_SECRET", "test-secret")
	old, err := engine.LoadFile("quickstart/policy.yaml", engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	next, err := engine.LoadFile("quickstart/policy-next.yaml", engine.Options{Resolver: old.Resolver()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("quickstart/corpus.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := policydiff.Run(context.Background(), &policydiff.Differ{Old: old, New: next, Seed: 1}, corpus.NewReader(f, "corpus.jsonl"), "corpus.jsonl", 2)
	if err != nil || len(rep.Errors) > 0 {
		t.Fatal(err, rep.Errors)
	}
	var got []string
	for _, c := range rep.Changes {
		got = append(got, c.Recipient+" "+c.Field+": "+c.Old+" -> "+c.New)
	}
	want := []string{
		"dave@outlook.com route: smarthost -> mx",
		"dave@outlook.com hosts: smtp.relay.example.net -> outlook-com.olc.protection.outlook.com",
		"frank@example.com source-ip: kernel's choice -> 192.0.2.10",
		"grace@hotmail.com route: smarthost -> mx",
		"grace@hotmail.com hosts: smtp.relay.example.net -> hotmail-com.olc.protection.outlook.com",
		"grace@hotmail.com source-ip: kernel's choice -> 192.0.2.10",
		"heidi@live.com route: smarthost -> mx",
		"heidi@live.com hosts: smtp.relay.example.net -> live-com.olc.protection.outlook.com",
		"heidi@live.com tls.starttls: optional -> require",
		"heidi@live.com tls: opportunistic -> required, verify pkix",
	}
	if rep.Envelopes != 5 || rep.Recipients != 8 || rep.Changed != 4 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%d envelopes, %d recipients, %d changed; changes:\n%s\nwant:\n%s", rep.Envelopes, rep.Recipients, rep.Changed,
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
