package policytest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const schemaPath = "../../docs/cases.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	abs, err := filepath.Abs(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.NewCompiler().Compile(abs)
	if err != nil {
		t.Fatalf("%s does not compile: %v", schemaPath, err)
	}
	return s
}

// yamlValue decodes YAML into what the validator takes (JSON values).
func yamlValue(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(j, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSchemaMatchesFormat fails when docs/cases.schema.json and the keys
// the reader accepts drift apart.
func TestSchemaMatchesFormat(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Defs map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for def, keys := range map[string][]string{"case": caseKeys, "facts": factKeys} {
		var inSchema []string
		for k := range doc.Defs[def].Properties {
			inSchema = append(inSchema, k)
		}
		slices.Sort(inSchema)
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(inSchema, want) {
			t.Errorf("$defs.%s.properties = %v, the reader's keys are %v", def, inSchema, want)
		}
	}
}

func TestSchemaExamplesValid(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob("../../examples/*/cases.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlValue(t, data)); err != nil {
			t.Errorf("%s does not match the schema: %v", f, err)
		}
	}
}

// TestSchemaRejects: cases files the reader refuses, the schema refuses
// too.
func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	for name, doc := range map[string]string{
		"not a list":     "name: x\nto: [a@b]\n",
		"empty list":     "[]\n",
		"no name":        "- to: [a@b]\n",
		"no recipients":  "- name: x\n  to: []\n",
		"unknown key":    "- name: x\n  to: [a@b]\n  form: c@d\n",
		"unknown fact":   "- name: x\n  to: [a@b]\n  groups:\n    - rcpt: a@b\n      starttsl: require\n",
		"fact not rcpt":  "- name: x\n  to: [a@b]\n  groups:\n    - route: mx\n",
		"bad enum":       "- name: x\n  to: [a@b]\n  groups:\n    - rcpt: a@b\n      starttls: required\n",
		"hosts a string": "- name: x\n  to: [a@b]\n  groups:\n    - rcpt: a@b\n      hosts: mx1.example\n",
	} {
		if err := s.Validate(yamlValue(t, []byte(doc))); err == nil {
			t.Errorf("%s: the schema accepts\n%s", name, doc)
		}
		if _, err := Parse([]byte(doc), "cases.yaml"); err == nil && name != "bad enum" {
			// The reader leaves enum values to the comparison (a case
			// expecting "required" fails with got/want).
			t.Errorf("%s: the reader accepts\n%s", name, doc)
		}
	}
}
