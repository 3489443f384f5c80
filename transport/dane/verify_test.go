package dane_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/transport/dane"
)

var refNames = []string{mxName, "example.test"}

// verify builds a Verifier from recs and names and runs it on certs.
func verify(t *testing.T, recs []dane.Record, names []string, certs ...*cert) error {
	t.Helper()
	v, err := dane.NewVerifier(recs, names, nil)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v.VerifyConnection(state(certs...))
}

// wantResult checks a verification result: nil when typ is "", else an
// *Error of that type.
func wantResult(t *testing.T, err error, typ string) {
	t.Helper()
	if typ == "" {
		if err != nil {
			t.Errorf("VerifyConnection failed, want a pass: %v", err)
		}
		return
	}
	var de *dane.Error
	if !errors.As(err, &de) {
		t.Fatalf("VerifyConnection = %v (%T), want a *dane.Error of type %s", err, err, typ)
	}
	if de.Type != typ || de.TLSResultType() != typ {
		t.Errorf("error type %q (TLSResultType %q), want %q: %v", de.Type, de.TLSResultType(), typ, err)
	}
}

// Every usage, selector and matching type, for a record that designates
// the right certificate (pass) and one that designates another (fail).
func TestEveryCombination(t *testing.T) {
	p := newPKI(t)
	for _, u := range []uint8{dane.DANETA, dane.DANEEE} {
		for _, s := range []uint8{dane.SelectorCert, dane.SelectorSPKI} {
			for _, m := range []uint8{dane.MatchFull, dane.MatchSHA256, dane.MatchSHA512} {
				right, wrong := p.root, p.other // DANE-TA: the issuer sent
				if u == dane.DANEEE {
					right, wrong = p.leaf, p.wrongName
				}
				t.Run(fmt.Sprintf("%d %d %d", u, s, m), func(t *testing.T) {
					// The server sends leaf and root.
					wantResult(t, verify(t, []dane.Record{rec(u, s, m, right)}, refNames, p.leaf, p.root), "")
					wantResult(t, verify(t, []dane.Record{rec(u, s, m, wrong)}, refNames, p.leaf, p.root), "validation-failure")
				})
			}
		}
	}
}

// DANE-EE looks at the server certificate's key or bytes only (RFC 7672
// section 3.1.1): wrong names, dates, key usage and chain do not matter.
func TestDANEEEIgnoresTheRest(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name  string
		certs []*cert
	}{
		{"wrong name", []*cert{p.wrongName, p.root}},
		{"expired", []*cert{p.expired}},
		{"not yet valid", []*cert{p.notYet}},
		{"self-signed", []*cert{p.self}},
		{"client auth only", []*cert{p.clientOnly}},
		{"unrelated certificates after it", []*cert{p.otherLeaf, p.inter, p.self}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []dane.Record{rec(3, 1, 1, tt.certs[0]), rec(3, 0, 2, tt.certs[0]), rec(3, 1, 0, tt.certs[0])} {
				wantResult(t, verify(t, []dane.Record{r}, []string{"nothing.example"}, tt.certs...), "")
			}
		})
	}
	// The server certificate only: a record for a certificate later in the
	// chain is not DANE-EE's business.
	wantResult(t, verify(t, []dane.Record{rec(3, 1, 1, p.root)}, refNames, p.leaf, p.root), "validation-failure")
}

func TestDANETA(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name  string
		recs  []dane.Record
		names []string // default refNames
		certs []*cert
		want  string // "" passes, else the error type
		msg   string // in the error message
	}{
		{name: "anchor sent, right name", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.leaf, p.root}},
		{name: "root anchor through an intermediate", recs: []dane.Record{rec(2, 1, 1, p.root)}, certs: []*cert{p.interLeaf, p.inter, p.root}},
		{name: "intermediate as the anchor, root not sent", recs: []dane.Record{rec(2, 1, 2, p.inter)}, certs: []*cert{p.interLeaf, p.inter}},
		{name: "chain sent out of order", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.interLeaf, p.root, p.inter}},
		{name: "wildcard", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.wildcard, p.root}},
		{name: "wildcard is one label only", recs: []dane.Record{rec(2, 0, 1, p.root)}, names: []string{"a.mx.example.test"}, certs: []*cert{p.wildcard, p.root},
			want: "certificate-host-mismatch"},
		{name: "wildcard does not match the parent", recs: []dane.Record{rec(2, 0, 1, p.root)}, names: []string{"example.test"}, certs: []*cert{p.wildcard, p.root},
			want: "certificate-host-mismatch"},
		{name: "second reference identifier", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.nextHop, p.root}},
		{name: "names compared without case and trailing dot", recs: []dane.Record{rec(2, 0, 1, p.root)}, names: []string{"MX.Example.TEST."}, certs: []*cert{p.leaf, p.root}},
		{name: "common name when there is no DNS name", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.cnOnly, p.root}},
		{name: "common name ignored beside a DNS name", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.sanOverCN, p.root},
			want: "certificate-host-mismatch", msg: "DNS names other.example.net"},
		{name: "wrong name", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.wrongName, p.root},
			want: "certificate-host-mismatch", msg: "is not for mx.example.test or example.test"},
		{name: "no reference identifier", recs: []dane.Record{rec(2, 0, 1, p.root)}, names: []string{"", "."}, certs: []*cert{p.leaf, p.root},
			want: "certificate-host-mismatch", msg: "(none was given)"},
		{name: "anchor not sent", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.interLeaf, p.inter},
			want: "validation-failure", msg: "2 0 1 "},
		{name: "anchor sent but did not issue the chain", recs: []dane.Record{rec(2, 0, 1, p.other)}, certs: []*cert{p.leaf, p.root, p.other},
			want: "validation-failure", msg: "does not chain to it"},
		{name: "expired server certificate", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.expired, p.root},
			want: "certificate-expired"},
		{name: "server certificate not yet valid", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.notYet, p.root},
			want: "certificate-expired"},
		{name: "expired intermediate", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.expiredInterLeaf, p.expiredInter, p.root},
			want: "certificate-expired", msg: "CN=Expired Intermediate CA is valid from "},
		{name: "expired anchor", recs: []dane.Record{rec(2, 0, 1, p.expiredRoot)}, certs: []*cert{p.expiredRootLeaf, p.expiredRoot},
			want: "certificate-expired"},
		{name: "expired and wrong name", recs: []dane.Record{rec(2, 0, 1, p.root)}, names: []string{"other.example"}, certs: []*cert{p.expired, p.root},
			want: "certificate-host-mismatch"},
		{name: "intermediate that is not a CA", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.notCALeaf, p.notCA, p.root},
			want: "validation-failure", msg: "does not chain to it"},
		{name: "client auth only is fine", recs: []dane.Record{rec(2, 0, 1, p.root)}, certs: []*cert{p.clientOnly, p.root}},
		// The server certificate is never its own anchor (see verifyTA).
		{name: "self-signed server certificate as anchor", recs: []dane.Record{rec(2, 0, 1, p.self), rec(2, 1, 2, p.self), rec(2, 0, 0, p.self)},
			certs: []*cert{p.self}, want: "validation-failure"},
		// ... but a bare key may sign it (RFC 7671 section 5.2.3).
		{name: "2 1 0 of a self-signed server certificate", recs: []dane.Record{rec(2, 1, 0, p.self)}, certs: []*cert{p.self}},
		{name: "2 1 0 of a self-signed server certificate, wrong name", recs: []dane.Record{rec(2, 1, 0, p.self)}, names: []string{"other.example"},
			certs: []*cert{p.self}, want: "certificate-host-mismatch"},
		{name: "2 1 0 of a server certificate not self-signed", recs: []dane.Record{rec(2, 1, 0, p.leaf)}, certs: []*cert{p.leaf},
			want: "validation-failure", msg: "matches no certificate sent"},
		{name: "server certificate as anchor", recs: []dane.Record{rec(2, 1, 1, p.leaf)}, certs: []*cert{p.leaf, p.root},
			want: "validation-failure", msg: "matches no certificate sent"},
		// "2 0 0" and "2 1 0" carry the anchor: it needs not be sent.
		{name: "2 0 0, anchor not sent", recs: []dane.Record{rec(2, 0, 0, p.root)}, certs: []*cert{p.interLeaf, p.inter}},
		{name: "2 1 0, anchor not sent", recs: []dane.Record{rec(2, 1, 0, p.root)}, certs: []*cert{p.interLeaf, p.inter}},
		{name: "2 1 0, server certificate signed by the key", recs: []dane.Record{rec(2, 1, 0, p.root)}, certs: []*cert{p.leaf}},
		{name: "2 1 0, wrong name", recs: []dane.Record{rec(2, 1, 0, p.root)}, certs: []*cert{p.wrongName},
			want: "certificate-host-mismatch"},
		{name: "2 1 0, the key signed a certificate that is not a CA", recs: []dane.Record{rec(2, 1, 0, p.root)}, certs: []*cert{p.notCALeaf, p.notCA},
			want: "validation-failure", msg: "not a CA"},
		{name: "2 1 0, expired intermediate", recs: []dane.Record{rec(2, 1, 0, p.root)}, certs: []*cert{p.expiredInterLeaf, p.expiredInter},
			want: "certificate-expired"},
		{name: "2 1 0, not a valid key", recs: []dane.Record{{Usage: 2, Selector: 1, MatchingType: 0, Data: flipLast(p.root.RawSubjectPublicKeyInfo)}},
			certs: []*cert{p.interLeaf, p.inter}, want: "validation-failure", msg: "matches no certificate sent"},
		{name: "2 1 0, key of another CA", recs: []dane.Record{rec(2, 1, 0, p.other)}, certs: []*cert{p.interLeaf, p.inter},
			want: "validation-failure", msg: "matches no certificate sent"},
		{name: "2 0 0, another CA", recs: []dane.Record{rec(2, 0, 0, p.other)}, certs: []*cert{p.interLeaf, p.inter},
			want: "validation-failure", msg: "does not chain to it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names := tt.names
			if names == nil {
				names = refNames
			}
			err := verify(t, tt.recs, names, tt.certs...)
			wantResult(t, err, tt.want)
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

// flipLast returns b with its last bit flipped.
func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

// now is what DANE-TA dates are checked against.
func TestNowIsUsed(t *testing.T) {
	in := func(d time.Duration) time.Time { return time.Now().Add(d) }
	root := mint(t, spec{cn: "Long Root CA", ca: true, notAfter: in(100 * 24 * time.Hour)}, nil)
	future := mint(t, spec{cn: mxName, dns: []string{mxName}, notBefore: in(48 * time.Hour), notAfter: in(72 * time.Hour)}, root)
	recs := []dane.Record{rec(2, 0, 1, root)}
	v, err := dane.NewVerifier(recs, refNames, func() time.Time { return in(60 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	wantResult(t, v.VerifyConnection(state(future, root)), "")
	wantResult(t, verify(t, recs, refNames, future, root), "certificate-expired")
}

// Several records: one that matches is enough, wherever it is in the set.
func TestOneRecordOfSeveral(t *testing.T) {
	p := newPKI(t)
	decoys := []dane.Record{rec(3, 1, 1, p.wrongName), rec(2, 0, 1, p.other), rec(3, 0, 2, p.self), rec(2, 1, 1, p.inter)}
	for _, good := range []dane.Record{rec(3, 1, 1, p.leaf), rec(2, 1, 2, p.root), rec(3, 0, 0, p.leaf)} {
		for at := 0; at <= len(decoys); at++ {
			recs := slices.Insert(slices.Clone(decoys), at, good)
			if err := verify(t, recs, refNames, p.leaf, p.root); err != nil {
				t.Errorf("%s at %d: %v", good.String()[:8], at, err)
			}
		}
	}
	// None of them: the error names every record (short form).
	err := verify(t, decoys, refNames, p.leaf, p.root)
	wantResult(t, err, "validation-failure")
	for _, r := range decoys {
		if !strings.Contains(err.Error(), r.String()[:6+16]) {
			t.Errorf("error %q does not mention %s", err, r.String()[:6+16])
		}
	}
	// A DANE-TA record that matched an anchor decides the type, whatever
	// the order.
	err = verify(t, []dane.Record{rec(3, 1, 1, p.self), rec(2, 0, 1, p.root), rec(2, 0, 1, p.other)}, []string{"other.example"}, p.leaf, p.root)
	wantResult(t, err, "certificate-host-mismatch")
}

// Unusable records are dropped by NewVerifier and never let a server in,
// even when their data designates the server's certificate.
func TestUnusableRecordsNeverPass(t *testing.T) {
	p := newPKI(t)
	unusable := []dane.Record{
		rec(0, 0, 1, p.root),   // PKIX-TA
		rec(1, 1, 1, p.leaf),   // PKIX-EE
		rec(4, 1, 1, p.leaf),   // unknown usage
		rec(255, 1, 1, p.leaf), // PrivCert
		{Usage: 3, Selector: 7, MatchingType: 1, Data: assoc(p.leaf.Certificate, 1, 1)},
		{Usage: 3, Selector: 1, MatchingType: 9, Data: assoc(p.leaf.Certificate, 1, 1)},
		{Usage: 3, Selector: 1, MatchingType: 1, Data: append(assoc(p.leaf.Certificate, 1, 1), 0)},             // 33 bytes
		{Usage: 3, Selector: 1, MatchingType: 2, Data: assoc(p.leaf.Certificate, 1, 1)},                        // 32 for SHA-512
		{Usage: 3, Selector: 1, MatchingType: 1},                                                               // no data
		{Usage: 2, Selector: 0, MatchingType: 0, Data: p.root.RawSubjectPublicKeyInfo},                         // a key, not a certificate
		{Usage: 3, Selector: 1, MatchingType: 0, Data: append(bytes.Clone(p.leaf.RawSubjectPublicKeyInfo), 0)}, // trailing byte
		{Usage: 3, Selector: 0, MatchingType: 0},                                                               // no data
	}
	for _, r := range unusable {
		if r.Usable() == nil {
			t.Errorf("%s: Usable() = nil", r.String()[:min(len(r.String()), 30)])
		}
	}
	usable := rec(3, 1, 1, p.self) // matches nothing sent below
	v, err := dane.NewVerifier(append([]dane.Record{usable}, unusable...), refNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Records(); len(got) != 1 || got[0].String() != usable.String() {
		t.Errorf("Records() = %v, want only %s", got, usable)
	}
	for _, certs := range [][]*cert{{p.leaf, p.root}, {p.leaf}} {
		wantResult(t, v.VerifyConnection(state(certs...)), "validation-failure")
	}
}

func TestUsable(t *testing.T) {
	p := newPKI(t)
	for _, r := range []dane.Record{rec(3, 1, 1, p.leaf), rec(2, 0, 2, p.root), rec(3, 0, 0, p.leaf), rec(2, 1, 0, p.root),
		// A key x509 cannot parse but of the right structure (an unknown
		// algorithm) is usable: it can still match byte for byte.
		{Usage: 3, Selector: 1, MatchingType: 0, Data: []byte{0x30, 0x0b, 0x30, 0x04, 0x06, 0x02, 0x2a, 0x03, 0x03, 0x03, 0x00, 0x01, 0x02}},
	} {
		if err := r.Usable(); err != nil {
			t.Errorf("%s: %v", r.String()[:20], err)
		}
	}
	for _, tt := range []struct {
		r   dane.Record
		msg string
	}{
		{rec(0, 0, 1, p.root), "usage 0 (PKIX-TA) is not usable for SMTP"},
		{rec(1, 0, 1, p.root), "usage 1 (PKIX-EE) is not usable for SMTP"},
		{dane.Record{Usage: 3, Selector: 2, MatchingType: 1, Data: make([]byte, 32)}, "unknown selector 2"},
		{dane.Record{Usage: 3, Selector: 1, MatchingType: 3, Data: make([]byte, 32)}, "unknown matching type 3"},
		{dane.Record{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 31)}, "SHA-256 data must be 32 bytes, is 31"},
		{dane.Record{Usage: 3, Selector: 1, MatchingType: 2, Data: make([]byte, 65)}, "SHA-512 data must be 64 bytes, is 65"},
		{dane.Record{Usage: 3, Selector: 0, MatchingType: 0, Data: []byte{1, 2, 3}}, "not a certificate"},
		{dane.Record{Usage: 3, Selector: 1, MatchingType: 0, Data: []byte{1, 2, 3}}, "not a SubjectPublicKeyInfo"},
	} {
		if err := tt.r.Usable(); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: Usable() = %v, want %q", tt.r.String()[:10], err, tt.msg)
		}
	}
}

func TestNewVerifierNeedsAUsableRecord(t *testing.T) {
	p := newPKI(t)
	if v, err := dane.NewVerifier(nil, refNames, nil); err == nil || v != nil {
		t.Errorf("no records: %v, %v", v, err)
	}
	v, err := dane.NewVerifier([]dane.Record{rec(1, 1, 1, p.leaf), rec(3, 1, 9, p.leaf)}, refNames, nil)
	if err == nil || v != nil {
		t.Fatalf("unusable records only: %v, %v", v, err)
	}
	for _, want := range []string{"none of the 2 TLSA records is usable", "1 1 1 ", "PKIX-EE", "unknown matching type 9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Names and Records are copies, and so is what NewVerifier keeps.
func TestVerifierKeepsItsOwnCopies(t *testing.T) {
	p := newPKI(t)
	r := rec(3, 1, 1, p.leaf)
	in := []dane.Record{r}
	names := []string{"MX.example.test.", "", "mx.example.test", "Example.Test"}
	v, err := dane.NewVerifier(in, names, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Names(); !slices.Equal(got, []string{mxName, "example.test"}) {
		t.Errorf("Names() = %q", got)
	}
	in[0].Data[0] ^= 0xff
	v.Records()[0].Data[1] ^= 0xff
	v.Names()[0] = "evil.example"
	if got := v.Records(); len(got) != 1 || !bytes.Equal(got[0].Data, assoc(p.leaf.Certificate, 1, 1)) {
		t.Errorf("Records() changed: %v", got)
	}
	if v.Names()[0] != mxName {
		t.Errorf("Names() changed: %q", v.Names())
	}
	wantResult(t, v.VerifyConnection(state(p.leaf)), "")
}

// One Verifier serves concurrent connections (run with -race).
func TestConcurrentUse(t *testing.T) {
	p := newPKI(t)
	v, err := dane.NewVerifier([]dane.Record{rec(3, 1, 1, p.self), rec(2, 0, 1, p.root)}, refNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			certs := []*cert{p.self}
			if i%2 == 1 {
				certs = []*cert{p.interLeaf, p.inter, p.root}
			}
			errs <- v.VerifyConnection(state(certs...))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestNoCertificate(t *testing.T) {
	p := newPKI(t)
	v, err := dane.NewVerifier([]dane.Record{rec(3, 1, 1, p.leaf)}, refNames, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantResult(t, v.VerifyConnection(tls.ConnectionState{}), "validation-failure")
}

// The message of a failure says what the server sent, so that an operator
// can compare it with the records.
func TestErrorMessage(t *testing.T) {
	p := newPKI(t)
	err := verify(t, []dane.Record{rec(3, 1, 1, p.self), rec(2, 0, 1, p.other)}, refNames, p.leaf, p.root)
	wantResult(t, err, "validation-failure")
	for _, want := range []string{
		fmt.Sprintf("\"3 1 1 %x\"", assoc(p.leaf.Certificate, 1, 1)),
		"CN=mx.example.test", "2 certificates sent",
		"DANE-EE " + rec(3, 1, 1, p.self).String()[:6+16] + "… does not match",
		"DANE-TA " + rec(2, 0, 1, p.other).String()[:6+16] + "… matches no certificate sent",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Digest algorithm agility (RFC 7671 section 9): for one usage and
// selector, SHA-256 records are ignored beside SHA-512 ones; other pairs
// and Full records are not affected.
func TestDigestAgility(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name string
		recs []dane.Record
		typ  string
	}{
		{"3 1 1 matches, 3 1 2 does not: ignored", []dane.Record{rec(3, 1, 1, p.leaf), rec(3, 1, 2, p.self)}, "validation-failure"},
		{"3 1 2 matches beside 3 1 1", []dane.Record{rec(3, 1, 1, p.self), rec(3, 1, 2, p.leaf)}, ""},
		{"3 1 1 matches, 3 0 2 does not (other selector)", []dane.Record{rec(3, 1, 1, p.leaf), rec(3, 0, 2, p.self)}, ""},
		{"3 1 1 matches, 2 1 2 does not (other usage)", []dane.Record{rec(3, 1, 1, p.leaf), rec(2, 1, 2, p.other)}, ""},
		{"3 1 0 matches beside 3 1 2 (Full is not a digest)", []dane.Record{rec(3, 1, 0, p.leaf), rec(3, 1, 2, p.self)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantResult(t, verify(t, tt.recs, refNames, p.leaf, p.root), tt.typ)
		})
	}
}

// PoolKey is the same for verifiers that accept the same servers, and
// differs when the records or the names differ.
func TestPoolKey(t *testing.T) {
	p := newPKI(t)
	key := func(recs []dane.Record, names ...string) string {
		v, err := dane.NewVerifier(recs, names, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v.PoolKey()
	}
	a := key([]dane.Record{rec(3, 1, 1, p.leaf)}, "mx.example.test")
	if b := key([]dane.Record{rec(3, 1, 1, p.leaf)}, "MX.example.test."); a != b {
		t.Errorf("same records and names: %s != %s", a, b)
	}
	if b := key([]dane.Record{rec(3, 1, 1, p.self)}, "mx.example.test"); a == b {
		t.Error("other records, same key")
	}
	if b := key([]dane.Record{rec(3, 1, 1, p.leaf)}, "other.example.test"); a == b {
		t.Error("other names, same key")
	}
}
