// Package policytest runs dry-run test cases against a policy: each case
// is a message (sender, recipients, recipient-phase variables, meta, the
// seed that orders equal-preference MX hosts) and the facts its decision
// must show — route, outcome, hosts in order, TLS modes, DANE and MTA-STS
// state, source addresses, EHLO names, limits, throttles, error class.
// `postern test` and the examples' tests call it. The cases file format
// is described in docs/testing.md and docs/cases.schema.json.
package policytest

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/internal/safefile"
	"github.com/postern-mta/postern/internal/suggest"
)

// Case is one dry-run and the facts it must show.
type Case struct {
	Name       string                   `yaml:"name"`
	From       string                   `yaml:"from"`
	To         []string                 `yaml:"to"`
	Vars       map[string]corpus.Scalar `yaml:"vars"`
	Meta       map[string]string        `yaml:"meta"`
	Seed       *uint64                  `yaml:"seed"`
	GroupCount *int                     `yaml:"group_count"`
	Groups     []Facts                  `yaml:"groups"`

	// File and Line locate the case in its file.
	File string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Facts are what the group holding Rcpt must show. A nil field is not
// checked; a list given empty ([]) must be empty.
type Facts struct {
	Rcpt string `yaml:"rcpt"`

	Route            *string           `yaml:"route"`
	RouteType        *string           `yaml:"route_type"`
	Outcome          *string           `yaml:"outcome"`
	ErrorClass       *string           `yaml:"error_class"`
	Temporary        *bool             `yaml:"temporary"`
	Recipients       []string          `yaml:"recipients"`
	Relay            *string           `yaml:"relay"`
	Protocol         *string           `yaml:"protocol"`
	ImplicitTLS      *bool             `yaml:"implicit_tls"`
	Secret           *string           `yaml:"secret"`
	MTASTS           *string           `yaml:"mta_sts"`
	MTASTSRecord     *string           `yaml:"mta_sts_record"`
	MTASTSMode       *string           `yaml:"mta_sts_mode"`
	Hosts            []string          `yaml:"hosts"`
	Skipped          []string          `yaml:"skipped"`
	Throttles        []string          `yaml:"throttles"`
	ThrottleKeys     map[string]string `yaml:"throttle_keys"`
	LimitsMX         *int              `yaml:"limits_mx"`
	LimitsRecipients *int              `yaml:"limits_recipients"`
	Lookups          *int              `yaml:"lookups"`

	// Host names the host the host facts are about; "" is the first
	// host not skipped.
	Host                  string   `yaml:"host"`
	Addresses             []string `yaml:"addresses"`
	IPLookup              *string  `yaml:"ip_lookup"`
	MXSecure              *bool    `yaml:"mx_secure"`
	STARTTLS              *string  `yaml:"starttls"`
	DANE                  *string  `yaml:"dane"`
	DANEActive            *bool    `yaml:"dane_active"`
	TLSRequired           *bool    `yaml:"tls_required"`
	Verify                *string  `yaml:"verify"`
	MinVersion            *string  `yaml:"min_version"`
	AllowInvalidCerts     *bool    `yaml:"allow_invalid_certs"`
	MessagesPerConnection *int     `yaml:"messages_per_connection"`
	EHLO                  []string `yaml:"ehlo"`
	Sources               []string `yaml:"sources"`
}

// maxCasesFile bounds a cases file: a regular file of at most 16 MiB.
const maxCasesFile = 16 << 20

// ReadFile reads a cases file: a YAML list of cases. Unknown keys are
// errors (a misspelt fact must not silently check nothing), and so are a
// case without a name or recipients, and facts about a recipient the case
// does not send to. Errors carry file:line.
func ReadFile(path string) ([]Case, error) {
	data, err := safefile.Read(path, maxCasesFile)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse reads cases from data; file names the source in errors.
func Parse(data []byte, file string) ([]Case, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: no cases: the file is a YAML list of cases", file)
	}
	list := doc.Content[0]
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: the file is a YAML list of cases (- name: ...), not a %s", file, list.Line, kindName(list))
	}
	if len(list.Content) == 0 {
		return nil, fmt.Errorf("%s: no cases", file)
	}
	cases := make([]Case, 0, len(list.Content))
	var errs []error
	for _, node := range list.Content {
		c, err := decodeCase(node, file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cases = append(cases, c)
	}
	return cases, errors.Join(errs...)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.ScalarNode:
		return "scalar"
	}
	return "value"
}

func decodeCase(node *yaml.Node, file string) (Case, error) {
	var c Case
	at := func(n *yaml.Node) string { return file + ":" + strconv.Itoa(n.Line) }
	if err := knownKeys(node, file); err != nil {
		return c, err
	}
	if err := node.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: case: %w", at(node), err)
	}
	c.File, c.Line = file, node.Line
	switch {
	case c.Name == "":
		return c, fmt.Errorf("%s: a case needs a name", at(node))
	case len(c.To) == 0:
		return c, fmt.Errorf("%s: case %q: no recipients (to: [address, ...])", at(node), c.Name)
	}
	for i, f := range c.Groups {
		if f.Rcpt == "" {
			return c, fmt.Errorf("%s: case %q: groups item %d has no rcpt: (the recipient whose group it describes)", at(node), c.Name, i+1)
		}
		if !contains(c.To, f.Rcpt) {
			return c, fmt.Errorf("%s: case %q: groups item %d is about %s, which the case does not send to", at(node), c.Name, i+1, f.Rcpt)
		}
	}
	if _, err := c.Message(); err != nil {
		return c, fmt.Errorf("%s: case %q: %w", at(node), c.Name, err)
	}
	return c, nil
}

// knownKeys refuses a key Case or Facts does not have, at its line: a
// misspelt fact must not silently check nothing.
func knownKeys(node *yaml.Node, file string) error {
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: a case is a mapping (name:, from:, to:, groups:, ...)", file, node.Line)
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		key, value := node.Content[i], node.Content[i+1]
		if !slices.Contains(caseKeys, key.Value) {
			return fmt.Errorf("%s:%d: unknown case key %q%s (keys: %s)", file, key.Line, key.Value,
				suggestion(key.Value, caseKeys), strings.Join(caseKeys, ", "))
		}
		if key.Value != "groups" || value.Kind != yaml.SequenceNode {
			continue
		}
		for _, g := range value.Content {
			if g.Kind != yaml.MappingNode {
				continue // Decode says what is wrong
			}
			for j := 0; j+1 < len(g.Content); j += 2 {
				k := g.Content[j]
				if !slices.Contains(factKeys, k.Value) {
					return fmt.Errorf("%s:%d: unknown fact %q%s (facts: %s)", file, k.Line, k.Value,
						suggestion(k.Value, factKeys), strings.Join(factKeys, ", "))
				}
			}
		}
	}
	return nil
}

// suggestion is ": did you mean X?" for the closest key, or "".
func suggestion(key string, keys []string) string {
	if best := suggest.Closest(key, keys); best != "" {
		return fmt.Sprintf(": did you mean %q?", best)
	}
	return ""
}

// caseKeys and factKeys are the yaml keys of Case and Facts.
var caseKeys, factKeys = yamlKeys(reflect.TypeFor[Case]()), yamlKeys(reflect.TypeFor[Facts]())

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		if k, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Message is the engine's message for the case, as `postern dry-run`
// builds it from --from, --to, --var and --meta ("<>" is the null
// sender).
func (c *Case) Message() (engine.Message, error) {
	env := corpus.Envelope{From: c.From, To: c.To, Vars: c.Vars, Meta: c.Meta}
	return env.Message()
}

// SeedValue is the case's seed, 1 when it gives none.
func (c *Case) SeedValue() uint64 {
	if c.Seed != nil {
		return *c.Seed
	}
	return 1
}

// Command is the case as a `postern dry-run` command line, for failure
// reports: run it to see the whole decision.
func (c *Case) Command(policy string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "postern dry-run -c %s --from %s", shellQuote(policy), shellQuote(c.From))
	for _, to := range c.To {
		fmt.Fprintf(&b, " --to %s", shellQuote(to))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Vars)) {
		fmt.Fprintf(&b, " --var %s", shellQuote(k+"="+string(c.Vars[k])))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Meta)) {
		fmt.Fprintf(&b, " --meta %s", shellQuote(k+"="+c.Meta[k]))
	}
	fmt.Fprintf(&b, " --seed %d", c.SeedValue())
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@._-+=:/,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
