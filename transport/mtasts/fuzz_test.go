package mtasts

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParsePolicy: no input panics, and a parsed policy's Lines parse
// back to the same policy, which matches each of its plain MX names.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0"))
	f.Add([]byte("max_age: 0031557600\nx-ext: a b\nmx: MX.example.\nmode: testing\nversion:\tSTSv1 \n"))
	f.Add([]byte("version: STSv1\n\nmode: enforce\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		back, err := ParsePolicy([]byte(strings.Join(p.Lines(), "\n")))
		if err != nil {
			t.Fatalf("Lines of %q = %q do not parse: %v", b, p.Lines(), err)
		}
		if !reflect.DeepEqual(back, p) {
			t.Fatalf("Lines of %q parse to %+v, want %+v", b, back, p)
		}
		for _, mx := range p.MX {
			if !strings.HasPrefix(mx, "*.") && !p.Matches(mx) {
				t.Fatalf("policy %+v does not match its own mx %q", p, mx)
			}
		}
	})
}

// FuzzParseRecord: no input panics, and an accepted id is 1 to 32 letters
// or digits that a minimal record gives back.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;", "v=spf1 -all")
	f.Add("v=STSv1 ;\tid=a; ext=x;", "")
	f.Add("v=STSv1;", "v=STSv1; id=1")
	f.Fuzz(func(t *testing.T, a, b string) {
		id, err := ParseRecord([]string{a, b})
		if err != nil {
			return
		}
		if !validID(id) {
			t.Fatalf("ParseRecord(%q, %q) = id %q, not 1 to 32 letters or digits", a, b, id)
		}
		if again, err := ParseRecord([]string{"v=STSv1; id=" + id}); err != nil || again != id {
			t.Fatalf("minimal record with id %q = %q, %v", id, again, err)
		}
	})
}
