package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/policies"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "policy `file` to check (or give it as the argument)")
	printDefaults := fs.Bool("print-defaults", false, "print a complete policy with every setting at its default, and exit")
	strict := fs.Bool("strict", false, "warnings fail the check too (exit 1), for CI")
	format := fs.String("format", "text", "output `format`: text, or json (one object on standard output, for CI and editors)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern check [-c] POLICY [--strict] [--format text|json] | postern check --print-defaults")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "postern check: --format %q: want text or json\n", *format)
		return exitUsage
	}
	switch {
	case fs.NArg() == 1 && *file == "":
		*file = fs.Arg(0)
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "postern check: unexpected argument %q\n", textsafe.Escape(fs.Arg(fs.NArg()-1)))
		fs.Usage()
		return exitUsage
	}
	if *printDefaults {
		out, err := policies.Marshal(policies.Defaults(policies.Options{}))
		if err != nil {
			fmt.Fprintf(stderr, "postern check: %s\n", escErr(err))
			return exitFailed
		}
		_, _ = stdout.Write(out)
		return exitOK
	}
	if *file == "" {
		fmt.Fprintln(stderr, "postern check: a policy file is required: postern check POLICY")
		fs.Usage()
		return exitUsage
	}
	r := checkPolicy(*file)
	r.Strict = *strict
	r.OK = len(r.Errors) == 0 && !(*strict && len(r.Warnings) > 0)
	if *format == "json" {
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
