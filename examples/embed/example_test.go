package main

// The snippets of docs/embedding.md that are not excerpts of the program
// itself: each compiles here (TestDocSnippets checks that every Go block
// of the document appears in this package's files).

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// Decide without delivering: Evaluate gives the groups (one SMTP
// transaction each), their routes and hosts, and why a group fails.
func Example_evaluate() {
	eng, err := engine.LoadFile("../quickstart/policy.yaml", engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	dec, err := eng.Evaluate(ctx, engine.Message{
		From: "alice@example.org", To: []string{"bob@example.com", "info@parked.example"}, Size: 2048,
		RetryNum: 2, LastError: "tls", // recipient-phase variables of a retry
		Meta: map[string]string{"tenant": "blue"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range dec.Groups {
		// g.Outcome: deliver | local | fail | defer; g.Error explains fail and defer.
		// g.Hosts: in the order they would be tried, with addresses and TLS settings.
		fmt.Println(g.Domain, g.Route.Name, g.Outcome, len(g.Hosts), "hosts")
		if g.Error != nil {
			fmt.Println("  ", g.Error.Class, g.Error.Message)
		}
	}
	// Output:
	// example.com mx deliver 2 hosts
	// parked.example mx fail 0 hosts
	//    dns parked.example does not accept mail (null MX, RFC 7505)
}

// The seams an MTA sets, beyond the ones the program uses.
func Example_options() {
	directory := map[string]bool{"example.org": true} // your own domains
	eng, err := engine.LoadFile("policy.yaml", engine.Options{
		Logger:         slog.Default(),
		IsLocalDomain:  func(domain string) bool { return directory[domain] }, // is_local_domain()
		IsLocalAddress: func(address string) bool { return false },            // is_local_address()
		OnAttempt: func(a engine.AttemptInfo) {
			if a.Err != nil {
				slog.Warn("attempt failed", "id", a.MessageID, "host", a.Host, "address", a.Address, "class", a.Err.Class)
			}
		},
	})
	if err != nil {
		log.Fatal(err) // a policies.ErrorList: one positioned error per problem
	}
	defer eng.Close()
	for _, w := range eng.Policy().Warnings { // the policy loads anyway
		log.Print(w) // "policy.yaml:12:5: lists.spare: warning: list spare is never used ..."
	}
	for _, w := range eng.Warnings() { // what this setup cannot give the policy
		log.Print(w)
	}
}

// Two engines in one process: one registry, each engine's metrics told
// apart by a constant label.
func Example_twoEngines() {
	reg := prometheus.NewRegistry()
	outbound, err := metrics.New(prometheus.WrapRegistererWith(prometheus.Labels{"engine": "outbound"}, reg), metrics.Options{})
	if err != nil {
		log.Fatal(err)
	}
	bulk, err := metrics.New(prometheus.WrapRegistererWith(prometheus.Labels{"engine": "bulk"}, reg), metrics.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_, _ = engine.LoadFile("outbound.yaml", engine.Options{Metrics: outbound})
	_, _ = engine.LoadFile("bulk.yaml", engine.Options{Metrics: bulk})
}

// Reload by hand, without Watch: load and check the new policy first.
func Example_reload() {
	eng, err := engine.LoadFile("policy.yaml", engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	set, err := policies.LoadFile("policy.yaml", policies.Options{})
	if err == nil {
		err = eng.Reload(set) // in force for the next Evaluate or Deliver
	}
	if err != nil {
		log.Print(err) // the policy in force stays
	}
}

// TLS-RPT (RFC 8460): aggregate the results' records, and once a day
// mail the reports through the program's own queue.
func Example_tlsrpt() {
	m, err := newMTA(config{policy: "policy.yaml", queueDir: "queue", logOut: os.Stderr})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var results []engine.Result   // from each Deliver
	agg := tlsrpt.NewAggregator() // one for the process
	// after each Deliver:
	for _, rec := range engine.TLSRPTRecords(results) {
		agg.Add(rec)
	}
	// once a day, a little after midnight UTC:
	yesterday := time.Now().UTC().AddDate(0, 0, -1)
	sub := &tlsrpt.Submitter{From: "tlsrpt@example.org", Submitter: "example.org",
		SendMail: func(ctx context.Context, from string, to []string, msg []byte) error {
			env := envelope{From: from, Source: "report"} // DKIM-sign msg on the way out
			for _, a := range to {
				env.Rcpts = append(env.Rcpts, recipient{Addr: a})
			}
			_, err := m.q.enqueue(env, msg)
			return err
		}}
	for _, rep := range agg.Reports(yesterday, "Example Org", "tlsrpt@example.org", true) {
		txt, err := m.eng.Resolver().LookupTXT(ctx, "_smtp._tls."+rep.Domain)
		if err != nil {
			continue
		}
		rec, err := tlsrpt.ParseRecord(txt.Records) // rua=mailto:...,https://...
		if err != nil {
			continue // the domain wants no reports
		}
		if err := sub.Submit(ctx, rep, rec.RUA); err != nil {
			log.Print(err)
		}
	}
}
