package engine_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/engine/metrics"
	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// TestObserveRealDelivery delivers to real receivers (aiosmtpd) — one
// accepts, one answers DATA with a temporary failure, one domain has no
// MX — with metrics, a JSON log and OnAttempt on, and checks that the
// exposition parses with Prometheus' text parser and passes promtool,
// that its counters match the results, that there is one log line per
// recipient with the message's ID, and one OnAttempt call per connection
// attempt.
func TestObserveRealDelivery(t *testing.T) {
	promtool := testbed.Require(t, "promtool")
	ok := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{})
	busy := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{DataReply: "451 4.3.0 Temporary local problem"})
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	var attempts []engine.AttemptInfo
	policy := "routing:\n  route:\n    - if: rcpt_domain == \"ok.test\"\n      then: ok\n    - if: rcpt_domain == \"busy.test\"\n      then: busy\n    - if: rcpt_domain == \"down.test\"\n      then: down\n    - else: mx\n  routes:\n" +
		relayRoute("ok", ok.Addr) + relayRoute("busy", busy.Addr) + relayRoute("down", closedPort(t)) + "tls:\n  starttls: disable\n"
	e := newDeliverEngine(t, policy, engine.Options{Metrics: m, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		OnAttempt: func(a engine.AttemptInfo) { mu.Lock(); attempts = append(attempts, a); mu.Unlock() }})
	to := []string{"a@ok.test", "b@ok.test", "c@busy.test", "d@nowhere.invalid", "e@down.test"}
	res := runDeliver(t, e, engine.Message{ID: "4XyZ1", From: "s@sender.test", To: to}, deliverBody)
	if res[0].Status != transport.StatusDelivered || res[2].Status != transport.StatusTemporary || res[3].Status != transport.StatusPermanent {
		t.Fatalf("results: %s", formatResults(res))
	}

	// The exposition: Prometheus' parser, promtool, counters = results.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := parser.TextToMetricFamilies(bytes.NewReader(text.Bytes()))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, text.String())
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	deliveries := map[string]float64{}
	for _, mm := range parsed["postern_deliveries_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range mm.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		deliveries[labels["outcome"]+" "+labels["class"]+" "+labels["route"]] += mm.GetCounter().GetValue()
	}
	want := map[string]float64{}
	for _, r := range res {
		class := string(r.Class)
		if class == "" {
			class = "none"
		}
		want[r.StatusText()+" "+class+" "+r.Route]++
	}
	for k, v := range want {
		if deliveries[k] != v {
			t.Errorf("postern_deliveries_total{%s} = %v, want %v (all: %v)", k, deliveries[k], v, deliveries)
		}
	}
	count := func(name string) float64 {
		var n float64
		for _, mm := range parsed[name].GetMetric() {
			n += mm.GetCounter().GetValue() + float64(mm.GetHistogram().GetSampleCount())
		}
		return n
	}
	if n := count("postern_attempt_duration_seconds"); n != 3 { // the three relays' groups; nowhere.invalid fails in DNS
		t.Errorf("%v attempts observed, want 3", n)
	}
	if n := count("postern_connections_opened_total"); n != 2 {
		t.Errorf("%v connections opened, want 2", n)
	}
	if n := count("postern_evaluation_duration_seconds"); n != 1 {
		t.Errorf("%v evaluations observed, want 1", n)
	}

	// One log line per recipient, with the message's ID.
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["msg"] == "delivery" {
			lines = append(lines, rec)
		}
	}
	if len(lines) != len(to) {
		t.Fatalf("%d delivery log lines for %d recipients:\n%s", len(lines), len(to), logs.String())
	}
	wantStatus := map[string]string{"a@ok.test": "sent", "b@ok.test": "sent", "c@busy.test": "deferred", "d@nowhere.invalid": "bounced",
		"e@down.test": "deferred"}
	for _, l := range lines {
		rcpt, _ := l["to"].(string)
		if l["id"] != "4XyZ1" || l["status"] != wantStatus[rcpt] {
			t.Errorf("log line %v: want id 4XyZ1, status %s", l, wantStatus[rcpt])
		}
		switch rcpt {
		case "a@ok.test":
			wantRelay := ok.Addr.Addr().String() + "[" + ok.Addr.Addr().String() + "]:" + strconv.Itoa(int(ok.Addr.Port()))
			if l["relay"] != wantRelay || l["dsn"] == nil || l["level"] != "INFO" {
				t.Errorf("sent line %v: want relay %s, a dsn code, level INFO", l, wantRelay)
			}
			if d, isNum := l["delay_ms"].(float64); !isNum || d < 0 || d > 60000 || d != float64(int64(d)) {
				t.Errorf("sent line %v: want delay_ms, a whole number of milliseconds", l)
			}
		case "c@busy.test":
			if l["reply"] != "Temporary local problem" && !strings.Contains(l["reply"].(string), "Temporary local problem") || l["retry_from"] != "schedule" || l["level"] != "WARN" {
				t.Errorf("deferred line %v: want the reply, retry_from schedule, level WARN", l)
			}
		}
	}

	// One OnAttempt call per connection attempt, with the ID.
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 3 {
		t.Fatalf("%d attempts reported, want 3: %+v", len(attempts), attempts)
	}
	for _, a := range attempts {
		if a.MessageID != "4XyZ1" || !a.Address.IsValid() {
			t.Errorf("attempt %+v: want the message's ID and the address", a)
		}
		if a.Route == "down" {
			if a.Err == nil || a.Err.Class != transport.ClassConnection || a.Delivered+a.Deferred+a.Bounced != 0 {
				t.Errorf("refused connection %+v: want an error of class connection and no replies", a)
			}
			continue
		}
		wantDelivered, wantDeferred := 2, 0
		if a.Route == "busy" {
			wantDelivered, wantDeferred = 0, 1
		}
		if a.Err != nil || a.Delivered != wantDelivered || a.Deferred != wantDeferred || a.Bounced != 0 {
			t.Errorf("attempt %+v: want it to carry the transaction, %d delivered, %d deferred", a, wantDelivered, wantDeferred)
		}
	}
}
