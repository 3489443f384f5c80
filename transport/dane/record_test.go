package dane_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/postern-mta/postern/transport/dane"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		in   string
		want dane.Record
	}{
		{"3 1 1 0a0B0c", dane.Record{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0x0a, 0x0b, 0x0c}}},
		{"  2\t0 1\n0A 0b\t0C ", dane.Record{Usage: 2, Selector: 0, MatchingType: 1, Data: []byte{0x0a, 0x0b, 0x0c}}},
		// A field may split a byte: zone files allow any split of the hex.
		{"3 1 2 0 a0b 0 c", dane.Record{Usage: 3, Selector: 1, MatchingType: 2, Data: []byte{0x0a, 0x0b, 0x0c}}},
		{"255 255 255 FF", dane.Record{Usage: 255, Selector: 255, MatchingType: 255, Data: []byte{0xff}}},
		{"003 01 1 00", dane.Record{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0}}},
	}
	for _, tt := range tests {
		got, err := dane.ParseRecord(tt.in)
		if err != nil || got.Usage != tt.want.Usage || got.Selector != tt.want.Selector || got.MatchingType != tt.want.MatchingType || !bytes.Equal(got.Data, tt.want.Data) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ in, msg string }{
		{"", "want \"usage selector matching-type hex-data\""},
		{"3 1 1", "want \"usage selector matching-type hex-data\""},
		{"3 1 1 ", "want \"usage selector matching-type hex-data\""},
		{"256 1 1 00", "usage \"256\" is not a number from 0 to 255"},
		{"-1 1 1 00", "usage \"-1\""},
		{"+3 1 1 00", "usage \"+3\""},
		{"DANE-EE SPKI SHA2-256 00", "usage \"DANE-EE\""},
		{"3 x 1 00", "selector \"x\""},
		{"3 1 0x1 00", "matching type \"0x1\""},
		{"3 1 1 abc", "certificate association data"},
		{"3 1 1 zz", "certificate association data"},
		{"3 1 1 ( 00 )", "certificate association data"},
		{"3 1 1 " + strings.Repeat("00", 65533), "more than a TLSA record holds"},
	} {
		if r, err := dane.ParseRecord(tt.in); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseRecord(%.40q) = %+v, %v; want an error saying %q", tt.in, r, err, tt.msg)
		}
	}
	if _, err := dane.ParseRecord("3 1 1 " + strings.Repeat("00", 65532)); err != nil {
		t.Errorf("65532 bytes of data: %v", err)
	}
}

func TestRecordString(t *testing.T) {
	for _, tt := range []struct {
		r    dane.Record
		want string
	}{
		{dane.Record{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0xAB, 0x01, 0xff}}, "3 1 1 ab01ff"},
		{dane.Record{Usage: 2, Selector: 0, MatchingType: 0, Data: bytes.Repeat([]byte{0xcd}, 300)}, "2 0 0 " + strings.Repeat("cd", 300)},
		{dane.Record{Usage: 0, Selector: 7, MatchingType: 9}, "0 7 9"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
