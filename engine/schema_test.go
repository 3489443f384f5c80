package engine_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath is the JSON Schema of the dry-run output, docs/dry-run.schema.json.
var schemaPath = filepath.Join("..", "docs", "dry-run.schema.json")

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat() // ipv4/ipv6 are checked, not just annotations
	abs, err := filepath.Abs(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(abs)
	if err != nil {
		t.Fatalf("%s does not compile: %v", schemaPath, err)
	}
	return s
}

func decodeJSON(t *testing.T, data []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSchemaGolden validates every golden want.json against the schema.
func TestSchemaGolden(t *testing.T) {
	s := compileSchema(t)
	for _, path := range goldenFiles(t) {
		c := loadGolden(t, path)
		t.Run(c.name, func(t *testing.T) {
			data, ok := c.file("want.json")
			if !ok {
				t.Fatalf("%s has no want.json", path)
			}
			if err := s.Validate(decodeJSON(t, data)); err != nil {
				t.Errorf("%s: want.json does not match %s:\n%v", path, schemaPath, err)
			}
		})
	}
}

// TestSchemaRejects checks that the schema is strict where the contract is
// fixed: each document is a valid golden output with one thing broken.
func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	base := func(name string) map[string]any {
		c := loadGolden(t, filepath.Join("testdata", name+".txtar"))
		data, _ := c.file("want.json")
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	group := func(m map[string]any, i int) map[string]any { return m["groups"].([]any)[i].(map[string]any) }
	host := func(m map[string]any, g, h int) map[string]any {
		return group(m, g)["hosts"].([]any)[h].(map[string]any)
	}
	cases := []struct {
		name   string
		golden string
		break_ func(m map[string]any)
	}{
		{"no groups", "retry-tls-after", func(m map[string]any) { delete(m, "groups") }},
		{"empty groups", "retry-tls-after", func(m map[string]any) { m["groups"] = []any{} }},
		{"unknown top-level field", "retry-tls-after", func(m map[string]any) { m["verdict"] = "ok" }},
		{"outcome not a contract word", "retry-tls-after", func(m map[string]any) { group(m, 0)["outcome"] = "delivered" }},
		{"deliver with an error", "retry-tls-after", func(m map[string]any) {
			group(m, 0)["error"] = map[string]any{"temporary": true, "class": "dns", "message": "x"}
		}},
		{"error class not a last_error word", "null-mx", func(m map[string]any) {
			group(m, 0)["error"].(map[string]any)["class"] = "timeout"
		}},
		{"fail marked temporary", "null-mx", func(m map[string]any) {
			group(m, 0)["error"].(map[string]any)["temporary"] = true
		}},
		{"defer without error", "servfail-mx", func(m map[string]any) { group(m, 0)["error"] = nil }},
		{"route type not a contract word", "retry-tls-after", func(m map[string]any) {
			group(m, 0)["route"].(map[string]any)["type"] = "smtp"
		}},
		{"relay without address", "relay-ip-literal", func(m map[string]any) {
			delete(group(m, 0)["route"].(map[string]any), "address")
		}},
		{"secret value shown", "per-sender-relay", func(m map[string]any) {
			group(m, 0)["route"].(map[string]any)["auth"].(map[string]any)["secret"] = "hunter2"
		}},
		{"starttls not a mode", "retry-tls-after", func(m map[string]any) {
			host(m, 0, 0)["tls"].(map[string]any)["starttls"] = "required"
		}},
		{"unknown host field", "retry-tls-after", func(m map[string]any) { host(m, 0, 0)["weight"] = 1 }},
		{"addresses null", "retry-tls-after", func(m map[string]any) { host(m, 0, 0)["addresses"] = nil }},
		{"address not an IP", "retry-tls-after", func(m map[string]any) {
			host(m, 0, 0)["addresses"] = []any{"mx1.example.com"}
		}},
		{"tried host without connections", "retry-tls-after", func(m map[string]any) { host(m, 0, 0)["connections"] = []any{} }},
		{"missing data timeout", "retry-tls-after", func(m map[string]any) {
			c := host(m, 0, 0)["connections"].([]any)[0].(map[string]any)
			delete(c["timeouts"].(map[string]any), "data")
		}},
		{"timeout not a duration", "retry-tls-after", func(m map[string]any) {
			c := host(m, 0, 0)["connections"].([]any)[0].(map[string]any)
			c["timeouts"].(map[string]any)["connect"] = "five minutes"
		}},
		{"ip_lookup not a strategy", "retry-tls-after", func(m map[string]any) { host(m, 0, 0)["ip_lookup"] = "ipv4_first" }},
		{"trace entry without setting", "retry-tls-after", func(m map[string]any) {
			delete(group(m, 0)["trace"].([]any)[0].(map[string]any), "setting")
		}},
		{"trace rule without matched", "retry-tls-after", func(m map[string]any) {
			delete(group(m, 0)["trace"].([]any)[0].(map[string]any), "matched")
		}},
		{"trace phase unknown", "retry-tls-after", func(m map[string]any) {
			group(m, 0)["trace"].([]any)[0].(map[string]any)["phase"] = "message"
		}},
		{"throttle without limit", "throttles", func(m map[string]any) {
			th := group(m, 0)["throttles"].([]any)[0].(map[string]any)
			delete(th, "concurrency")
			delete(th, "rate")
		}},
		{"local group with hosts", "local-route", func(m map[string]any) {
			group(m, 0)["hosts"] = group(m, 1)["hosts"]
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base(c.golden)
			if err := s.Validate(roundTrip(t, m)); err != nil {
				t.Fatalf("the unbroken %s output does not validate: %v", c.golden, err)
			}
			c.break_(m)
			if err := s.Validate(roundTrip(t, m)); err == nil {
				t.Errorf("schema accepts a document with %s", c.name)
			}
		})
	}
}

// roundTrip turns m into the value representation the validator wants.
func roundTrip(t *testing.T, m map[string]any) any {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, data)
}
