package main

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/postern-mta/postern/policies"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"golang.org/x/tools/txtar"
)

// repoRoot is the repository, seen from this package.
var repoRoot = filepath.Join("..", "..")

var (
	schemaOnce sync.Once
	schemaC    *jsonschema.Schema
	schemaErr  error
)

// policySchema compiles the schema renderSchema generates (TestDocsUpToDate
// checks that docs/policy.schema.json is the same).
func policySchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		b, err := renderSchema()
		if err != nil {
			schemaErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource(schemaID, doc); err != nil {
			schemaErr = err
			return
		}
		schemaC, schemaErr = c.Compile(schemaID)
	})
	if schemaErr != nil {
		t.Fatalf("the schema does not compile: %v", schemaErr)
	}
	return schemaC
}

// validate checks a policy's YAML against the schema, as an editor sees it.
func validate(t testing.TB, policy []byte) error {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal(policy, &n); err != nil {
		return err
	}
	return policySchema(t).Validate(jsonOf(&n))
}

// load is what `postern check` asks of the loader, for a policy file at
// path with content policy.
func load(path string, policy []byte) error {
	_, err := policies.Parse(path, policy, policies.Options{Hostname: "mta.example.org"})
	return err
}

// modeline is the first line of every example policy.
const modeline = "# yaml-language-server: $schema=../../docs/policy.schema.json"

// TestExamplesValidate: every examples/*/policy.yaml loads and validates.
func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", "*", "policy.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := load(f, b); err != nil {
			t.Errorf("%s does not load: %v", f, err)
		}
		if err := validate(t, b); err != nil {
			t.Errorf("%s does not validate:\n%v", f, err)
		}
	}
}

// TestExamplesNameSchema: every example policy starts with the modeline
// that points yaml-language-server at docs/policy.schema.json, and the
// path it gives is right from the example's directory.
func TestExamplesNameSchema(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, "examples", "*", "policy.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		if first != modeline {
			t.Errorf("%s: first line %q, want %q", f, first, modeline)
			continue
		}
		target := filepath.Join(filepath.Dir(f), strings.TrimPrefix(first, "# yaml-language-server: $schema="))
		if _, err := os.Stat(target); err != nil {
			t.Errorf("%s: the modeline names %s: %v", f, target, err)
		}
	}
}

// TestDefaultsValidate: the output of `postern check --print-defaults`
// (made as cmd/postern makes it) validates.
func TestDefaultsValidate(t *testing.T) {
	out, err := policies.Marshal(policies.Defaults(policies.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(t, out); err != nil {
		t.Errorf("--print-defaults does not validate:\n%v\n%s", err, out)
	}
}

// TestSchemaRejects: each policy has one mistake, which the loader refuses
// and the schema flags as well.
func TestSchemaRejects(t *testing.T) {
	cases := []struct{ name, policy string }{
		{"no version", "tls: {starttls: require}\n"},
		{"version 2", "version: 2\n"},
		{"unknown top-level key", "version: 1\ntsl: {starttls: require}\n"},
		{"typo in a section", "version: 1\ntls:\n  starttsl: require\n"},
		{"typo in a nested section", "version: 1\nlimits:\n  timeouts:\n    conect: 1m\n"},
		{"enum given a number", "version: 1\ntls: {starttls: 3}\n"},
		{"enum word misspelt", "version: 1\ntls: {starttls: requir}\n"},
		{"enum given a bare expression", "version: 1\ntls:\n  starttls: 'retry_num > 2 ? \"optional\" : \"require\"'\n"},
		{"tls version that does not exist", "version: 1\ntls: {min-version: 1.4}\n"},
		{"bool given a list", "version: 1\ntls: {allow-invalid-certs: [true]}\n"},
		{"bool given a number", "version: 1\nip-strategy: {refuse-private: 1}\n"},
		{"bool given yes", "version: 1\nip-strategy: {refuse-private: yes}\n"},
		{"integer out of range", "version: 1\nlimits: {mx: 0}\n"},
		{"integer given a word", "version: 1\nlimits: {mx: five}\n"},
		{"duration without a unit", "version: 1\nlimits:\n  timeouts: {connect: 300}\n"},
		{"duration misspelt", "version: 1\nlimits:\n  timeouts: {connect: 5 minutes}\n"},
		{"size in words", "version: 1\nlimits: {max-file-size: 16 kilobytes}\n"},
		{"rule without then", "version: 1\ntls:\n  starttls:\n    - if: mx == \"a.example\"\n"},
		{"rule with if and else", "version: 1\ntls:\n  starttls:\n    - {if: 'true', then: require, else: optional}\n"},
		{"rule with an unknown key", "version: 1\ntls:\n  starttls:\n    - {if: 'true', than: require}\n"},
		{"rule then outside the enum", "version: 1\ntls:\n  starttls:\n    - {if: 'true', then: strict}\n"},
		{"condition given a number", "version: 1\ntls:\n  starttls:\n    - {if: 1, then: require}\n"},
		{"empty rule list", "version: 1\ntls: {starttls: []}\n"},
		{"expr with another key", "version: 1\nhostname: {expr: '\"a.example\"', default: b.example}\n"},
		{"list for a setting that is no list", "version: 1\nlimits: {mx: [1, 2]}\n"},
		{"not an IP address", "version: 1\nip-strategy: {source-ips: [mail.example.org]}\n"},
		{"host name with a space", "version: 1\nhostname: mta example org\n"},
		{"route with an unknown type", "version: 1\nrouting:\n  routes:\n    r: {type: smarthost, address: a.example}\n"},
		{"route without a type", "version: 1\nrouting:\n  routes:\n    r: {address: a.example}\n"},
		{"relay without an address", "version: 1\nrouting:\n  routes:\n    r: {type: relay}\n"},
		{"mx route with a port", "version: 1\nrouting:\n  routes:\n    r: {type: mx, port: 25}\n"},
		{"route key misspelt", "version: 1\nrouting:\n  routes:\n    r: {type: relay, address: a.example, prot: 587}\n"},
		{"redefining mx", "version: 1\nrouting:\n  routes:\n    mx: {type: mx}\n"},
		{"port out of range", "version: 1\nrouting:\n  routes:\n    r: {type: relay, address: a.example, port: 70000}\n"},
		{"address with a port", "version: 1\nrouting:\n  routes:\n    r: {type: relay, address: 'a.example:587'}\n"},
		{"auth without secret", "version: 1\nrouting:\n  routes:\n    r: {type: relay, address: a.example, auth: {username: u}}\n"},
		{"secret from env and file", "version: 1\nrouting:\n  routes:\n    r: {type: relay, address: a.example, auth: {username: u, secret: {env: A, file: b}}}\n"},
		{"bad environment variable name", "version: 1\nrouting:\n  routes:\n    r: {type: relay, address: a.example, auth: {username: u, secret: {env: 1A}}}\n"},
		{"throttle without a name", "version: 1\nlimits:\n  throttles:\n    - {rate: 1/s}\n"},
		{"throttle without a limit", "version: 1\nlimits:\n  throttles:\n    - {name: a}\n"},
		{"throttle with enable", "version: 1\nlimits:\n  throttles:\n    - {name: a, rate: 1/s, enable: true}\n"},
		{"throttle rate without a period", "version: 1\nlimits:\n  throttles:\n    - {name: a, rate: 100}\n"},
		{"throttle key unknown", "version: 1\nlimits:\n  throttles:\n    - {name: a, rate: 1/s, key: [domain]}\n"},
		{"throttles as a mapping", "version: 1\nlimits:\n  throttles: {name: a, rate: 1/s}\n"},
		{"site pattern without a dot", "version: 1\nlimits:\n  sites:\n    g: ['*.com']\n"},
		{"store password literal", "version: 1\nlimits:\n  store: {url: 'redis://127.0.0.1:6379', password: pw}\n"},
		{"store not redis", "version: 1\nlimits:\n  store: 'http://127.0.0.1:6379'\n"},
		{"on-store-error unknown", "version: 1\nlimits: {on-store-error: retry}\n"},
		{"list name with a space", "version: 1\nlists:\n  'my list': [a]\n"},
		{"list file key misspelt", "version: 1\nlists:\n  a: {path: a.txt}\n"},
		{"lists as a list", "version: 1\nlists: [a, b]\n"},
		{"dns resolver unknown", "version: 1\ndns: {resolver: opendns}\n"},
		{"dns server without a scheme", "version: 1\ndns: {resolver: custom, servers: ['127.0.0.1:53']}\n"},
		{"section given a scalar", "version: 1\ntls: strict\n"},
		{"relay listener without an address", "version: 1\nrelay:\n  listeners: [{name: mta}]\n"},
		{"relay listener key misspelt", "version: 1\nrelay:\n  listeners: [{name: mta, address: '127.0.0.1:25', protocol: smtp}]\n"},
		{"relay listener mode unknown", "version: 1\nrelay:\n  listeners: [{name: mta, address: '127.0.0.1:25', mode: lmtp}]\n"},
		{"relay listener address without a port", "version: 1\nrelay:\n  listeners: [{name: mta, address: 127.0.0.1}]\n"},
		{"relay listener tls without key", "version: 1\nrelay:\n  listeners: [{name: mta, address: '127.0.0.1:25', tls: {cert: c}}]\n"},
		{"relay without listeners", "version: 1\nrelay:\n  listeners: []\n"},
		{"relay networks with a host name", "version: 1\nrelay:\n  networks: [mail.example]\n"},
		{"relay mechanism unknown", "version: 1\nrelay:\n  auth: {users-file: u, mechanisms: [cram-md5]}\n"},
		{"relay permit as a literal", "version: 1\nrelay:\n  permit: true\n"},
		{"relay permit then a word", "version: 1\nrelay:\n  permit: [{if: tls, then: allow}]\n"},
		{"relay dsn from without an address", "version: 1\nrelay:\n  dsn: {from: nobody}\n"},
		{"relay free space in words", "version: 1\nrelay:\n  queue: {min-free-space: five percent}\n"},
		{"relay key misspelt", "version: 1\nrelay:\n  networs: []\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := load(filepath.Join(t.TempDir(), "policy.yaml"), []byte(c.policy)); err == nil {
				t.Fatalf("the loader accepts it, so the schema must too:\n%s", c.policy)
			}
			if err := validate(t, []byte(c.policy)); err == nil {
				t.Errorf("the schema accepts:\n%s", c.policy)
			}
		})
	}
}

// corpusPolicy is a policy found in the repository, with the files next
// to it.
type corpusPolicy struct {
	where string
	dir   string // where to write files, "" for none
	files map[string][]byte
	data  []byte
}

// repositoryPolicies gathers every policy the repository holds: every
// YAML file (the examples), every member of a txtar archive ending in
// .yaml, with the archive's other files next to it (the engine's golden
// cases), every Go string literal that starts with "version: 1", the
// complete YAML blocks of the generated docs, and the loader's fuzz corpus.
// Which of them are policies the loader decides.
func repositoryPolicies(t *testing.T) []corpusPolicy {
	t.Helper()
	var out []corpusPolicy
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && path != repoRoot {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out = append(out, corpusPolicy{where: path, dir: filepath.Dir(path), data: b})
		case ".txtar":
			a, err := txtar.ParseFile(path)
			if err != nil {
				return err
			}
			for _, m := range a.Files {
				if !strings.HasSuffix(m.Name, ".yaml") {
					continue
				}
				p := corpusPolicy{where: path + ":" + m.Name, data: m.Data, files: map[string][]byte{}}
				for _, f := range a.Files {
					p.files[f.Name] = f.Data
				}
				out = append(out, p)
			}
		case ".go":
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return nil // a file someone is editing; the build reports it
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "version: 1") {
					out = append(out, corpusPolicy{where: fset.Position(lit.Pos()).String(), data: []byte(s)})
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		b, err := d.render()
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllStringSubmatch(string(b), -1) {
			p := corpusPolicy{where: d.name + " block " + strconv.Itoa(i+1), data: []byte(m[1]), files: map[string][]byte{}}
			for _, ref := range fileRef.FindAllStringSubmatch(m[1], -1) {
				p.files[ref[1]] = []byte("x\n")
			}
			out = append(out, p)
		}
	}
	fuzz, _ := filepath.Glob(filepath.Join(repoRoot, "policies", "testdata", "fuzz", "FuzzParse", "*"))
	for _, f := range fuzz {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) == 2 && strings.HasPrefix(lines[1], "[]byte(") {
			if s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")); err == nil {
				out = append(out, corpusPolicy{where: f, data: []byte(s)})
			}
		}
	}
	return out
}

// TestRepositoryPoliciesValidate: every policy in the repository that the
// loader accepts validates; an editor must never mark a valid policy.
func TestRepositoryPoliciesValidate(t *testing.T) {
	accepted, golden, literals := 0, 0, 0
	for _, p := range repositoryPolicies(t) {
		dir := p.dir
		if dir == "" {
			dir = t.TempDir()
			for name, b := range p.files {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		if load(filepath.Join(dir, "policy.yaml"), p.data) != nil {
			continue // meant to fail, or needs what the test around it sets up
		}
		accepted++
		if strings.Contains(p.where, filepath.Join("engine", "testdata")) {
			golden++
		}
		if strings.Contains(p.where, ".go:") {
			literals++
		}
		if err := validate(t, p.data); err != nil {
			t.Errorf("%s loads but does not validate:\n%s\n%v", p.where, p.data, err)
		}
	}
	t.Logf("%d policies the loader accepts: %d engine golden archives, %d Go literals", accepted, golden, literals)
	// The sources must not silently dry up.
	if golden < 30 || literals < 50 || accepted < 100 {
		t.Errorf("only %d accepted policies (%d golden, %d literals): the corpus was lost", accepted, golden, literals)
	}
}

// literalCandidates are values tried at every setting by
// TestSchemaNoStricterPerSetting: literals of every kind, right and wrong,
// in several YAML types.
var literalCandidates = []string{
	`true`, `false`, `"true"`, `True`, `yes`, `null`, `NULL`, `0`, `1`, `2`, `5`, `25`, `100`, `-1`, `0x10`, `1.0`, `1.2`, `"1.2"`, `1.4`,
	`1e3`, `"5"`, `"+5"`, `300`, `90s`, `"5m"`, `0s`, `"-0"`, `2d`, `1d12h`, `0d`, `3s`, `1h`, `1.5h`, `16KiB`, `"16 kib"`,
	`10MB`, `512`, `1GiB`, `2GiB`, `optional`, `require`, `disable`, `requir`, `ipv4_only`, `ipv6_then_ipv4`, `defer`,
	`allow`, `system`, `custom`, `static`, `memory`, `"redis://127.0.0.1:6379/0"`, `"REDIS://127.0.0.1:6379"`,
	`"redis://:pw@127.0.0.1:6379"`, `mx`, `local`, `r1`, `"'mx'"`, `mta.example.org`, `MTA.Example.ORG.`,
	`"mta.example.org.."`, `"mta example org"`, `_dmarc.example`, `"-a.example"`, `""`, `~`, `.`, `"192.0.2.1"`,
	`"2001:db8::1"`, `"[192.0.2.1]"`, `" 192.0.2.1 "`, `"::ffff:192.0.2.1"`, `[]`, `[192.0.2.1, "2001:db8::1"]`,
	`[a, b]`, `[mta.example.org]`, `[1]`, `[~]`, `[[a]]`, `{}`, `{a: 1}`, `"udp://127.0.0.1:53"`,
	`[udp://127.0.0.1:53, "tls://192.0.2.53:853#dns.example.net"]`, `"tls://192.0.2.53:853"`, `"*.google.com"`,
	`zone.txt`, `100/1m`, `10/m`, `{expr: 'true'}`, `{expr: true}`, `{expr: 5}`, `{expr: '"x.example"'}`,
	`{expr: 'rcpt_domain'}`, `{expr: '["192.0.2.1"]'}`, `{expr: '"5m"'}`, `{expr: ''}`, `{expr: 'true', x: 1}`,
	`{file: list.txt}`, `{env: X}`, `{url: 'redis://127.0.0.1:6379'}`,
	`{url: 'redis://127.0.0.1:6379', password: {env: REDIS_PW}, cluster: true, lease-ttl: 30s}`,
	`{url: 'redis://127.0.0.1:6379', password: pw}`, `{url: memory}`,
	`{r2: {type: relay, address: r2.example}}`, `{r2: {type: mx}}`, `{r2: {type: mx, port: 25}}`, `{mx: {type: mx}}`,
	`{r2: {type: relay}}`, `{r2: {type: local, description: ~}}`,
	`{r2: {type: relay, address: '[2001:db8::1]', port: "587", protocol: lmtp, implicit-tls: "true", auth: {username: u, secret: {env: S}}, description: x}}`,
	`{r2: {type: relay, address: 10, auth: {username: 1, secret: s3cret}}}`,
	`{r2: {type: relay, address: r.example, auth: {username: u, secret: {env: A, file: b}}}}`,
	`{r2: {type: relay, address: 'r.example:25'}}`, `{2: {type: relay, address: r.example}}`,
	`{google: ["*.google.com"], x: ~, y: mx.example, z: 1.5}`, `{g: ['*.com']}`, `{bad name: [a]}`,
	`{l: [a, b], f: {file: list.txt}, n: ~, s: one, i: 7}`, `{l: {file: ''}}`,
	`[{name: a, rate: 1/s}]`, `[{name: 1, rate: "5/1m"}]`, `[{name: a, rate: " 5 / m "}]`,
	`[{name: a, key: [mx, meta.tenant], concurrency: 2, match: 'mx == ""'}]`, `[{name: a, key: site, concurrency: "3"}]`,
	`[{name: a}]`, `[{name: a, rate: 1/s, enable: true}]`, `[{name: a, key: "meta[x]", rate: 1/s}]`,
	`{r2: {type: relay, address: null, auth: {username: ~, secret: Null}}}`, `{r2: {type: relay, address: r.example, auth: {username: u, secret: {file: ~}}}}`,
	`{l: {file: null}, m: [null, ~, 1]}`, `[{name: null, rate: 1/s}]`, `[{name: a, rate: 0/s}]`, `[{name: a, rate: 1/0s}]`, `[{name: a, concurrency: 0}]`, `[{name: a, rate: 1/s, match: true}]`,
}

// TestSchemaNoStricterPerSetting writes every candidate, as a literal and
// as the then and else of rules, at every setting: whatever the loader accepts, the schema must
// accept.
func TestSchemaNoStricterPerSetting(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte("a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "policy.yaml")
	accepted, refusedBoth, lenient := 0, 0, 0
	for _, f := range policies.Fields() {
		forms := literalCandidates
		if f.IsValue() {
			for _, c := range literalCandidates {
				forms = append(forms, "[{if: 'retry_num > 0', then: "+c+"}, {else: "+c+"}]")
			}
			forms = append(forms, "[{if: true, then: "+literalCandidates[0]+"}]", "[{else: mx}, {if: 'true', then: mx}]")
		}
		for _, c := range forms {
			policy := "version: 1\n" + nest(f.Path, c)
			switch {
			case f.Path == "routing.route":
				policy += "  routes: {r1: {type: relay, address: r1.example}}\n"
			case !strings.HasPrefix(f.Path, "routing."):
				policy += "routing:\n  routes: {r1: {type: relay, address: r1.example}}\n"
			}
			loaded := load(name, []byte(policy)) == nil
			valid := validate(t, []byte(policy)) == nil
			switch {
			case loaded && !valid:
				t.Errorf("%s: the loader accepts %s, the schema does not:\n%s", f.Path, c, policy)
			case loaded:
				accepted++
			case valid:
				lenient++
			default:
				refusedBoth++
			}
		}
	}
	t.Logf("%d accepted by both, %d refused by both, %d refused by the loader only", accepted, refusedBoth, lenient)
	if accepted < 500 || refusedBoth < 2000 {
		t.Errorf("%d accepted and %d refused by both: the candidates no longer exercise the settings", accepted, refusedBoth)
	}
}

// TestKeyDriftFails: a mapping whose keys differ from the loader's stops
// the generator instead of writing a schema that refuses a valid key.
func TestKeyDriftFails(t *testing.T) {
	g := &schemaGen{defs: obj()}
	if err := g.probeKeys(); err != nil {
		t.Fatal(err)
	}
	known := g.keys["throttle"]
	props := map[string]*object{}
	for _, k := range known[1:] {
		props[k] = obj()
	}
	if _, err := g.closed("throttle", props); err == nil || !strings.Contains(err.Error(), known[0]) {
		t.Errorf("a missing key %q: %v", known[0], err)
	}
	props[known[0]] = obj()
	if _, err := g.closed("throttle", props); err != nil {
		t.Errorf("all keys: %v", err)
	}
	props["burst"] = obj()
	if _, err := g.closed("throttle", props); err == nil || !strings.Contains(err.Error(), "burst") {
		t.Errorf("an extra key: %v", err)
	}
}

// TestLiteralOfUnknownType: a setting type the generator does not know
// fails the generation rather than being left unchecked.
func TestLiteralOfUnknownType(t *testing.T) {
	_, err := literalOf(policies.Field{Path: "x.y", Type: "colour (red or blue)"})
	if err == nil {
		t.Fatal("an unknown type was given a schema")
	}
}

// scalarTemplates place a YAML string (@@) at each place that reads one
// scalar or list item. The loader reads the text; the fuzz target below
// checks that the patterns accept every text it accepts.
var scalarTemplates = []string{
	"hostname: @@\n",
	"ip-strategy: {ehlo-hostname: @@}\n",
	"ip-strategy: {source-ips: [@@]}\n",
	"ip-strategy: {lookup: @@}\n",
	"tls: {starttls: @@, min-version: @@, allow-invalid-certs: @@}\n",
	"tls: {timeouts: {handshake: @@}}\n",
	"limits: {mx: @@}\n",
	"limits: {max-file-size: @@}\n",
	"limits: {expressions: {max-size: @@}}\n",
	"limits: {store: @@}\n",
	"limits: {store: {url: @@}}\n",
	"limits: {on-store-error: @@}\n",
	"limits: {throttles: [{name: a, rate: @@}]}\n",
	"limits: {throttles: [{name: @@, concurrency: 1, key: [@@]}]}\n",
	"limits: {sites: {s: [@@]}}\n",
	"local-domains: [@@]\n",
	"lists: {l: [@@]}\n",
	"routing: {routes: {r: {type: relay, address: @@, port: @@}}}\n",
	"routing: {routes: {r: {type: relay, address: r.example, auth: {username: @@, secret: {env: @@}}}}}\n",
	"routing: {route: @@, routes: {r1: {type: relay, address: r1.example}}}\n",
	"dns: {resolver: @@, servers: [@@], timeout: @@, tcp-on-error: @@}\n",
	"dns: {zone-file: @@, attempts: @@}\n",
	"relay: {listeners: [{name: @@, address: '127.0.0.1:25'}]}\n",
	"relay: {listeners: [{name: a, address: @@}]}\n",
	"relay: {listeners: [{name: a, address: '127.0.0.1:25', mode: @@, tls: {cert: @@, key: k}}]}\n",
	"relay: {listeners: [{name: a, address: '127.0.0.1:25', proxy-protocol: {trusted: [@@]}}]}\n",
	"relay: {networks: [@@]}\n",
	"relay: {auth: {mechanisms: @@}}\n",
	"relay: {queue: {min-free-space: @@}}\n",
	"relay: {dsn: {from: @@}}\n",
}

// withScalar renders template with s at every @@: as a YAML string, or,
// when plain, as YAML would read s written unquoted (null, 123, true),
// where it can be.
func withScalar(template, s string, plain bool) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("version: 1\n"+template), &n); err != nil {
		return nil, err
	}
	var set func(*yaml.Node)
	set = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && n.Value == "@@" {
			n.Value, n.Tag, n.Style = s, "!!str", yaml.DoubleQuotedStyle
			if plain {
				n.Tag, n.Style = "", 0
			}
		}
		for _, c := range n.Content {
			set(c)
		}
	}
	set(&n)
	return yaml.Marshal(&n)
}

// FuzzScalarsNoStricter: a string the loader accepts at any scalar place
// is accepted by the schema.
func FuzzScalarsNoStricter(f *testing.F) {
	for _, s := range []string{"5m", " 1d-0s ", "10/m", "1/.5h", "16 KiB", "+7", "192.0.2.1", " ::1 ", "mta.example.org.", "\u212aelvin.example",
		"require", "1.2", "true", "memory", "rediss://a:1,b:2/0", "udp://127.0.0.1:53", "tls://[::1]:853#dns.example", "*.google.com",
		"meta.tenant", "A_B", "[192.0.2.1]", "r1", "0", "null", "~", "0x1F", "1e3", "2001-12-14", ".inf",
		"127.0.0.1:25", "[::1]:0", "10.0.0.0/8", " ::ffff:192.0.2.0/120 ", "5%", " 2.5 % ", "submissions", "MAILER-DAEMON@{hostname}",
		"Mail Delivery System <postmaster@{hostname}>", "plain"} {
		f.Add(s)
	}
	dir := f.TempDir()
	name := filepath.Join(dir, "policy.yaml")
	f.Fuzz(func(t *testing.T, s string) {
		for _, tmpl := range scalarTemplates {
			for _, plain := range []bool{false, true} {
				policy, err := withScalar(tmpl, s, plain)
				if err != nil {
					continue
				}
				if load(name, policy) != nil {
					continue
				}
				if err := validate(t, policy); err != nil {
					t.Errorf("the loader accepts %q, the schema does not:\n%s\n%v", s, policy, err)
				}
			}
		}
	})
}

// FuzzPoliciesNoStricter: a whole policy the loader accepts validates.
func FuzzPoliciesNoStricter(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, "examples", "*", "policy.yaml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, c := range literalCandidates[len(literalCandidates)-20:] {
		f.Add([]byte("version: 1\nlimits:\n  throttles: " + c + "\n"))
	}
	f.Add([]byte("version: 1\nrouting:\n  routes:\n    r: {type: relay, address: '[192.0.2.1]', port: '25'}\n  route: [{if: 'true', then: r}, {else: {expr: '\"mx\"'}}]\n"))
	dir := f.TempDir()
	name := filepath.Join(dir, "policy.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if load(name, data) != nil {
			return
		}
		if err := validate(t, data); err != nil {
			var ve *jsonschema.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("the loader accepts a policy YAML cannot decode: %v\n%s", err, data)
			}
			t.Errorf("the loader accepts it, the schema does not:\n%s\n%v", data, err)
		}
	})
}

// FuzzSyntaxNoStricter: the duration, rate and size patterns match every
// text policies.ParseDuration, ParseRate and ParseSize accept (Unicode
// spaces around, signs, days, a period without a count...).
func FuzzSyntaxNoStricter(f *testing.F) {
	for _, s := range []string{"5m", "\u00a01d-0s\u3000", "-0", "+0", "0d", "1.5h", ".5µs", "10/m", "1/.5h", " 3 / d ",
		"16 KiB", "+7", "-0", "1gb", "512B"} {
		f.Add(s)
	}
	durationRE, rateRE, sizeRE := regexp.MustCompile(duration), regexp.MustCompile(rate), regexp.MustCompile(size)
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := policies.ParseDuration(s); err == nil && !durationRE.MatchString(s) {
			t.Errorf("ParseDuration accepts %q, the pattern does not", s)
		}
		if _, err := policies.ParseRate(s); err == nil && !rateRE.MatchString(s) {
			t.Errorf("ParseRate accepts %q, the pattern does not", s)
		}
		if _, err := policies.ParseSize(s); err == nil && !sizeRE.MatchString(s) {
			t.Errorf("ParseSize accepts %q, the pattern does not", s)
		}
	})
}
