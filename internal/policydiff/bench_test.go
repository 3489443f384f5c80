package policydiff

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport/dns"
)

// benchEngines are an old and a new policy over one static zone of 100
// domains: the new one requires STARTTLS for a tenth of them and gives
// bulk mail its own source address.
func benchEngines(b testing.TB) (*engine.Engine, *engine.Engine) {
	var zone bytes.Buffer
	zone.WriteString("$TTL 300\n$ORIGIN example.\n")
	for d := range 100 {
		fmt.Fprintf(&zone, "d%d IN MX 10 mx1.d%d.example.\nd%d IN MX 10 mx2.d%d.example.\nmx1.d%d IN A 192.0.2.%d\nmx2.d%d IN A 198.51.100.%d\n",
			d, d, d, d, d, 1+d, d, 1+d)
	}
	res, err := dns.NewStaticFromReader(&zone, "zone.txt", false)
	if err != nil {
		b.Fatal(err)
	}
	load := func(text string) *engine.Engine {
		set, err := policies.Parse("p.yaml", []byte(text), policies.Options{Hostname: "mta.example.org"})
		if err != nil {
			b.Fatal(err)
		}
		e, err := engine.New(set, engine.Options{Resolver: res})
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	old := load("version: 1\ntls:\n  starttls: optional\nip-strategy:\n  source-ips: [192.0.2.200]\n")
	next := load("version: 1\ntls:\n  starttls:\n    - if: rcpt_domain endsWith \"0.example\"\n      then: require\n    - else: optional\n" +
		"ip-strategy:\n  source-ips:\n    - if: sender == \"news@example.org\"\n      then: [192.0.2.201]\n    - else: [192.0.2.200]\n")
	return old, next
}

func benchEnvelope(i int) corpus.Envelope {
	from := "alice@example.org"
	if i%4 == 0 {
		from = "news@example.org"
	}
	return corpus.Envelope{From: from, To: []string{fmt.Sprintf("u@d%d.example", i%100), fmt.Sprintf("v@d%d.example", (i*7)%100)}}
}

// BenchmarkEnvelopeUnchanged is the common case: both decisions agree.
func BenchmarkEnvelopeUnchanged(b *testing.B) {
	old, next := benchEngines(b)
	d := &Differ{Old: old, New: old, Seed: 1}
	_ = next
	env := benchEnvelope(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, n, err := d.Envelope(context.Background(), 1, env); err != nil || n != 0 {
			b.Fatal(err, n)
		}
	}
}

// BenchmarkEnvelopeMixed is the policy edit over envelopes of which some
// change (a quarter by sender, a fifth by recipient domain).
func BenchmarkEnvelopeMixed(b *testing.B) {
	old, next := benchEngines(b)
	d := &Differ{Old: old, New: next, Seed: 1}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, _, err := d.Envelope(context.Background(), i, benchEnvelope(i)); err != nil {
			b.Fatal(err)
		}
	}
}
