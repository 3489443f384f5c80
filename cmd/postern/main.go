// Command postern checks, dry-runs and applies outbound mail policies, and
// runs the relay daemon that delivers with them.
//
//	postern check   [-c] POLICY [--strict] [--format text|json] | --print-defaults
//	postern dry-run -c POLICY (--from ADDR --to ADDR ... | --envelopes FILE|-) [--var NAME=VALUE] [--brief | --format text|json|jsonl]
//	postern test    -c POLICY [-v] [-run REGEXP] CASES.yaml...
//	postern diff    --old OLD.yaml --new NEW.yaml --envelopes FILE|- [--format text|json]
//	postern envelopes (--postfix-log FILE | --exim-log FILE) [FILE...] > corpus.jsonl
//	postern send    -c POLICY --from ADDR --to ADDR ... [FILE.eml | -]
//	postern relay   -c POLICY --spool DIR [--listen ADDR:PORT ...] [--metrics ADDR:PORT] | reload [--spool DIR]
//	postern queue   list|show|flush|hold|release|delete|stats [--spool DIR] ...
//	postern tlsrpt  --org NAME --contact ADDR [--day YYYY-MM-DD] [RESULTS.json | -]
//	postern completion bash|zsh
//	postern man
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

// runIO runs the command args[0] names, from the table in commands.go.
func runIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "postern: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	if stdin == nil { // run() has none
		stdin = strings.NewReader("")
	}
	return c.run(args[1:], stdin, stdout, stderr)
}

// parseFlags parses a command's flags, before and after its arguments
// (`postern check policy.yaml --strict` as well as `--strict
// policy.yaml`); "--" ends the flags, and what follows it are arguments
// even when they start with "-". fs.Args() are then the arguments, in
// order. done is set when the command must stop with code: -h or --help
// printed the usage (exit 0, as people expect), or the flags were wrong
// (exit 2; the flag package said why).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK, true
			}
			return exitUsage, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			operands = append(operands, rest...) // the flags ended
			break
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
	// Parse once more so that fs.Args() are the arguments.
	if err := fs.Parse(append([]string{"--"}, operands...)); err != nil {
		return exitUsage, true
	}
	return 0, false
}
