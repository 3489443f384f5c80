// Command gendocs writes docs/policy.md, docs/variables.md and
// docs/policy.schema.json (a JSON Schema, draft 2020-12, for editors) from
// the definitions the loader and the compiler use — policies.Fields(),
// expr.Variables and expr.Functions — so the reference cannot drift from
// the code. Hand-written prose lives in the templates next to this file.
//
// Some facts are not read from tables but asked of the loader itself: which
// later-phase variables a setting accepts anyway (it compiles a probe
// policy per setting and variable), the text of typical load errors, and
// whether every expression of the operator cheat sheet compiles. A change in
// the loader therefore shows up as a change in the generated files, which
// internal/gendocs/gendocs_test.go compares with the committed ones.
//
// Usage:
//
//	go run ./internal/gendocs -out docs
package main

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/policies"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

func main() {
	out := flag.String("out", "docs", "`directory` to write policy.md, variables.md and policy.schema.json into")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: gendocs [-out DIR]")
		os.Exit(2)
	}
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

// docs are the generated files, by name.
var docs = []struct {
	name   string
	render func() ([]byte, error)
}{
	{"policy.md", renderPolicy},
	{"variables.md", renderVariables},
	{"policy.schema.json", renderSchema},
}

// write renders every document into dir.
func write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range docs {
		b, err := d.render()
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, d.name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// execute runs template name (a file of templates/) with data.
func execute(name string, data any) ([]byte, error) {
	t, err := template.New(name).Funcs(template.FuncMap{
		"cell":  cell,
		"code":  code,
		"codes": codes,
	}).ParseFS(templateFS, "templates/"+name)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// code renders s as inline code, choosing a fence longer than any run of
// backticks inside it.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// codes renders a list as comma-separated inline code.
func codes(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = code(s)
	}
	return strings.Join(out, ", ")
}

// phases are the evaluation phases: the delivery phases in order, then
// the relay's session phase.
var phases = []expr.Phase{expr.Recipient, expr.Host, expr.Connection, expr.Session}

// phaseOf parses a Field's Phase; ok is false for "literal".
func phaseOf(name string) (expr.Phase, bool) {
	for _, p := range phases {
		if p.String() == name {
			return p, true
		}
	}
	return 0, false
}

// loadErrors loads policy (named policy.yaml) and returns what `postern
// check` would print: one problem a line, snippets under them.
func loadErrors(policy string) (string, error) {
	_, err := policies.Parse("policy.yaml", []byte(policy), policies.Options{Hostname: "mta.example.org"})
	var list policies.ErrorList
	if !errors.As(err, &list) {
		return "", fmt.Errorf("expected this policy to fail to load:\n%s", policy)
	}
	return list.Error(), nil
}

// extra is a setting that accepts variables of a later phase than its own.
type extra struct {
	Setting string
	Phase   string
	Vars    []string
}

// probeLiteral is a valid literal for each Value setting whose default is
// not written as one.
var probeLiteral = map[string]string{
	"hostname":      "mta.example.org",
	"routing.route": "mx",
	"relay.permit":  "false",
}

// probeExpr returns a boolean expression that uses variable v.
func probeExpr(v expr.Variable) (string, error) {
	switch v.Type {
	case "string":
		return v.Name + ` == ""`, nil
	case "int":
		return v.Name + " == 0", nil
	case "bool":
		return v.Name, nil
	case "list of strings", "map of strings":
		return "len(" + v.Name + ") == 0", nil
	}
	return "", fmt.Errorf("no probe for variable %s of type %q", v.Name, v.Type)
}

// nest writes value at dotted path as block YAML.
func nest(path, value string) string {
	var b strings.Builder
	keys := strings.Split(path, ".")
	for i, k := range keys {
		b.WriteString(strings.Repeat("  ", i) + k + ":")
		if i < len(keys)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString(" " + value + "\n")
	return b.String()
}

// accepts asks the loader whether policy loads. A phase error means no;
// any other error means the probe itself is wrong, which is reported.
func accepts(policy string) (bool, error) {
	_, err := policies.Parse("probe.yaml", []byte(policy), policies.Options{Hostname: "mta.example.org"})
	if err == nil {
		return true, nil
	}
	var list policies.ErrorList
	if errors.As(err, &list) && len(list) == 1 && strings.Contains(list[0].Message, "is not known when") {
		return false, nil
	}
	return false, fmt.Errorf("probe policy failed for another reason than a phase error: %v\n%s", err, policy)
}

// extras finds, by asking the loader, the settings that accept variables
// of a later phase than their own, and the throttle match that does.
func extras() ([]extra, error) {
	var out []extra
	probe := func(setting string, phase expr.Phase, build func(cond string) string) error {
		e := extra{Setting: setting, Phase: phase.String()}
		for _, v := range expr.Variables {
			if v.KnownIn(phase) {
				continue
			}
			cond, err := probeExpr(v)
			if err != nil {
				return err
			}
			ok, err := accepts("version: 1\n" + build(cond))
			if err != nil {
				return err
			}
			if ok {
				e.Vars = append(e.Vars, v.Name)
			}
		}
		if len(e.Vars) > 0 {
			out = append(out, e)
		}
		return nil
	}
	for _, f := range policies.Fields() {
		p, ok := phaseOf(f.Phase)
		if !f.IsValue() || !ok {
			continue
		}
		lit, ok := probeLiteral[f.Path]
		if !ok {
			lit = f.Default
		}
		err := probe(f.Path, p, func(cond string) string {
			return nest(f.Path, fmt.Sprintf("[{if: '%s', then: %s}]", cond, lit))
		})
		if err != nil {
			return nil, err
		}
	}
	err := probe(throttleMatch, expr.Recipient, func(cond string) string {
		return nest("limits.throttles", fmt.Sprintf("[{name: probe, key: [rcpt_domain], rate: 1/1s, match: '%s'}]", cond))
	})
	return out, err
}

// throttleMatch names the match of a throttle checked per group.
const throttleMatch = "limits.throttles[].match"

// section is one table of docs/policy.md: the settings under one
// top-level key.
type section struct {
	Title    string
	Fields   []policies.Field
	Examples []policies.Field // the fields that have an Example
}

// sections groups the fields by their first path element; settings
// without a dot form the "Top level" section. Order is file order.
func sections() []*section {
	var out []*section
	byName := map[string]*section{}
	for _, f := range policies.Fields() {
		name, _, nested := strings.Cut(f.Path, ".")
		if !nested {
			name = "Top level"
		}
		s := byName[name]
		if s == nil {
			s = &section{Title: name}
			byName[name] = s
			out = append(out, s)
		}
		s.Fields = append(s.Fields, f)
		if f.Example != "" {
			s.Examples = append(s.Examples, f)
		}
	}
	return out
}

// defaultCell renders a Field's Default: YAML as code, a description
// ("the machine's host name", "(required)") as text.
func defaultCell(d string) string {
	if isDescription(d) {
		return cell(d)
	}
	return cell(code(d))
}

// settingsOf lists the Value settings evaluated in phase p.
func settingsOf(p expr.Phase) []string {
	var out []string
	for _, f := range policies.Fields() {
		if f.IsValue() && f.Phase == p.String() {
			out = append(out, f.Path)
		}
	}
	return out
}

// literalSettings lists the settings that cannot depend on the message.
func literalSettings() []string {
	var out []string
	for _, f := range policies.Fields() {
		if _, ok := phaseOf(f.Phase); !ok {
			out = append(out, f.Path)
		}
	}
	return out
}

// policyErrorsExample is a policy with typical mistakes, loaded to show
// the loader's real messages.
const policyErrorsExample = `version: 1
routing:
  route:
    - if: in_list("microsoft", rcpt_domain)
      then: relay-eu
    - else: mx
tls:
  starttls: requir
limits:
  throttels: []
`

// relayExample is a relay block with rules that take permission away.
const relayExample = `version: 1
relay:
  listeners:
    - name: mta
      address: 127.0.0.1:10025
    - name: submission
      address: 0.0.0.0:587
      mode: submission
      tls: {cert: /etc/postern/tls.crt, key: /etc/postern/tls.key}
  networks: [127.0.0.0/8, "::1/128"]
  auth:
    users-file: /etc/postern/relay-users
  permit:
    # The billing application sends only as its own domain.
    - if: authenticated_as == "billing" && sender_domain != "billing.example.org"
      then: false
    # Nothing is relayed to the retired domain.
    - if: rcpt_domain == "old.example.org"
      then: false
`

// relayGuardExample is a relay block the open-relay guard refuses.
const relayGuardExample = `version: 1
relay:
  listeners:
    - name: mta
      address: 0.0.0.0:25
  networks: [192.0.2.0/24, 0.0.0.0/0]
  permit:
    - if: sender_domain == "example.org"
      then: true
`

// renderPolicy builds docs/policy.md.
func renderPolicy() ([]byte, error) {
	errs, err := loadErrors(policyErrorsExample)
	if err != nil {
		return nil, err
	}
	type row struct{ Path, Type, Phase, Default, Doc string }
	type sectionData struct {
		Title    string
		Rows     []row
		Examples []policies.Field
	}
	var secs []sectionData
	for _, s := range sections() {
		sd := sectionData{Title: s.Title, Examples: s.Examples}
		for _, f := range s.Fields {
			sd.Rows = append(sd.Rows, row{Path: cell(code(f.Path)), Type: cell(f.Type), Phase: f.Phase,
				Default: defaultCell(f.Default), Doc: cell(f.Doc)})
		}
		secs = append(secs, sd)
	}
	type phaseData struct {
		Name     string
		Settings []string
	}
	var ph []phaseData
	for _, p := range phases {
		ph = append(ph, phaseData{Name: p.String(), Settings: settingsOf(p)})
	}
	ex, err := extras()
	if err != nil {
		return nil, err
	}
	var throttleExtras []string
	for _, e := range ex {
		if e.Setting == throttleMatch {
			throttleExtras = e.Vars
		}
	}
	guardErrs, err := loadErrors(relayGuardExample)
	if err != nil {
		return nil, err
	}
	return execute("policy.md.tmpl", map[string]any{
		"RelayPolicy":    relayExample,
		"GuardPolicy":    relayGuardExample,
		"GuardErrors":    guardErrs,
		"Sections":       secs,
		"Phases":         ph,
		"Literal":        literalSettings(),
		"ThrottleKeys":   codes(policies.ThrottleKeys),
		"ThrottleExtras": throttleExtras,
		"ErrorsPolicy":   policyErrorsExample,
		"Errors":         errs,
	})
}

// cheat is one line of the operator cheat sheet: an expression, which must
// compile as a boolean in the connection phase (every variable available),
// and what it means.
type cheat struct {
	Expr, Meaning string
}

// cheatSheet is compiled by renderVariables, so a mistake in it fails
// `make docs` instead of misleading a reader.
var cheatSheet = []struct {
	Group string
	Lines []cheat
}{
	{"Comparison and logic", []cheat{
		{`rcpt_domain == "example.com"`, "equality (`!=` for inequality); strings compare exactly, case-sensitively"},
		{`size > 10 * 1000 * 1000`, "`<`, `<=`, `>`, `>=` on integers; `+ - * / %` arithmetic"},
		{`retry_num > 0 && last_error == "tls"`, "and (also written `and`)"},
		{`sender == "" || source == "dsn"`, "or (also written `or`)"},
		{`not is_local_domain(rcpt_domain)`, "negation (`!` works too, but a YAML value must not start with `!`)"},
	}},
	{"Strings", []cheat{
		{`mx endsWith ".google.com"`, "suffix; `startsWith` for a prefix"},
		{`last_status contains "4.7.1"`, "substring"},
		{`rcpt matches "^postmaster@"`, "regular expression (Go RE2 syntax)"},
		{`lower(sender) == "alerts@example.org"`, "`lower`, `upper`, `trim` change a string"},
		{`split(mx, ".")[0] == "mx1"`, "`split` makes a list; `[i]` indexes it, `[-1]` is the last element (an index past the end is a run-time error)"},
		{`rcpt == "postmaster@" + rcpt_domain`, "`+` joins strings"},
	}},
	{"Lists and maps", []cheat{
		{`rcpt_domain in ["example.com", "example.net"]`, "membership in a list literal"},
		{`rcpt_domain not in ["example.com", "example.net"]`, "not a member"},
		{`len(recipients) > 50`, "length of a list, map or string"},
		{`any(recipients, {# endsWith "@example.com"})`, "`any`, `all`, `none`, `one` with a predicate; `#` is the element"},
		{`meta.tenant == "acme"`, "a value the embedding MTA passed; `meta[\"tenant\"]` is the same; \"\" when absent"},
	}},
	{"Conditionals", []cheat{
		{`(priority > 0 ? 1 : 5) > retry_num`, "`cond ? a : b`"},
		{`let big = size > 1000000; big && mx_preference > 10`, "`let` names a value for the rest of the expression"},
	}},
}

// renderVariables builds docs/variables.md.
func renderVariables() ([]byte, error) {
	lib := expr.NewLibrary(nil, nil)
	for _, g := range cheatSheet {
		for _, c := range g.Lines {
			spec := expr.Spec{Setting: "cheat sheet", Type: expr.Bool, Phase: expr.Connection}
			if _, err := lib.Compile(c.Expr, spec, expr.Position{File: "cheat sheet", Line: 1, Column: 1}); err != nil {
				return nil, fmt.Errorf("cheat sheet expression %q does not compile: %w", c.Expr, err)
			}
		}
	}
	ex, err := extras()
	if err != nil {
		return nil, err
	}
	phaseErr, err := loadErrors(phaseErrorExample)
	if err != nil {
		return nil, err
	}
	type phaseData struct {
		Name      string
		When      string
		Variables []expr.Variable
		Settings  []string
	}
	sessionErr, err := loadErrors(sessionErrorExample)
	if err != nil {
		return nil, err
	}
	var ph []phaseData
	for _, p := range phases {
		d := phaseData{Name: p.String(), When: phaseWhen[p], Settings: settingsOf(p)}
		for _, v := range expr.Variables {
			if v.Phase == p {
				d.Variables = append(d.Variables, v)
			}
		}
		ph = append(ph, d)
	}
	session := ph[len(ph)-1] // the session phase, apart from delivery
	if session.Name != expr.Session.String() {
		return nil, fmt.Errorf("the last phase is %s, not the session phase", session.Name)
	}
	return execute("variables.md.tmpl", map[string]any{
		"Phases":        ph[:len(ph)-1],
		"Session":       session,
		"SessionShared": expr.SessionVariables,
		"SessionPolicy": sessionErrorExample,
		"SessionError":  sessionErr,
		"Extras":        ex,
		"Functions":     expr.Functions,
		"Limits": map[string]string{"MaxSize": policies.FormatSize(expr.DefaultMaxSize), "MaxDepth": strconv.Itoa(expr.DefaultMaxDepth),
			"MaxSteps": strconv.Itoa(expr.DefaultMaxSteps)},
		"Ceilings":     map[string]string{"MaxSize": policies.FormatSize(expr.CeilingMaxSize), "MaxDepth": strconv.Itoa(expr.CeilingMaxDepth)},
		"Builtins":     "`" + strings.Join(expr.Builtins, "`, `") + "`",
		"Cheats":       cheatSheet,
		"PhasePolicy":  phaseErrorExample,
		"PhaseError":   phaseErr,
		"LanguageLink": "https://expr-lang.org/docs/language-definition",
	})
}

// phaseWhen says when each phase is evaluated.
var phaseWhen = map[expr.Phase]string{
	expr.Recipient:  "once per recipient, before any DNS lookup",
	expr.Host:       "once per MX host or relay, after routing and before the host's addresses are resolved",
	expr.Connection: "once per remote address, after the source address is chosen and before connecting",
	expr.Session:    "once per RCPT command while the relay receives a message over SMTP, before the message is queued",
}

// sessionErrorExample uses a host-phase variable in the session phase.
const sessionErrorExample = `version: 1
relay:
  permit:
    - if: authenticated_as == "" && route == "mx"
      then: false
`

// phaseErrorExample uses a host-phase variable in a recipient-phase
// setting.
const phaseErrorExample = `version: 1
routing:
  route:
    - if: mx endsWith ".google.com"
      then: local
    - else: mx
`
