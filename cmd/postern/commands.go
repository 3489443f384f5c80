package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/expr"
)

// command is one postern command. runIO dispatches on the table of them,
// and usage(), `postern completion` and `postern man` are generated from
// it: they read the FlagSet the command itself parses, so what they say
// cannot drift from what the command takes.
type command struct {
	name    string
	aliases []string // other names runIO accepts (--version)
	short   string   // usage()'s left column: the name and what it most needs
	summary string   // usage()'s right column, and the man page's
	// synopses are the command's forms after "postern " (-h joins them
	// with " | "); notes are lines -h prints after them.
	synopses []string
	notes    []string
	args     operand
	// flags builds the FlagSet the command parses (nil: no flags).
	flags func() *flag.FlagSet
	// enums are the words a flag takes, by flag name; the command refuses
	// others with the same lists.
	enums map[string][]string
	doc   string // the page of docs/ that tells more, if any
	run   func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// operand is what a command takes after its flags.
type operand struct {
	name  string   // "policy file"; "" when it takes nothing
	many  bool     // it takes several
	words []string // the words it takes; nil: a file ("-" for standard input)
}

// Words the --format flags take, declared once: the commands check the
// flag against them, completion and the man page list them.
var (
	checkFormats  = []string{"text", "json"}
	dryRunFormats = []string{"text", "json", "jsonl"}
	diffFormats   = []string{"text", "json"}
	sendFormats   = []string{"text", "json"}
	shells        = []string{"bash", "zsh"}
)

// commands is the table, in usage() order. It is set in init because the
// commands' FlagSets read it for their -h text (a variable initialised
// with it would refer to itself).
var commands []command

func init() {
	commands = []command{
		{name: "check", short: "check POLICY", summary: "load, type-check and lint a policy (--strict, --format json)",
			synopses: []string{"check [-c] POLICY [--strict] [--format text|json]", "check --print-defaults"},
			args:     operand{name: "policy file"}, enums: map[string][]string{"format": checkFormats}, doc: "policy.md",
			flags: func() *flag.FlagSet { fs, _ := checkFlags(); return fs },
			run:   func(args []string, _ io.Reader, stdout, stderr io.Writer) int { return cmdCheck(args, stdout, stderr) }},
		{name: "dry-run", short: "dry-run -c POLICY --from A --to B", summary: "show what the policy decides for a message, and why",
			synopses: []string{"dry-run -c POLICY (--from ADDR --to ADDR [--to ADDR ...] | --envelopes FILE|-) [--var NAME=VALUE ...] [--meta K=V ...] [--size N] [--seed N] [--no-dns] [--brief | --format text|json|jsonl]"},
			enums:    map[string][]string{"format": dryRunFormats, "var": varWords()}, doc: "dry-run.md",
			flags: func() *flag.FlagSet { fs, _ := dryRunFlags(); return fs }, run: cmdDryRun},
		{name: "test", short: "test -c POLICY CASES.yaml...", summary: "run dry-run cases and check their facts, like go test",
			synopses: []string{"test -c POLICY [-v] [-run REGEXP] CASES.yaml [CASES.yaml ...]"},
			args:     operand{name: "cases file", many: true}, doc: "testing.md",
			flags: func() *flag.FlagSet { fs, _ := testFlags(); return fs },
			run:   func(args []string, _ io.Reader, stdout, stderr io.Writer) int { return cmdTest(args, stdout, stderr) }},
		{name: "diff", short: "diff --old A --new B --envelopes F", summary: "every recipient of a corpus whose decision changes, and the rules why",
			synopses: []string{"diff --old OLD.yaml --new NEW.yaml --envelopes FILE|- [--format text|json] [--seed N]"},
			notes:    []string{"Exit status: 0 nothing changed, 4 some decision changed, 1 a policy or part of the corpus did not load, 2 bad usage."},
			enums:    map[string][]string{"format": diffFormats}, doc: "diff.md",
			flags: func() *flag.FlagSet { fs, _ := diffFlags(); return fs }, run: cmdDiff},
		{name: "envelopes", short: "envelopes --postfix-log FILE", summary: "a corpus for diff (JSON Lines) from a Postfix or Exim log",
			synopses: []string{"envelopes (--postfix-log FILE | --exim-log FILE) [FILE ...] [--postfix-instance NAME]"},
			notes: []string{"Writes one JSON line per message of the log to standard output (sender, recipients, size; docs/corpus.md).",
				"The files (those of the flag, then the other arguments) are one log, read in order: give rotated logs oldest",
				"first (mail.log.2.gz mail.log.1 mail.log). \"-\" is standard input; gzip-compressed files are decompressed."},
			args: operand{name: "log file", many: true}, doc: "corpus.md",
			flags: func() *flag.FlagSet { fs, _ := envelopesFlags(); return fs }, run: cmdEnvelopes},
		{name: "send", short: "send -c POLICY --from A --to B [FILE]", summary: "deliver a message for real; one result line per recipient",
			synopses: []string{"send -c POLICY --from ADDR --to ADDR [--to ADDR ...] [--var NAME=VALUE ...] [--format text|json] [--ca-file PEM] [FILE.eml | -]"},
			notes:    []string{"Exit status 3 when a recipient was not delivered: temporary, permanent, or local (send has no local store)."},
			args:     operand{name: "message file"}, enums: map[string][]string{"format": sendFormats, "var": varWords()},
			flags: func() *flag.FlagSet { fs, _ := sendFlags(); return fs }, run: cmdSend},
		{name: "relay", short: "relay -c POLICY --spool DIR", summary: "run the relay daemon: SMTP in, a durable queue, delivery by the policy",
			synopses: []string{"relay -c POLICY --spool DIR [--listen ADDR:PORT ...] [--metrics ADDR:PORT] [--log-format text|json]", "relay reload [--spool DIR]"},
			notes: []string{"Runs until SIGTERM or SIGINT (a graceful stop; a second signal exits at once); SIGHUP reloads the policy.",
				"relay reload asks the running daemon to reload, and prints every error when it keeps the old policy (exit 1).",
				"Exit status: 0 after a clean stop, 1 when the policy or the spool does not load, 2 bad usage."},
			enums: map[string][]string{"log-format": relayFormats}, doc: "relay.md",
			flags: func() *flag.FlagSet { fs, _ := relayFlags(); return fs }, run: cmdRelay},
		{name: "queue", short: "queue VERB [ID ...]", summary: "inspect and change the relay's queue: list, show, flush, hold, release, delete, stats",
			synopses: []string{
				"queue list [--spool DIR] [--json] [--domain D] [--held|--deferred] [--limit N]",
				"queue show ID [--body]",
				"queue flush [ID ... | --domain D | --all] [--offline]",
				"queue hold (ID ... | --domain D) [--offline]",
				"queue release ID ... [--offline]",
				"queue delete ID ... [--bounce] [--offline]",
				"queue stats [--json]",
			},
			notes: []string{"Every verb takes --spool DIR (default " + defaultSpool + ") and asks the daemon through DIR/control.sock.",
				"With no daemon, list, show and stats read the spool files (saying so on standard error); the others refuse unless --offline.",
				"flush with no ID and no --domain flushes every message (as --all); a flushed recipient is due at once.",
				"list --json prints one JSON array of messages; stats --json one object. show --body prints the stored message only.",
				"Exit status: 0 done, 1 the daemon or the spool refused (an ID not queued, no daemon), 2 bad usage."},
			args: operand{name: "action", words: queueVerbs}, doc: "relay.md",
			flags: func() *flag.FlagSet { fs, _ := queueFlags(); return fs }, run: cmdQueue},
		{name: "tlsrpt", short: "tlsrpt --org N --contact A [FILE]", summary: "TLS-RPT (RFC 8460) reports from send --format json results",
			synopses: []string{"tlsrpt --org NAME --contact ADDR [--day YYYY-MM-DD] [RESULTS.json | -]"},
			notes:    []string{"Reads the results of send --format json (arrays or objects, one after the other) and prints the RFC 8460 reports of their tlsrpt records as a JSON array."},
			args:     operand{name: "results file"},
			flags:    func() *flag.FlagSet { fs, _ := tlsrptFlags(); return fs }, run: cmdTLSRPT},
		{name: "completion", short: "completion bash|zsh", summary: "a shell completion script for postern's commands and flags",
			synopses: []string{"completion bash|zsh"},
			args:     operand{name: "shell", words: shells}, doc: "cli.md",
			flags: func() *flag.FlagSet { return newFlagSet("completion") }, run: cmdCompletion},
		{name: "man", short: "man", summary: "this manual page, in roff (man -l docs/postern.1)",
			synopses: []string{"man"}, doc: "cli.md",
			flags: func() *flag.FlagSet { return newFlagSet("man") }, run: cmdMan},
		{name: "version", aliases: []string{"--version", "-version"}, short: "version", summary: "version, Go version, module versions",
			synopses: []string{"version"},
			run:      func(_ []string, _ io.Reader, stdout, _ io.Writer) int { return cmdVersion(stdout) }},
		{name: "help", aliases: []string{"-h", "--help"}, short: "help", summary: "this list of commands",
			synopses: []string{"help"},
			run:      func(_ []string, _ io.Reader, stdout, _ io.Writer) int { usage(stdout); return exitOK }},
	}
}

// lookup returns the command called name (or one of its aliases), nil
// when there is none.
func lookup(name string) *command {
	for i := range commands {
		if c := &commands[i]; c.name == name || slices.Contains(c.aliases, name) {
			return c
		}
	}
	return nil
}

// newFlagSet is an empty FlagSet for the command name whose -h prints the
// command's usage lines from the table, then its flags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		c := lookup(name)
		fmt.Fprintln(fs.Output(), "usage: postern "+strings.Join(c.synopses, " | postern "))
		for _, l := range c.notes {
			fmt.Fprintln(fs.Output(), l)
		}
		fs.PrintDefaults()
	}
	return fs
}

// usage prints the list of commands.
func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: postern COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-36s %s\n", c.short, c.summary)
	}
	b.WriteString("\nRun \"postern COMMAND -h\" for the flags of a command.\n")
	_, _ = io.WriteString(w, b.String())
}

// flagInfo is one flag of a command as completion and the man page show
// it.
type flagInfo struct {
	name  string   // without dashes
	arg   string   // the name of its value ("file"); "" for a boolean flag
	usage string   // its usage text, backquotes removed
	def   string   // its default; "" when it has none worth saying
	words []string // the words it takes; nil for any
	file  bool     // its value is a file
	many  bool     // it may be repeated
}

// dashed is the flag as people write it: -c for a one-letter name,
// --name for the others (the flag package takes both forms).
func (f flagInfo) dashed() string {
	if len(f.name) == 1 {
		return "-" + f.name
	}
	return "--" + f.name
}

// flagInfos returns c's flags in the order of its FlagSet (by name).
func (c *command) flagInfos() []flagInfo {
	if c.flags == nil {
		return nil
	}
	var out []flagInfo
	c.flags().VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		fi := flagInfo{name: f.Name, arg: arg, usage: usage, words: c.enums[f.Name]}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			fi.arg = ""
		}
		if fi.arg != "" && f.DefValue != "" && f.DefValue != "0" {
			fi.def = f.DefValue
		}
		fi.file = strings.EqualFold(fi.arg, "file")
		_, fi.many = f.Value.(*listFlag)
		out = append(out, fi)
	})
	return out
}

// varWords are the words --var takes: NAME= for each variable it sets
// (found by asking setVar, which --var uses), and last_error=WORD for
// each class the engine knows.
func varWords() []string {
	var words []string
	for _, name := range expr.VariablesOf(expr.Recipient) {
		var msg engine.Message
		if name == "last_error" {
			for _, c := range engine.Classes {
				words = append(words, name+"="+string(c))
			}
		} else if setVar(&msg, name, "1") == nil {
			words = append(words, name+"=")
		}
	}
	return words
}
