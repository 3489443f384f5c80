package mtasts

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	day := 86400 * time.Second
	tests := []struct {
		name string
		in   string
		want *Policy
		err  string // substring of the error; "" for success
	}{
		{"CRLF", "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n",
			&Policy{Enforce, []string{"mx1.example.com", "*.example.net"}, day}, ""},
		{"LF", "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n",
			&Policy{Testing, []string{"mx1.example.com"}, day}, ""},
		{"last line without line end", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: 86400",
			&Policy{Enforce, []string{"mx"}, day}, ""},
		{"mixed line ends", "version: STSv1\r\nmode: enforce\nmx: mx\r\nmax_age: 86400",
			&Policy{Enforce, []string{"mx"}, day}, ""},
		{"white space after the colon and at line ends", "version:\tSTSv1 \t\r\nmode:enforce\r\nmx:   mx.example.com  \r\nmax_age: 86400\t\r\n",
			&Policy{Enforce, []string{"mx.example.com"}, day}, ""},
		{"any order", "max_age: 60\nmx: mx.example.com\nmode: enforce\nversion: STSv1\n",
			&Policy{Enforce, []string{"mx.example.com"}, time.Minute}, ""},
		{"mx lower-cased, trailing dot dropped", "version: STSv1\nmode: enforce\nmx: MX1.Example.COM.\nmx: *.EXAMPLE.net\nmax_age: 1\n",
			&Policy{Enforce, []string{"mx1.example.com", "*.example.net"}, time.Second}, ""},
		{"mode none without mx", "version: STSv1\nmode: none\nmax_age: 86400\n",
			&Policy{None, nil, day}, ""},
		{"max_age 0", "version: STSv1\nmode: none\nmax_age: 0\n", &Policy{None, nil, 0}, ""},
		{"max_age at the limit, leading zeros", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: 0031557600\n",
			&Policy{Enforce, []string{"mx"}, MaxMaxAge}, ""},
		{"unknown keys ignored", "version: STSv1\nfoo-bar.baz: some value; with = signs ü\nmode: enforce\nX9: y\nmx: mx\nmax_age: 5\n",
			&Policy{Enforce, []string{"mx"}, 5 * time.Second}, ""},

		{"empty", "", nil, "empty"},
		{"missing version", "mode: enforce\nmx: mx\nmax_age: 86400\n", nil, `no "version" field`},
		{"missing mode", "version: STSv1\nmx: mx\nmax_age: 86400\n", nil, `no "mode" field`},
		{"missing max_age", "version: STSv1\nmode: enforce\nmx: mx\n", nil, `no "max_age" field`},
		{"missing mx in enforce", "version: STSv1\nmode: enforce\nmax_age: 86400\n", nil, `no "mx" field`},
		{"missing mx in testing", "version: STSv1\nmode: testing\nmax_age: 86400\n", nil, `no "mx" field`},
		{"keys are case-sensitive", "Version: STSv1\nmode: enforce\nmx: mx\nmax_age: 86400\n", nil, `no "version" field`},
		{"second version", "version: STSv1\nversion: STSv1\nmode: enforce\nmx: mx\nmax_age: 1\n", nil, `line 2: second "version"`},
		{"second mode", "version: STSv1\nmode: enforce\nmode: testing\nmx: mx\nmax_age: 1\n", nil, `line 3: second "mode"`},
		{"second max_age", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: 1\nmax_age: 2\n", nil, `line 5: second "max_age"`},
		{"bad version", "version: STSv2\nmode: enforce\nmx: mx\nmax_age: 1\n", nil, `line 1: version "STSv2"`},
		{"bad mode", "version: STSv1\nmode: report\nmx: mx\nmax_age: 1\n", nil, `line 2: mode "report"`},
		{"mode is case-sensitive", "version: STSv1\nmode: Enforce\nmx: mx\nmax_age: 1\n", nil, `line 2: mode "Enforce"`},
		{"max_age over a year", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: 31557601\n", nil, "line 4: max_age 31557601 is over 31557600"},
		{"max_age of 11 digits", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: 00000000001\n", nil, "not 1 to 10 digits"},
		{"max_age negative", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: -1\n", nil, "not 1 to 10 digits"},
		{"max_age with a unit", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: 86400s\n", nil, "not 1 to 10 digits"},
		{"max_age empty", "version: STSv1\nmode: enforce\nmx: mx\nmax_age:\n", nil, "not 1 to 10 digits"},
		{"mx *.*.x", "version: STSv1\nmode: enforce\nmx: *.*.x\nmax_age: 1\n", nil, `line 3: mx "*.*.x"`},
		{"mx a.*.x", "version: STSv1\nmode: enforce\nmx: a.*.x\nmax_age: 1\n", nil, `mx "a.*.x"`},
		{"mx *", "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", nil, `mx "*"`},
		{"mx *.", "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 1\n", nil, `mx "*"`},
		{"mx *x.y", "version: STSv1\nmode: enforce\nmx: *x.y\nmax_age: 1\n", nil, `mx "*x.y"`},
		{"mx empty", "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", nil, `mx ""`},
		{"mx with an empty label", "version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n", nil, `mx "a..b"`},
		{"mx with a leading hyphen", "version: STSv1\nmode: enforce\nmx: -a.b\nmax_age: 1\n", nil, `mx "-a.b"`},
		{"mx with an underscore", "version: STSv1\nmode: enforce\nmx: a_b.c\nmax_age: 1\n", nil, `mx "a_b.c"`},
		{"mx with a label of 64", "version: STSv1\nmode: enforce\nmx: " + strings.Repeat("a", 64) + ".b\nmax_age: 1\n", nil, "not a host name"},
		{"mx with a space inside", "version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1\n", nil, `mx "a b"`},
		{"blank line", "version: STSv1\n\nmode: enforce\nmx: mx\nmax_age: 1\n", nil, "line 2: empty line"},
		{"blank line at the end", "version: STSv1\nmode: enforce\nmx: mx\nmax_age: 1\n\n", nil, "line 5: empty line"},
		{"leading white space", " version: STSv1\nmode: enforce\nmx: mx\nmax_age: 1\n", nil, `line 1: bad key " version"`},
		{"space before the colon", "version : STSv1\nmode: enforce\nmx: mx\nmax_age: 1\n", nil, `bad key "version "`},
		{"no colon", "version STSv1\nmode: enforce\nmx: mx\nmax_age: 1\n", nil, "line 1: \"version STSv1\" is not"},
		{"bare CR", "version: STSv1\rmode: enforce\nmx: mx\nmax_age: 1\n", nil, "line 1: version"},
		{"control character in an extension", "version: STSv1\nmode: enforce\nx: a\x01b\nmx: mx\nmax_age: 1\n", nil, `line 3: bad value`},
		{"tab inside an extension value", "version: STSv1\nmode: enforce\nx: a\tb\nmx: mx\nmax_age: 1\n", nil, `line 3: bad value`},
		{"empty extension value", "version: STSv1\nmode: enforce\nx:\nmx: mx\nmax_age: 1\n", nil, `line 3: bad value`},
		{"bad extension name", "version: STSv1\nmode: enforce\n_x: y\nmx: mx\nmax_age: 1\n", nil, `line 3: bad key "_x"`},
		{"invalid UTF-8", "version: STSv1\nmode: enforce\nx: \xff\nmx: mx\nmax_age: 1\n", nil, `line 3: bad value`},
		{"byte order mark", "\ufeffversion: STSv1\nmode: enforce\nmx: mx\nmax_age: 1\n", nil, "line 1: bad key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePolicy = %+v, %v; want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePolicy = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPolicyLines(t *testing.T) {
	p := &Policy{Enforce, []string{"mx1.example.com", "*.example.net"}, 86400 * time.Second}
	want := []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.example.net", "max_age: 86400"}
	if got := p.Lines(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Lines = %q, want %q", got, want)
	}
	back, err := ParsePolicy([]byte(strings.Join(p.Lines(), "\r\n")))
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("Lines parsed back = %+v, %v; want %+v", back, err, p)
	}
}

func TestMatches(t *testing.T) {
	p := &Policy{Mode: Enforce, MX: []string{"mx1.example.org", "*.example.com"}}
	tests := []struct {
		host string
		want bool
	}{
		{"mx1.example.org", true},
		{"MX1.Example.ORG", true},
		{"mx1.example.org.", true},
		{"mx2.example.org", false},
		{"example.org", false},
		{"x.mx1.example.org", false},
		{"mail.example.com", true},
		{"Mail.EXAMPLE.com.", true},
		{"example.com", false},
		{"a.b.example.com", false},
		{".example.com", false},
		{"mailexample.com", false},
		{"mail.example.com.evil", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := p.Matches(tt.host); got != tt.want {
			t.Errorf("Matches(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	// Match names the pattern that listed the host.
	for host, want := range map[string]string{"MX1.example.org.": "mx1.example.org", "mail.example.com": "*.example.com", "a.b.example.com": ""} {
		if got, ok := p.Match(host); got != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", host, got, ok, want)
		}
	}
	if (&Policy{Mode: None}).Matches("mx.example.com") {
		t.Error("a policy without mx patterns matched a host")
	}
}
