package dane_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport/dane"
)

// A parsed record never panics Usable, prints in lower case and parses
// back to itself.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"3 1 1 0a0b0c", "2 0 1 AB cd\tEF", "255 255 255 ff", "3 1 1", "3 1 1 abc", "1 2 3 4 5 6", "03 1 1 00", "3\n1\n0\n3003"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := dane.ParseRecord(s)
		if err != nil {
			return
		}
		_ = r.Usable()
		out := r.String()
		if out != strings.ToLower(out) {
			t.Errorf("String() = %q is not lower case", out)
		}
		back, err := dane.ParseRecord(out)
		if err != nil {
			t.Fatalf("ParseRecord(%q) from %q: %v", out, s, err)
		}
		if back.Usage != r.Usage || back.Selector != r.Selector || back.MatchingType != r.MatchingType || !bytes.Equal(back.Data, r.Data) {
			t.Errorf("%q parsed to %+v, printed as %q, parsed back to %+v", s, r, out, back)
		}
	})
}

// Random records against a fixed, valid chain (leaf and intermediate sent,
// root not sent): the Verifier never panics and lets the server in exactly
// when some record designates it by the independent check in want.
func FuzzVerify(f *testing.F) {
	p := newPKI(f)
	sent := state(p.interLeaf, p.inter)
	// data picks the certificate association data: random bytes, or the
	// data of one of the certificates below (last: flipped by one bit).
	designated := []*cert{p.interLeaf, p.inter, p.root, p.other, p.interLeaf}
	data := func(src uint8, s, m uint8, random []byte) []byte {
		i := int(src) - 1
		if i < 0 || i >= len(designated) {
			return random
		}
		d := assoc(designated[i].Certificate, s, m)
		if i == len(designated)-1 && len(random) > 0 {
			bit := int(random[0]) % (8 * len(d))
			d[bit/8] ^= 1 << (bit % 8)
		}
		return d
	}
	// want says, on its own, whether r authenticates the chain sent:
	// DANE-EE for the leaf; DANE-TA for the intermediate sent, or a Full
	// record of the root (certificate or key), which issued it.
	want := func(r dane.Record) bool {
		if r.Selector > 1 || r.MatchingType > 2 {
			return false
		}
		is := func(c *cert) bool { return bytes.Equal(r.Data, assoc(c.Certificate, r.Selector, r.MatchingType)) }
		switch r.Usage {
		case dane.DANEEE:
			return is(p.interLeaf)
		case dane.DANETA:
			return is(p.inter) || r.MatchingType == dane.MatchFull && is(p.root)
		}
		return false
	}
	f.Add(uint8(3), uint8(1), uint8(1), uint8(1), []byte{}, uint8(2), uint8(0), uint8(1), uint8(2), []byte{})
	f.Add(uint8(2), uint8(0), uint8(0), uint8(3), []byte{}, uint8(2), uint8(1), uint8(0), uint8(3), []byte{})
	f.Add(uint8(3), uint8(1), uint8(2), uint8(5), []byte{7}, uint8(2), uint8(1), uint8(1), uint8(4), []byte{})
	f.Add(uint8(1), uint8(1), uint8(1), uint8(1), []byte{}, uint8(0), uint8(0), uint8(1), uint8(3), []byte{})
	f.Add(uint8(3), uint8(7), uint8(1), uint8(0), []byte("0123456789abcdef0123456789abcdef"), uint8(2), uint8(1), uint8(9), uint8(2), []byte{})
	f.Fuzz(func(t *testing.T, u1, s1, m1, src1 uint8, d1 []byte, u2, s2, m2, src2 uint8, d2 []byte) {
		recs := []dane.Record{
			{Usage: u1, Selector: s1, MatchingType: m1, Data: data(src1, s1, m1, d1)},
			{Usage: u2, Selector: s2, MatchingType: m2, Data: data(src2, s2, m2, d2)},
		}
		// Digest agility (RFC 7671 section 9): a SHA-256 record is
		// ignored beside a usable SHA-512 one of the same usage and
		// selector.
		superseded := func(r, other dane.Record) bool {
			return r.MatchingType == dane.MatchSHA256 && other.MatchingType == dane.MatchSHA512 &&
				r.Usage == other.Usage && r.Selector == other.Selector && other.Usable() == nil
		}
		expect := want(recs[0]) && !superseded(recs[0], recs[1]) || want(recs[1]) && !superseded(recs[1], recs[0])
		v, err := dane.NewVerifier(recs, refNames, nil)
		if err != nil {
			if expect {
				t.Fatalf("NewVerifier(%v): %v, yet a record designates the server", recs, err)
			}
			return
		}
		err = v.VerifyConnection(sent)
		if (err == nil) != expect {
			t.Fatalf("records %v: VerifyConnection = %v, want a pass: %v", recs, err, expect)
		}
		var de *dane.Error
		if err != nil && (!errors.As(err, &de) || de.Type == "") {
			t.Fatalf("error %v (%T) is not a *dane.Error with a type", err, err)
		}
	})
}
