package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/postern-mta/postern/expr"
	"github.com/postern-mta/postern/internal/safefile"
	"go.yaml.in/yaml/v3"
)

// Error is one problem in a policy, at its position: it prints as
// "file:line:col: setting: message" (see [expr.Error]).
type Error = expr.Error

// ErrorList is every problem found in a policy, sorted by position. Its
// Error method prints one problem a line (snippets indented under them).
type ErrorList []*Error

// Warning is a problem that does not stop a policy from loading: a literal
// secret, a rule that can never be reached, an unused list or route. It
// is not an error; String prints it as "file:line:col: setting: warning:
// message", escaped like an [Error].
type Warning struct {
	File    string
	Line    int
	Column  int
	Setting string
	Message string
}

// String renders the warning on one line.
func (w *Warning) String() string {
	e := Error{File: w.File, Line: w.Line, Column: w.Column, Setting: w.Setting, Message: "warning: " + w.Message}
	return e.Error()
}

// Position is where the warning is.
func (w *Warning) Position() Pos { return Pos{File: w.File, Line: w.Line, Column: w.Column} }

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// sortByPos sorts errors or warnings by position, keeping the order of
// those at the same place.
func sortByPos[T interface{ Position() Pos }](l []T) {
	sort.SliceStable(l, func(i, j int) bool { return before(l[i].Position(), l[j].Position()) })
}

// before orders positions in the same file.
func before(a, b Pos) bool {
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Column < b.Column
}

// Options tune loading.
type Options struct {
	// Hostname is the default of the hostname setting. Empty means the
	// machine's host name (os.Hostname).
	Hostname string
	// MaxSize is the largest policy file LoadFile reads; zero means
	// DefaultMaxPolicySize. (A policy is read before it can say anything
	// about its own bounds, so this one is the caller's.)
	MaxSize int64
}

// DefaultMaxPolicySize is the default of Options.MaxSize: far more than
// any policy needs (long lists belong in {file:} lists).
const DefaultMaxPolicySize = 1 << 20

// maxRules bounds the rules of one setting, counted after YAML aliases
// are expanded: a few hundred bytes of aliases can otherwise make a rule
// list of any length, each rule evaluated for every recipient.
const maxRules = 1000

// LoadFile reads and compiles the policy at path, which must be a regular
// file no larger than opts.MaxSize. On failure the error is an
// [ErrorList] (or an I/O error wrapped with the path).
func LoadFile(path string, opts Options) (*Set, error) {
	max := opts.MaxSize
	if max <= 0 {
		max = DefaultMaxPolicySize
	}
	data, err := safefile.Read(path, max)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	return Parse(path, data, opts)
}

// Parse compiles a policy read from name (used in positions; relative paths
// inside the policy are resolved from name's directory).
func Parse(name string, data []byte, opts Options) (*Set, error) {
	d := &decoder{file: name, dir: filepath.Dir(name), lines: strings.Split(string(data), "\n")}
	if opts.Hostname == "" {
		opts.Hostname = machineHostname()
	}
	s := newDefaultSet(d, opts.Hostname)
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			d.errs = append(d.errs, &Error{File: name, Line: 1, Column: 1, Setting: "version",
				Message: "the policy is empty: start it with `version: 1`"})
			return nil, ErrorList(d.errs)
		}
		return nil, ErrorList{yamlError(name, data, err)}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	d.decode(s, doc)
	if d.aliasErr != nil {
		// What follows the spent budget is noise: empty values in place
		// of what the aliases stood for.
		return nil, ErrorList{d.aliasErr}
	}
	sortByPos(d.errs)
	sortByPos(d.warns)
	if len(d.errs) > 0 {
		return nil, ErrorList(d.errs)
	}
	s.Warnings = d.warns
	return s, nil
}

// Defaults returns the policy every setting of which is at its default.
func Defaults(opts Options) *Set {
	if opts.Hostname == "" {
		opts.Hostname = machineHostname()
	}
	d := &decoder{file: "<defaults>"}
	s := newDefaultSet(d, opts.Hostname)
	s.lib = expr.NewLibrary(nil, nil)
	d.lib = s.lib
	d.compileDefaults(s)
	finishRelay(d, s)
	return s
}

func machineHostname() string {
	h, err := os.Hostname()
	if err != nil || !expr.IsHostname(h) {
		return "localhost"
	}
	return strings.ToLower(h)
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: ...") into a
// positioned error.
func yamlError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if _, e := fmt.Sscanf(n, "%d", &line); e == nil {
				msg = after
			}
		}
	}
	// yaml.v3 reports parser errors at the 0-based line of the construct
	// they are in, and scanner errors 1-based: shift the parser ones.
	for _, p := range yamlParserProblems {
		if line > 0 && msg == p {
			line++
			msg += " (in the construct that starts on this line)"
			break
		}
	}
	if line > 0 {
		lines := bytes.Split(data, []byte("\n"))
		if line <= len(lines) && bytes.ContainsRune(bytes.TrimRight(lines[line-1], "\r"), '\t') {
			msg += ": YAML indents with spaces, never tabs, and this line has a tab"
		}
	}
	return &Error{File: file, Line: line, Column: 1, Message: "YAML syntax: " + msg, Err: err}
}

var yamlParserProblems = []string{
	"did not find expected <document start>", "did not find expected node content",
	"did not find expected key", "did not find expected '-' indicator",
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
}
