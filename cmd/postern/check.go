package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/policies"
)

// checkOptions are check's flags.
type checkOptions struct {
	file          string
	printDefaults bool
	strict        bool
	format        string
}

// checkFlags builds the FlagSet check parses (and completion and the man
// page describe).
func checkFlags() (*flag.FlagSet, *checkOptions) {
	fs := newFlagSet("check")
	o := &checkOptions{}
	fs.StringVar(&o.file, "c", "", "policy `file` to check (or give it as the argument)")
	fs.BoolVar(&o.printDefaults, "print-defaults", false, "print a complete policy with every setting at its default, and exit")
	fs.BoolVar(&o.strict, "strict", false, "warnings fail the check too (exit 1), for CI")
	fs.StringVar(&o.format, "format", "text", "output `format`: text, or json (one object on standard output, for CI and editors)")
	return fs, o
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs, o := checkFlags()
	fs.SetOutput(stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if !slices.Contains(checkFormats, o.format) {
		fmt.Fprintf(stderr, "postern check: --format %q: want %s\n", o.format, strings.Join(checkFormats, " or "))
		return exitUsage
	}
	switch {
	case fs.NArg() == 1 && o.file == "":
		o.file = fs.Arg(0)
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "postern check: unexpected argument %q\n", textsafe.Escape(fs.Arg(fs.NArg()-1)))
		fs.Usage()
		return exitUsage
	}
	if o.printDefaults {
		out, err := policies.Marshal(policies.Defaults(policies.Options{}))
		if err != nil {
			fmt.Fprintf(stderr, "postern check: %s\n", escErr(err))
			return exitFailed
		}
		_, _ = stdout.Write(out)
		return exitOK
	}
	if o.file == "" {
		fmt.Fprintln(stderr, "postern check: a policy file is required: postern check POLICY")
		fs.Usage()
		return exitUsage
	}
	r := checkPolicy(o.file)
	r.Strict = o.strict
	r.OK = len(r.Errors) == 0 && !(o.strict && len(r.Warnings) > 0)
	if o.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // messages quote <addresses> and -> arrows
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "postern check: %s\n", escErr(err))
			return exitFailed
		}
	} else {
		r.writeText(stdout, stderr)
	}
	if !r.OK {
		return exitFailed
	}
	return exitOK
}

// checkReport is what check found: the JSON of --format json, and what the
// text output is made of.
type checkReport struct {
	File     string         `json:"file"`
	OK       bool           `json:"ok"`
	Strict   bool           `json:"strict,omitempty"`
	Errors   []checkProblem `json:"errors"`
	Warnings []checkProblem `json:"warnings"`

	errText  []string // the errors as the text output prints them
	warnText []string
	plain    bool // the error is not a policy's (a file that is not there): no count
}

// checkProblem is one error or warning, positioned.
type checkProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Setting string `json:"setting,omitempty"`
	Message string `json:"message"`
}

// checkPolicy loads the policy and builds what dry-run, send and an
// embedder build (the resolver reads the zone file, the throttle store is
// made), so that check passes exactly the policies the engine can load.
func checkPolicy(path string) *checkReport {
	r := &checkReport{File: path, Errors: []checkProblem{}, Warnings: []checkProblem{}}
	set, err := policies.LoadFile(path, policies.Options{})
	if err != nil {
		r.addErr(err)
		return r
	}
	r.addWarnings(set.Warnings)
	eng, err := engine.New(set, engine.Options{})
	if err != nil {
		r.addErr(err)
		return r
	}
	defer eng.Close()
	r.addWarnings(eng.Warnings())
	return r
}

func (r *checkReport) addErr(err error) {
	var list policies.ErrorList
	if !errors.As(err, &list) {
		r.Errors = append(r.Errors, checkProblem{File: r.File, Message: err.Error()})
		r.errText = append(r.errText, "postern: "+escErr(err))
		r.plain = true
		return
	}
	for _, e := range list {
		r.Errors = append(r.Errors, checkProblem{File: e.File, Line: e.Line, Column: e.Column, Setting: e.Setting, Message: e.Message + e.Snippet})
		r.errText = append(r.errText, e.Error())
	}
}

func (r *checkReport) addWarnings(ws []*policies.Warning) {
	for _, w := range ws {
		r.Warnings = append(r.Warnings, checkProblem{File: w.File, Line: w.Line, Column: w.Column, Setting: w.Setting, Message: w.Message})
		r.warnText = append(r.warnText, w.String())
	}
}

// writeText prints the problems and the verdict, in order, on one stream:
// standard output when the policy passes, standard error when it fails.
func (r *checkReport) writeText(stdout, stderr io.Writer) {
	w := stdout
	if !r.OK {
		w = stderr
	}
	for _, l := range r.errText {
		fmt.Fprintln(w, l)
	}
	for _, l := range r.warnText {
		fmt.Fprintln(w, l)
	}
	name := textsafe.Escape(r.File)
	nw := len(r.Warnings)
	switch {
	case r.plain:
	case len(r.Errors) > 0:
		fmt.Fprintf(w, "%s: %d %s\n", name, len(r.Errors), plural(len(r.Errors), "error", "errors"))
	case !r.OK:
		fmt.Fprintf(w, "%s: %d %s (--strict: warnings fail)\n", name, nw, plural(nw, "warning", "warnings"))
	case nw > 0:
		fmt.Fprintf(w, "%s: ok (%d %s)\n", name, nw, plural(nw, "warning", "warnings"))
	default:
		fmt.Fprintf(w, "%s: ok\n", name)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
