package tlsrpt

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var (
	stsLines  = []string{"version: STSv1", "mode: enforce", "mx: *.mail.example.net", "max_age: 86400"}
	stsLines2 = []string{"version: STSv1", "mode: testing", "mx: *.mail.example.net", "max_age: 86400"}
	tlsaMX1   = []string{"3 1 1 1F850A337E6DB9C609C522D136A475638CC43E1ED424F8EEC8513D747D1D085D"}
	sender1   = netip.MustParseAddr("192.0.2.1")
	sender2   = netip.MustParseAddr("2001:db8::25")
	mx1IP     = netip.MustParseAddr("198.51.100.1")
)

// TestAggregatorGroups feeds results of two domains, two UTC days (with
// results on both sides of midnight, one given in another time zone) and
// several policies, and checks every count and group of the reports.
func TestAggregatorGroups(t *testing.T) {
	a := NewAggregator()
	sts := func(when string, lines []string) Result {
		return Result{PolicyType: STS, PolicyDomain: "example.net", PolicyStrings: lines, MXHost: "*.mail.example.net",
			SendingIP: sender1, ReceivingIP: mx1IP, ReceivingMXHostname: "mx1.mail.example.net", Time: at(t, when)}
	}
	fail := func(r Result, typ, reason string) Result { r.ResultType, r.FailureReason = typ, reason; return r }

	// 2026-04-01, example.net, the enforce policy: 3 successes, 3 failures in 2 groups.
	a.Add(sts("2026-04-01T00:00:00Z", stsLines))
	a.Add(sts("2026-04-01T23:59:59.999999999Z", stsLines))
	a.Add(sts("2026-04-02T01:00:00+02:00", stsLines)) // 23:00Z on the 1st
	a.Add(fail(sts("2026-04-01T10:00:00Z", stsLines), CertificateExpired, ""))
	a.Add(fail(sts("2026-04-01T11:00:00Z", stsLines), CertificateExpired, ""))
	other := fail(sts("2026-04-01T12:00:00Z", stsLines), CertificateExpired, "")
	other.SendingIP = netip.MustParseAddr("::ffff:192.0.2.2") // written as IPv4
	a.Add(other)
	// The same day, the testing policy of the same domain is another entry.
	a.Add(fail(sts("2026-04-01T13:00:00Z", stsLines2), STSPolicyFetchError, "https://reports.sender.example/info?id=1"))
	// DANE for mx1, name written in another case and with a trailing dot.
	a.Add(Result{PolicyType: TLSA, PolicyDomain: "Example.NET.", PolicyStrings: tlsaMX1, MXHost: "MX1.mail.example.net.",
		SendingIP: sender2, Time: at(t, "2026-04-01T14:00:00Z")})
	a.Add(Result{PolicyType: TLSA, PolicyDomain: "example.net", PolicyStrings: tlsaMX1, MXHost: "mx1.mail.example.net",
		SendingIP: sender2, ReceivingIP: mx1IP, ReceivingMXHostname: "mx1.mail.example.net", ReceivingMXHelo: "mx1",
		ResultType: TLSAInvalid, FailureReason: "no TLSA record matched", Time: at(t, "2026-04-01T15:00:00Z")})
	// An unknown result type becomes a validation-failure (section 4.3.3).
	a.Add(Result{PolicyType: NoPolicyFound, PolicyDomain: "example.org", ResultType: "quantum-decoherence",
		SendingIP: sender1, Time: at(t, "2026-04-01T16:00:00Z")})
	a.Add(Result{PolicyDomain: "example.org", Time: at(t, "2026-04-01T17:00:00Z")}) // "" is no-policy-found
	// 2026-04-02.
	a.Add(sts("2026-04-02T00:00:00Z", stsLines))
	// Not recorded: unknown policy type, no domain.
	a.Add(Result{PolicyType: "dmarc", PolicyDomain: "example.net", Time: at(t, "2026-04-01T18:00:00Z")})
	a.Add(Result{PolicyType: STS, Time: at(t, "2026-04-01T18:00:00Z")})
	if got := a.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}

	day1 := at(t, "2026-04-01T00:00:00Z")
	want := []*Report{{
		OrganizationName: "Sender Org", ContactInfo: "tlsrpt@sender.example", Domain: "example.net",
		Start: day1, End: at(t, "2026-04-01T23:59:59Z"),
		Policies: []PolicyReport{{
			Policy:  Policy{Type: STS, Strings: stsLines, Domain: "example.net", MXHost: "*.mail.example.net"},
			Summary: Summary{Successful: 3, Failed: 3},
			FailureDetails: []FailureDetail{
				{ResultType: CertificateExpired, SendingMTAIP: sender1, ReceivingIP: mx1IP,
					ReceivingMXHostname: "mx1.mail.example.net", FailedSessionCount: 2},
				{ResultType: CertificateExpired, SendingMTAIP: netip.MustParseAddr("192.0.2.2"), ReceivingIP: mx1IP,
					ReceivingMXHostname: "mx1.mail.example.net", FailedSessionCount: 1},
			},
		}, {
			Policy:  Policy{Type: STS, Strings: stsLines2, Domain: "example.net", MXHost: "*.mail.example.net"},
			Summary: Summary{Failed: 1},
			FailureDetails: []FailureDetail{{ResultType: STSPolicyFetchError, SendingMTAIP: sender1, ReceivingIP: mx1IP,
				ReceivingMXHostname: "mx1.mail.example.net", FailedSessionCount: 1,
				AdditionalInformation: "https://reports.sender.example/info?id=1"}},
		}, {
			Policy:  Policy{Type: TLSA, Strings: tlsaMX1, Domain: "example.net", MXHost: "mx1.mail.example.net"},
			Summary: Summary{Successful: 1, Failed: 1},
			FailureDetails: []FailureDetail{{ResultType: TLSAInvalid, SendingMTAIP: sender2, ReceivingIP: mx1IP,
				ReceivingMXHostname: "mx1.mail.example.net", ReceivingMXHelo: "mx1", FailedSessionCount: 1,
				FailureReasonCode: "no TLSA record matched"}},
		}},
	}, {
		OrganizationName: "Sender Org", ContactInfo: "tlsrpt@sender.example", Domain: "example.org",
		Start: day1, End: at(t, "2026-04-01T23:59:59Z"),
		Policies: []PolicyReport{{
			Policy:  Policy{Type: NoPolicyFound, Domain: "example.org"},
			Summary: Summary{Successful: 1, Failed: 1},
			FailureDetails: []FailureDetail{{ResultType: ValidationFailure, SendingMTAIP: sender1, FailedSessionCount: 1,
				FailureReasonCode: "quantum-decoherence"}},
		}},
	}}

	// Any time of the day picks it; without drain the counts stay.
	first := a.Reports(at(t, "2026-04-01T15:30:00+02:00"), "Sender Org", "tlsrpt@sender.example", false)
	checkReports(t, first, want)
	second := a.Reports(day1, "Sender Org", "tlsrpt@sender.example", true)
	checkReports(t, second, want)
	if first[0].ReportID == second[0].ReportID {
		t.Errorf("two Reports calls gave the same report-id %q", first[0].ReportID)
	}
	if got := a.Reports(day1, "Sender Org", "tlsrpt@sender.example", true); len(got) != 0 {
		t.Errorf("after a drain, Reports returned %d reports, want none", len(got))
	}

	day2 := a.Reports(at(t, "2026-04-02T23:00:00Z"), "o", "c@sender.example", true)
	if len(day2) != 1 || day2[0].Domain != "example.net" || len(day2[0].Policies) != 1 ||
		day2[0].Policies[0].Summary != (Summary{Successful: 1}) {
		t.Errorf("the 2026-04-02 report is wrong: %+v", day2)
	}
}

var reportIDPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}\.[a-z0-9.-]+\.[A-Z2-7]{26}$`)

// checkReports compares reports with want, report-ids aside (they are
// random; their form is checked).
func checkReports(t *testing.T, got, want []*Report) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d reports, want %d", len(got), len(want))
	}
	for i := range got {
		g := *got[i]
		if !reportIDPattern.MatchString(g.ReportID) || !strings.HasPrefix(g.ReportID, g.Start.Format("2006-01-02")+"."+g.Domain+".") {
			t.Errorf("report-id %q is not DAY.DOMAIN.RANDOM", g.ReportID)
		}
		g.ReportID = ""
		if !reflect.DeepEqual(&g, want[i]) {
			t.Errorf("report %d:\ngot  %+v\nwant %+v", i, &g, want[i])
		}
	}
}

// TestAggregatorConcurrent adds from many goroutines at once (run with
// -race): no count is lost.
func TestAggregatorConcurrent(t *testing.T) {
	a := NewAggregator()
	const workers, each = 32, 400
	day := at(t, "2026-04-01T12:00:00Z")
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := Result{PolicyType: STS, PolicyDomain: fmt.Sprintf("d%d.example", i%4), PolicyStrings: stsLines,
					MXHost: "*.mail.example.net", Time: day.Add(time.Duration(w) * time.Minute)}
				if i%3 == 0 {
					r.ResultType = []string{StartTLSNotSupported, CertificateExpired}[w%2]
					r.SendingIP = sender1
				}
				a.Add(r)
			}
		})
	}
	// Reports taken while adding must not race either.
	wg.Go(func() {
		for range 20 {
			a.Reports(day, "o", "c@sender.example", false)
		}
	})
	wg.Wait()
	var ok, failed, detailed int64
	reports := a.Reports(day, "o", "c@sender.example", true)
	if len(reports) != 4 {
		t.Fatalf("got %d reports, want 4 (one per domain)", len(reports))
	}
	for _, r := range reports {
		for _, p := range r.Policies {
			ok += p.Summary.Successful
			failed += p.Summary.Failed
			for _, d := range p.FailureDetails {
				detailed += d.FailedSessionCount
			}
		}
	}
	wantFailed := int64(workers * ((each + 2) / 3))
	if ok+failed != workers*each || failed != wantFailed || detailed != wantFailed {
		t.Errorf("counted %d successes, %d failures (%d in details); want %d and %d", ok, failed, detailed,
			workers*each-wantFailed, wantFailed)
	}
}

// TestAggregatorMemoryBound fills the aggregator with large policies until
// it refuses new entries, checks that existing entries still count and
// that draining makes room again.
func TestAggregatorMemoryBound(t *testing.T) {
	a := NewAggregator()
	day := at(t, "2026-04-01T12:00:00Z")
	lines := make([]string, maxPolicyLines)
	for i := range lines {
		lines[i] = strings.Repeat("x", maxPolicyString)
	}
	big := func(i int) Result {
		l := append([]string{fmt.Sprint(i)}, lines[1:]...)
		return Result{PolicyType: STS, PolicyDomain: "example.net", PolicyStrings: l, Time: day}
	}
	small := Result{PolicyType: NoPolicyFound, PolicyDomain: "example.net", Time: day}
	a.Add(small)
	perPolicy := int64(2 * maxPolicyLines * maxPolicyString)
	limit := int(MaxBytes/perPolicy) + 2
	accepted := 0
	for i := 0; a.Dropped() == 0; i++ {
		if i > limit {
			t.Fatalf("%d policies of %d bytes each were all accepted; MaxBytes is %d", i, perPolicy, MaxBytes)
		}
		a.Add(big(i))
		accepted = i
	}
	if accepted < limit-4 {
		t.Errorf("dropped after %d policies, want about %d", accepted, limit-2)
	}
	a.Add(big(0)) // an existing entry: counted, nothing new held
	if a.Dropped() != 1 {
		t.Errorf("a result for an existing policy was dropped")
	}
	// Failures of an existing policy with new details fill what is left;
	// then one is counted in the summary, without a detail.
	failures := 0
	for a.Dropped() == 1 {
		if failures > int(perPolicy)/maxReason {
			t.Fatalf("%d new failure details were all accepted", failures)
		}
		failed := small
		failed.ResultType, failed.FailureReason = CertificateExpired, fmt.Sprintf("%0*d", maxReason, failures)
		a.Add(failed)
		failures++
	}
	reports := a.Reports(day, "o", "c@sender.example", true)
	if len(reports) != 1 || len(reports[0].Policies) != accepted+1 {
		t.Fatalf("the full aggregator's report is wrong")
	}
	// Sorted by policy type: no-policy-found (small) first, then big(0).
	p0, p1 := reports[0].Policies[1], reports[0].Policies[0]
	if p0.Summary != (Summary{Successful: 2}) || p1.Summary != (Summary{Successful: 1, Failed: int64(failures)}) ||
		len(p1.FailureDetails) != failures-1 {
		t.Errorf("counts when full: big(0) %+v, small %+v (%d details), want {2 0}, {1 %d} (%d details)",
			p0.Summary, p1.Summary, len(p1.FailureDetails), failures, failures-1)
	}
	a.Add(big(-1))
	if a.Dropped() != 2 {
		t.Errorf("after the drain, a new policy is still dropped")
	}
}
