package tlsrpt_test

import (
	"fmt"
	"time"

	"github.com/postern-mta/postern/transport/tlsrpt"
)

func ExampleParseRecord() {
	// The TXT records of _smtp._tls.example.net, each one's strings joined.
	rec, err := tlsrpt.ParseRecord([]string{
		"v=spf1 -all",
		"v=TLSRPTv1; rua=mailto:tlsrpt@example.net,https://reports.example.net/v1",
	})
	fmt.Println(rec.RUA, err)
	// Output: [mailto:tlsrpt@example.net https://reports.example.net/v1] <nil>
}

func ExampleAggregator() {
	a := tlsrpt.NewAggregator()
	when := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	a.Add(tlsrpt.Result{PolicyType: tlsrpt.STS, PolicyDomain: "example.net", MXHost: "*.mail.example.net",
		PolicyStrings: []string{"version: STSv1", "mode: enforce", "mx: *.mail.example.net", "max_age: 86400"}, Time: when})
	a.Add(tlsrpt.Result{PolicyType: tlsrpt.NoPolicyFound, PolicyDomain: "example.org",
		ResultType: tlsrpt.StartTLSNotSupported, ReceivingMXHostname: "mx.example.org", Time: when})

	// Once a day, yesterday's reports; drain so they are sent only once.
	for _, r := range a.Reports(when, "Sender Org", "tlsrpt@sender.example", true) {
		p := r.Policies[0]
		fmt.Println(r.Domain, p.Policy.Type, p.Summary.Successful, p.Summary.Failed)
	}
	// Output:
	// example.net sts 1 0
	// example.org no-policy-found 0 1
}
