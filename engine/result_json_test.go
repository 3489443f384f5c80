package engine_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/transport"
)

// jsonResults are a delivered result (TLS, source address, a warning, a
// reply text with characters encoding/json escapes) and a throttled one
// (retry_after, given in another zone than UTC).
var jsonResults = []engine.Result{
	{
		Result: transport.Result{
			Recipient: "bob@dest.test",
			Status:    transport.StatusDelivered,
			Code:      250,
			Enhanced:  transport.EnhancedCode{2, 0, 0},
			Text:      "ok <queued> & done",
			Class:     transport.ClassNone,
			Host:      "mx.dest.test",
			Address:   netip.MustParseAddrPort("192.0.2.1:25"),
			Source:    netip.MustParseAddrPort("[2001:db8::1]:4321"),
			Protocol:  transport.SMTP,
			TLS: transport.TLSInfo{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
				Verified: transport.VerifiedPKIX, ServerName: "mx.dest.test"},
			Warnings: []transport.Warning{{Class: transport.ClassTLS, Text: "certificate expires in 3 days"}},
			Duration: 1234567 * time.Microsecond,
		},
		Route: "mx",
	},
	{
		Result: transport.Result{
			Recipient:  "carol@other.test",
			Status:     transport.StatusTemporary,
			Code:       451,
			Enhanced:   transport.EnhancedCode{4, 7, 0},
			Text:       "rate limit reached",
			Class:      transport.ClassRate,
			Duration:   499 * time.Microsecond,
			RetryAfter: time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600)),
			Err:        &transport.Error{Code: 451, Message: "rate limit reached", Class: transport.ClassRate},
		},
		Route: "relay",
	},
}

// TestResultMarshalJSON pins the JSON object of a delivered and of a
// temporary result: the send JSON contract.
func TestResultMarshalJSON(t *testing.T) {
	want := []string{
		`{"recipient":"bob@dest.test","status":"delivered","route":"mx","code":250,` +
			`"enhanced_code":"2.0.0","text":"ok \u003cqueued\u003e \u0026 done","host":"mx.dest.test",` +
			`"address":"192.0.2.1:25","source":"[2001:db8::1]:4321","protocol":"smtp",` +
			`"tls":{"version":"TLS 1.3","cipher":"TLS_AES_128_GCM_SHA256","verified":"pkix"},` +
			`"warnings":["tls: certificate expires in 3 days"],"duration":"1.235s"}`,
		`{"recipient":"carol@other.test","status":"temporary","route":"relay","code":451,` +
			`"enhanced_code":"4.7.0","text":"rate limit reached","class":"rate","duration":"0s",` +
			`"retry_after":"2030-01-02T02:04:05Z"}`,
	}
	for i, r := range jsonResults {
		got, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		if string(got) != want[i] {
			t.Errorf("result %d:\n got %s\nwant %s", i, got, want[i])
		}
		// A pointer marshals the same way.
		if p, err := json.Marshal(&jsonResults[i]); err != nil || string(p) != want[i] {
			t.Errorf("*Result %d: %s, %v", i, p, err)
		}
	}
}

// TestWriteResultsJSON pins the indented array `postern send --format json`
// prints, and "[]" for no results. It is meant to be read: "<", ">" and
// "&" (common in SMTP replies) are written as they are. (json.Marshal of a
// Result escapes them, as json.Marshal does: the encoder decides.)
func TestWriteResultsJSON(t *testing.T) {
	const want = `[
  {
    "recipient": "bob@dest.test",
    "status": "delivered",
    "route": "mx",
    "code": 250,
    "enhanced_code": "2.0.0",
    "text": "ok <queued> & done",
    "host": "mx.dest.test",
    "address": "192.0.2.1:25",
    "source": "[2001:db8::1]:4321",
    "protocol": "smtp",
    "tls": {
      "version": "TLS 1.3",
      "cipher": "TLS_AES_128_GCM_SHA256",
      "verified": "pkix"
    },
    "warnings": [
      "tls: certificate expires in 3 days"
    ],
    "duration": "1.235s"
  },
  {
    "recipient": "carol@other.test",
    "status": "temporary",
    "route": "relay",
    "code": 451,
    "enhanced_code": "4.7.0",
    "text": "rate limit reached",
    "class": "rate",
    "duration": "0s",
    "retry_after": "2030-01-02T02:04:05Z"
  }
]
`
	var b bytes.Buffer
	if err := engine.WriteResultsJSON(&b, jsonResults); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	for _, none := range [][]engine.Result{nil, {}} {
		b.Reset()
		if err := engine.WriteResultsJSON(&b, none); err != nil || b.String() != "[]\n" {
			t.Errorf("no results (%#v): %q, %v", none, b.String(), err)
		}
	}
}
