// Command postern checks, dry-runs and applies outbound mail policies.
//
//	postern check   -c POLICY [--print-defaults]
//	postern dry-run -c POLICY --from ADDR --to ADDR ... [--var NAME=VALUE] [--format text|json]
//	postern version
//
// Exit status: 0 when the command did its job, 1 when the policy does not
// load, 2 for bad usage.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses shared by every subcommand.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitPartial = 3 // send: some recipients were not delivered
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "dry-run":
		return cmdDryRun(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return cmdVersion(stdout)
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "postern: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: postern COMMAND [flags]

commands:
  check -c POLICY [--print-defaults]   load, type-check and lint a policy
  dry-run -c POLICY --from A --to B    show what the policy decides for a message, and why
  version                              version, Go version, module versions

Run "postern COMMAND -h" for the flags of a command.
`)
}
