// Command postern checks, dry-runs and applies outbound mail policies.
//
//	postern check   [-c] POLICY [--strict] [--format text|json] | --print-defaults
//	postern dry-run -c POLICY (--from ADDR --to ADDR ... | --envelopes FILE|-) [--var NAME=VALUE] [--brief | --format text|json|jsonl]
//	postern test    -c POLICY [-v] [-run REGEXP] CASES.yaml...
//	postern diff    --old OLD.yaml --new NEW.yaml --envelopes FILE|- [--format text|json]
//	postern envelopes (--postfix-log FILE | --exim-log FILE) [FILE...] > corpus.jsonl
//	postern send    -c POLICY --from ADDR --to ADDR ... [FILE.eml | -]
//	postern tlsrpt  --org NAME --contact ADDR [--day YYYY-MM-DD] [RESULTS.json | -]
//	postern version
//
// Exit status: 0 when the command did its job, 1 when the policy does not
// load (or delivery could not be attempted), 2 for bad usage, 3 when send
// left some recipients not delivered, 4 when diff found a changed
// decision; test exits 1 when a case fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Exit statuses shared by every subcommand.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitPartial = 3 // send: some recipients were not delivered
)

func main() {
	// The Redis client (throttle store) logs its connection failures to
	// stderr by itself, unescaped and beside postern's own output; those
	// failures reach the results instead (limits.on-store-error).
	redis.SetLogger(quietRedis{})
	os.Exit(runIO(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// quietRedis drops the Redis client's own log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func run(args []string, stdout, stderr io.Writer) int {
	return runIO(args, nil, stdout, stderr)
}

func runIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "dry-run":
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		return cmdDryRun(args[1:], stdin, stdout, stderr)
	case "test":
		return cmdTest(args[1:], stdout, stderr)
	case "diff":
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		return cmdDiff(args[1:], stdin, stdout, stderr)
	case "envelopes":
		return cmdEnvelopes(args[1:], stdin, stdout, stderr)
	case "send":
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		return cmdSend(args[1:], stdin, stdout, stderr)
	case "tlsrpt":
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		return cmdTLSRPT(args[1:], stdin, stdout, stderr)
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
  check POLICY                         load, type-check and lint a policy (--strict, --format json)
  dry-run -c POLICY --from A --to B    show what the policy decides for a message, and why
  test -c POLICY CASES.yaml...         run dry-run cases and check their facts, like go test
  diff --old A --new B --envelopes F   every recipient of a corpus whose decision changes, and the rules why
  envelopes --postfix-log FILE         a corpus for diff (JSON Lines) from a Postfix or Exim log
  send -c POLICY --from A --to B [FILE] deliver a message for real; one result line per recipient
  tlsrpt --org N --contact A [FILE]    TLS-RPT (RFC 8460) reports from send --format json results
  version                              version, Go version, module versions

Run "postern COMMAND -h" for the flags of a command.
`)
}

// parseFlags parses a command's flags. done is set when the command must
// stop with code: -h or --help printed the usage (exit 0, as people
// expect), or the flags were wrong (exit 2; the flag package said why).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		return exitOK, true
	}
	return exitUsage, true
}
