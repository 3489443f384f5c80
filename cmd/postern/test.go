package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/policytest"
	"github.com/postern-mta/postern/internal/textsafe"
)

// testOptions are test's flags.
type testOptions struct {
	policy     string
	verbose    bool
	runPattern string
}

// testFlags builds the FlagSet test parses (and completion and the man
// page describe).
func testFlags() (*flag.FlagSet, *testOptions) {
	fs := newFlagSet("test")
	o := &testOptions{}
	fs.StringVar(&o.policy, "c", "", "policy `file`")
	fs.BoolVar(&o.verbose, "v", false, "list passing cases too")
	fs.StringVar(&o.runPattern, "run", "", "run only the cases whose name matches this `regexp`")
	return fs, o
}

// cmdTest runs dry-run cases files against a policy and reports like go
// test: a "--- FAIL:" block per failing case (each fact: got, want, and
// the trace steps behind it), one ok/FAIL line per file, exit 1 when any
// case failed.
func cmdTest(args []string, stdout, stderr io.Writer) int {
	fs, o := testFlags()
	fs.SetOutput(stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if o.policy == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "postern test: -c POLICY and at least one cases file are required")
		fs.Usage()
		return exitUsage
	}
	var match *regexp.Regexp
	if o.runPattern != "" {
		var err error
		if match, err = regexp.Compile(o.runPattern); err != nil {
			fmt.Fprintf(stderr, "postern test: -run: %s\n", escErr(err))
			return exitUsage
		}
	}
	eng, code := loadEngine(o.policy, engine.Options{}, stderr)
	if eng == nil {
		return code
	}
	defer eng.Close()
	failed := false
	for _, file := range fs.Args() {
		if !testFile(eng, o.policy, file, match, o.verbose, stdout) {
			failed = true
		}
	}
	if failed {
		fmt.Fprintln(stdout, "FAIL")
		return exitFailed
	}
	return exitOK
}

// testFile runs one cases file and reports whether every case passed.
func testFile(eng *engine.Engine, policy, file string, match *regexp.Regexp, verbose bool, out io.Writer) bool {
	cases, err := policytest.ReadFile(file)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(out, textsafe.Escape(line))
		}
		fmt.Fprintf(out, "FAIL\t%s\tcases file does not load\n", textsafe.Escape(file))
		return false
	}
	ran, failures := 0, 0
	for i := range cases {
		c := &cases[i]
		if match != nil && !match.MatchString(c.Name) {
			continue
		}
		ran++
		res, err := policytest.Run(context.Background(), eng, c)
		if err != nil {
			failures++
			fmt.Fprintf(out, "--- FAIL: %s (%s:%d)\n    %s\n", textsafe.Escape(c.Name), textsafe.Escape(file), c.Line, escErr(err))
			continue
		}
		if res.Passed() {
			if verbose {
				fmt.Fprintf(out, "--- PASS: %s\n", textsafe.Escape(c.Name))
			}
			continue
		}
		failures++
		writeFailure(out, policy, file, res)
	}
	switch {
	case failures > 0:
		fmt.Fprintf(out, "FAIL\t%s\t%d of %d %s failed\n", textsafe.Escape(file), failures, ran, plural(ran, "case", "cases"))
		return false
	case ran == 0:
		fmt.Fprintf(out, "ok  \t%s\tno cases match -run\n", textsafe.Escape(file))
	default:
		fmt.Fprintf(out, "ok  \t%s\t%d %s\n", textsafe.Escape(file), ran, plural(ran, "case", "cases"))
	}
	return true
}

// writeFailure prints a failing case: each fact that did not hold with
// the trace steps that decided it, then the dry-run that shows it all.
func writeFailure(out io.Writer, policy, file string, res *policytest.Result) {
	c := res.Case
	fmt.Fprintf(out, "--- FAIL: %s (%s:%d)\n", textsafe.Escape(c.Name), textsafe.Escape(file), c.Line)
	for _, p := range res.Problems {
		where := ""
		if p.Rcpt != "" {
			where = textsafe.Escape(p.Rcpt) + ": "
		}
		if p.Host != "" {
			where += "host " + textsafe.Escape(p.Host) + ": "
		}
		fmt.Fprintf(out, "    %s%s\n        got:  %s\n        want: %s\n", where, p.Fact, textsafe.Escape(p.Got), textsafe.Escape(p.Want))
		for _, e := range p.Trace {
			ctx := ""
			if e.Context != "" {
				ctx = " [" + textsafe.Escape(e.Context) + "]"
			}
			fmt.Fprintf(out, "        %s%s\n", strings.ReplaceAll(engine.TraceLine(e), "\n", "\n        "), ctx)
		}
	}
	fmt.Fprintf(out, "    rerun: %s\n", textsafe.Escape(c.Command(policy)))
}
