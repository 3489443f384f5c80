package tlsrpt

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestParseRecord(t *testing.T) {
	const spf = "v=spf1 -all"
	cases := []struct {
		name     string
		txt      []string
		want     []string // nil: an error
		noRecord bool     // the error wraps ErrNoRecord
	}{
		{"one mailto", []string{"v=TLSRPTv1;rua=mailto:tlsrpt@example.net"}, []string{"mailto:tlsrpt@example.net"}, false},
		{"one https", []string{"v=TLSRPTv1; rua=https://reports.example.net/v1/tlsrpt"}, []string{"https://reports.example.net/v1/tlsrpt"}, false},
		{"two URIs", []string{"v=TLSRPTv1; rua=mailto:a@example.net,https://r.example.net/x"},
			[]string{"mailto:a@example.net", "https://r.example.net/x"}, false},
		{"white space around comma", []string{"v=TLSRPTv1;rua=mailto:a@example.net \t, https://r.example.net/x"},
			[]string{"mailto:a@example.net", "https://r.example.net/x"}, false},
		{"white space before ';'", []string{"v=TLSRPTv1 \t;\t rua=mailto:a@example.net"}, []string{"mailto:a@example.net"}, false},
		{"trailing ';'", []string{"v=TLSRPTv1; rua=mailto:a@example.net;"}, []string{"mailto:a@example.net"}, false},
		{"trailing '; '", []string{"v=TLSRPTv1; rua=mailto:a@example.net ; "}, []string{"mailto:a@example.net"}, false},
		{"among other TXT records", []string{spf, "v=TLSRPTv1; rua=mailto:a@example.net", "google-site-verification=x"},
			[]string{"mailto:a@example.net"}, false},
		{"extension fields ignored", []string{"v=TLSRPTv1; ext1=val!ue; rua=mailto:a@example.net; x.y-z_1=2"},
			[]string{"mailto:a@example.net"}, false},
		{"two rua fields", []string{"v=TLSRPTv1; rua=mailto:a@example.net; rua=https://r.example.net/"},
			[]string{"mailto:a@example.net", "https://r.example.net/"}, false},
		{"unknown scheme ignored", []string{"v=TLSRPTv1; rua=http://r.example.net/,mailto:a@example.net"},
			[]string{"mailto:a@example.net"}, false},
		{"encoded comma and semicolon", []string{"v=TLSRPTv1; rua=https://r.example.net/a%2Cb%3Bc"},
			[]string{"https://r.example.net/a%2Cb%3Bc"}, false},
		{"upper-case scheme", []string{"v=TLSRPTv1; rua=MAILTO:a@example.net"}, []string{"MAILTO:a@example.net"}, false},
		{"mailto with two addresses", []string{"v=TLSRPTv1; rua=mailto:a@example.net%2Cb@example.net"},
			[]string{"mailto:a@example.net%2Cb@example.net"}, false},

		{"no TXT records", nil, nil, true},
		{"no TLSRPT record", []string{spf}, nil, true},
		{"two records", []string{"v=TLSRPTv1; rua=mailto:a@example.net", "v=TLSRPTv1; rua=mailto:b@example.net"}, nil, true},
		{"bad version", []string{"v=TLSRPTv2; rua=mailto:a@example.net"}, nil, true},
		{"version without ';'", []string{"v=TLSRPTv1 rua=mailto:a@example.net"}, nil, true},
		{"version lower-case", []string{"v=tlsrptv1; rua=mailto:a@example.net"}, nil, true},
		{"leading space", []string{" v=TLSRPTv1; rua=mailto:a@example.net"}, nil, true},
		{"missing rua", []string{"v=TLSRPTv1; ext=1"}, nil, false},
		{"nothing after version", []string{"v=TLSRPTv1;"}, nil, false},
		{"RUA upper-case is no rua", []string{"v=TLSRPTv1; RUA=mailto:a@example.net"}, nil, false},
		{"unknown scheme only", []string{"v=TLSRPTv1; rua=http://r.example.net/,ftp://x.example.net/"}, nil, false},
		{"mailto without address", []string{"v=TLSRPTv1; rua=mailto:"}, nil, false},
		{"https without host", []string{"v=TLSRPTv1; rua=https:///x"}, nil, false},
		{"relative URI", []string{"v=TLSRPTv1; rua=reports@example.net"}, nil, false},
		{"raw '!' in URI", []string{"v=TLSRPTv1; rua=mailto:a!b@example.net"}, nil, false},
		{"bad percent-encoding", []string{"v=TLSRPTv1; rua=https://r.example.net/%zz"}, nil, false},
		{"empty field", []string{"v=TLSRPTv1;; rua=mailto:a@example.net"}, nil, false},
		{"two trailing ';'", []string{"v=TLSRPTv1; rua=mailto:a@example.net;;"}, nil, false},
		{"space around '='", []string{"v=TLSRPTv1; rua = mailto:a@example.net"}, nil, false},
		{"trailing space without ';'", []string{"v=TLSRPTv1; rua=mailto:a@example.net "}, nil, false},
		{"empty URI after comma", []string{"v=TLSRPTv1; rua=mailto:a@example.net,"}, nil, false},
		{"extension without value", []string{"v=TLSRPTv1; rua=mailto:a@example.net; ext="}, nil, false},
		{"extension name too long", []string{"v=TLSRPTv1; rua=mailto:a@example.net; " + strings.Repeat("e", 33) + "=1"}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, err := ParseRecord(c.txt)
			if c.want == nil {
				if err == nil {
					t.Fatalf("ParseRecord(%q) = %q, want an error", c.txt, rec.RUA)
				}
				if got := errors.Is(err, ErrNoRecord); got != c.noRecord {
					t.Errorf("ParseRecord(%q): errors.Is(%v, ErrNoRecord) = %v, want %v", c.txt, err, got, c.noRecord)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRecord(%q): %v", c.txt, err)
			}
			if !slices.Equal(rec.RUA, c.want) {
				t.Errorf("ParseRecord(%q).RUA = %q, want %q", c.txt, rec.RUA, c.want)
			}
		})
	}
}

// The longest extension name the ABNF allows (32 characters) is accepted;
// the test above shows 33 is not.
func TestParseRecordExtensionNameLength(t *testing.T) {
	txt := "v=TLSRPTv1; " + strings.Repeat("e", 32) + "=1; rua=mailto:a@example.net"
	if _, err := ParseRecord([]string{txt}); err != nil {
		t.Errorf("ParseRecord(%q): %v", txt, err)
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=TLSRPTv1;rua=mailto:a@example.net",
		"v=TLSRPTv1; rua=mailto:a@example.net,https://r.example.net/x; ext=1;",
		"v=TLSRPTv1 ; rua=https://r.example.net/a%2Cb\nv=spf1 -all",
		"v=TLSRPTv1; rua=http://x/",
		"v=TLSRPTv1; rua=mailto:a@example.net%2Cb@example.net",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseRecord(strings.Split(s, "\n")) // one TXT record per line
		if err != nil {
			return
		}
		if len(rec.RUA) == 0 {
			t.Fatalf("ParseRecord(%q) accepted a record without a URI", s)
		}
		for _, r := range rec.RUA {
			u, err := url.Parse(r)
			if err != nil || (u.Scheme != "mailto" && u.Scheme != "https") {
				t.Fatalf("ParseRecord(%q) accepted URI %q (%v)", s, r, err)
			}
		}
	})
}
