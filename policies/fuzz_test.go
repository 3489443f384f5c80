package policies

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input makes the loader panic, and a policy that loads
// prints (Marshal) and loads again.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/quickstart/policy.yaml")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("version: 1\ntls:\n  starttls:\n    - if: mx == \"a\"\n      then: require\n    - else: optional\n"))
	f.Add([]byte("version: 1\nrouting:\n  route: {expr: 'rcpt_domain'}\n  routes: {r: {type: relay, address: x.example}}\n"))
	f.Add([]byte("version: 1\nlimits:\n  throttles:\n    - {name: a, key: [mx], rate: 1/s, match: 'remote_ip == \"\"'}\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n<<: {c: 1}\n"))
	f.Add([]byte(fullRelay))
	f.Add([]byte(permitPolicy))
	f.Add([]byte("version: 1\nrelay:\n  listeners: [{name: mta, address: \"0.0.0.0:25\"}]\n  networks: [0.0.0.0/1]\n  permit:\n    - if: authenticated_as == \"\" && !is_ip_in_cidr(received_from_ip, \"10.0.0.0/8\")\n      then: false\n    - else: true\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz/p.yaml", data, Options{Hostname: "mta.test"})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if _, err := Marshal(s); err != nil {
			t.Fatalf("loaded but does not print: %v", err)
		}
	})
}
