package mtasts

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name string
		txt  []string
		id   string
		err  string // substring; "" for success; "none" for ErrNoRecord
	}{
		{"plain", []string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z", ""},
		{"no trailing separator", []string{"v=STSv1; id=abc123"}, "abc123", ""},
		{"no spaces", []string{"v=STSv1;id=abc"}, "abc", ""},
		{"spaces and tabs around separators", []string{"v=STSv1 \t;\t id=abc \t; \t"}, "abc", ""},
		{"extensions ignored", []string{"v=STSv1; foo=bar; id=abc; x.y-z_1=!\"#$%&'()*+,-./:<>?@[]^`{|}~"}, "abc", ""},
		{"other TXT records ignored", []string{"v=spf1 -all", "v=STSv1; id=1", "hello"}, "1", ""},
		{"v=STSv10 is not ours", []string{"v=STSv10; id=1", "v=STSv1; id=2"}, "2", ""},
		{"id of 32", []string{"v=STSv1; id=" + strings.Repeat("a", 32)}, strings.Repeat("a", 32), ""},

		{"no records", nil, "", "none"},
		{"only other records", []string{"v=spf1 -all", ""}, "", "none"},
		{"version without separator is not a record", []string{"v=STSv1"}, "", "none"},
		{"version in lower case is not a record", []string{"v=stsv1; id=1"}, "", "none"},
		{"leading space is not a record", []string{" v=STSv1; id=1"}, "", "none"},
		{"two records", []string{"v=STSv1; id=1", "v=STSv1; id=2"}, "", "2 TXT records"},
		{"no fields", []string{"v=STSv1;"}, "", "no fields"},
		{"no id", []string{"v=STSv1; foo=bar"}, "", "no id field"},
		{"empty id", []string{"v=STSv1; id="}, "", `id ""`},
		{"id of 33", []string{"v=STSv1; id=" + strings.Repeat("a", 33)}, "", "not 1 to 32"},
		{"id with a hyphen", []string{"v=STSv1; id=a-b"}, "", `id "a-b"`},
		{"id key is case-sensitive", []string{"v=STSv1; ID=abc"}, "", "no id field"},
		{"second id", []string{"v=STSv1; id=a; id=b"}, "", "second id"},
		{"second v", []string{"v=STSv1; id=a; v=STSv1"}, "", "second v"},
		{"trailing white space without separator", []string{"v=STSv1; id=abc "}, "", "white space after the last field"},
		{"two separators", []string{"v=STSv1; id=abc;;"}, "", "not key=value"},
		{"field without =", []string{"v=STSv1; id=abc; foo"}, "", `"foo" is not key=value`},
		{"space inside a field", []string{"v=STSv1; id=abc def"}, "", `"def"`},
		{"extension value with =", []string{"v=STSv1; id=abc; a=b=c"}, "", "malformed extension"},
		{"empty extension value", []string{"v=STSv1; id=abc; a="}, "", "malformed extension"},
		{"bad extension name", []string{"v=STSv1; id=abc; -a=b"}, "", "malformed extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseRecord(tt.txt)
			switch tt.err {
			case "":
				if err != nil || id != tt.id {
					t.Fatalf("ParseRecord = %q, %v; want %q", id, err, tt.id)
				}
			case "none":
				if !errors.Is(err, ErrNoRecord) {
					t.Fatalf("ParseRecord = %q, %v; want ErrNoRecord", id, err)
				}
			default:
				if err == nil || errors.Is(err, ErrNoRecord) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseRecord = %q, %v; want an error containing %q", id, err, tt.err)
				}
			}
		})
	}
}
