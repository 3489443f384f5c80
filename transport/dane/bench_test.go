package dane_test

import (
	"testing"

	"github.com/postern-mta/postern/transport/dane"
)

// BenchmarkVerifyConnection measures one verification as the transport
// makes it after each handshake: a "3 1 1" set against a leaf, and a
// "2 0 1" set against a leaf, intermediate and root chain (chain
// verification with crypto/x509).
func BenchmarkVerifyConnection(b *testing.B) {
	p := newPKI(b)
	for _, bb := range []struct {
		name string
		recs []dane.Record
		cs   []*cert
	}{
		{"EE", []dane.Record{rec(3, 1, 1, p.self), rec(3, 1, 1, p.leaf)}, []*cert{p.leaf, p.root}},
		{"TA", []dane.Record{rec(2, 0, 1, p.other), rec(2, 0, 1, p.root)}, []*cert{p.interLeaf, p.inter, p.root}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			v, err := dane.NewVerifier(bb.recs, refNames, nil)
			if err != nil {
				b.Fatal(err)
			}
			cs := state(bb.cs...)
			b.ReportAllocs()
			for b.Loop() {
				if err := v.VerifyConnection(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
