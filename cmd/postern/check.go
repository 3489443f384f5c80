package main

import (
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
	file := fs.String("c", "", "policy `file` to check")
	printDefaults := fs.Bool("print-defaults", false, "print a complete policy with every setting at its default, and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern check -c POLICY [--print-defaults]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern check: unexpected argument %q\n", fs.Arg(0))
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
		fmt.Fprintln(stderr, "postern check: -c POLICY is required")
		fs.Usage()
		return exitUsage
	}
	// Build what dry-run, send and an embedder build (the resolver reads
	// the zone file, for one), so that check passes exactly the policies
	// the engine can load.
	eng, code := loadEngine(*file, engine.Options{}, stderr)
	if eng == nil {
		return code
	}
	defer eng.Close()
	set := eng.Policy()
	fmt.Fprintf(stdout, "%s: ok", textsafe.Escape(*file))
	if n := len(set.Warnings) + len(eng.Warnings()); n > 0 {
		fmt.Fprintf(stdout, " (%d %s)", n, plural(n, "warning", "warnings"))
	}
	fmt.Fprintln(stdout)
	return exitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
