package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/internal/policytest"
	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/policies"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// messageFlags are the flags dry-run and send share.
type messageFlags struct {
	policy string
	from   string
	to     listFlag
	vars   listFlag
	meta   listFlag
	size   int
	format string
	// formatHelp is the usage of --format, formats the formats a
	// command takes.
	formatHelp string
	formats    []string
}

func (m *messageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.policy, "c", "", "policy `file`")
	fs.StringVar(&m.from, "from", "", "envelope sender `address` (\"\" or <> for the null sender)")
	fs.Var(&m.to, "to", "recipient `address` (repeat for several)")
	fs.Var(&m.vars, "var", "set a recipient-phase variable: `NAME=VALUE` (repeatable), e.g. --var retry_num=2 --var last_error=tls")
	fs.Var(&m.meta, "meta", "set meta[K]: `K=V` (repeatable)")
	fs.IntVar(&m.size, "size", 0, "message size in `bytes`")
	fs.StringVar(&m.format, "format", "text", m.formatHelp)
}

// message builds the engine message from the flags.
func (m *messageFlags) message() (engine.Message, error) {
	msg := engine.Message{From: m.from, To: m.to, Size: m.size}
	if msg.From == "<>" {
		msg.From = ""
	}
	if m.policy == "" {
		return msg, errors.New("-c POLICY is required")
	}
	if len(m.to) == 0 {
		return msg, errors.New("at least one --to is required")
	}
	if err := m.checkFormat(); err != nil {
		return msg, err
	}
	return msg, m.apply(&msg)
}

// checkFormat refuses a --format the command does not write.
func (m *messageFlags) checkFormat() error {
	if !slices.Contains(m.formats, m.format) {
		return fmt.Errorf("--format %q: use %s", m.format, strings.Join(m.formats, " or "))
	}
	return nil
}

// apply sets the --size, --meta and --var flags on msg, over what it
// has.
func (m *messageFlags) apply(msg *engine.Message) error {
	if m.size > 0 {
		msg.Size = m.size
	}
	for _, kv := range m.meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--meta %q: write K=V", kv)
		}
		meta := make(map[string]string, len(msg.Meta)+1)
		maps.Copy(meta, msg.Meta)
		meta[k] = v
		msg.Meta = meta
	}
	for _, kv := range m.vars {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--var %q: write NAME=VALUE", kv)
		}
		if err := setVar(msg, name, value); err != nil {
			return fmt.Errorf("--var %s: %w", name, err)
		}
	}
	return nil
}

// setVar sets a recipient-phase variable on msg; the envelope and meta
// have flags of their own.
func setVar(msg *engine.Message, name, value string) error {
	switch name {
	case "sender", "sender_domain":
		return errors.New("use --from to set the sender")
	case "rcpt", "rcpt_domain", "recipients":
		return errors.New("use --to to set the recipients")
	case "meta":
		return errors.New("use --meta K=V")
	}
	var ve *engine.VarError
	if err := msg.SetVar(name, value); errors.As(err, &ve) {
		return errors.New(ve.Reason) // the caller names the variable
	} else if err != nil {
		return err
	}
	return nil
}

// dryRunOptions are dry-run's flags.
type dryRunOptions struct {
	messageFlags
	seed      string
	noDNS     bool
	brief     bool
	envelopes string
}

// dryRunFlags builds the FlagSet dry-run parses (and completion and the
// man page describe).
func dryRunFlags() (*flag.FlagSet, *dryRunOptions) {
	fs := newFlagSet("dry-run")
	o := &dryRunOptions{messageFlags: messageFlags{formatHelp: "output `format`: text, json, or jsonl (one decision per line)", formats: dryRunFormats}}
	o.register(fs)
	fs.StringVar(&o.seed, "seed", "", "shuffle equal-preference MX hosts with this seed (an integer), so runs repeat")
	fs.BoolVar(&o.noDNS, "no-dns", false, "stop before any DNS lookup: recipient-phase decisions only")
	fs.BoolVar(&o.brief, "brief", false, "one line per recipient: route, outcome, first host and address, TLS in effect, source address")
	fs.StringVar(&o.envelopes, "envelopes", "", "decide every envelope of a corpus (JSON Lines `file`, or - for standard input) instead of --from/--to")
	return fs, o
}

func cmdDryRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, o := dryRunFlags()
	fs.SetOutput(stderr)
	mf := &o.messageFlags
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern dry-run: unexpected argument %q\n", textsafe.Escape(fs.Arg(0)))
		return exitUsage
	}
	var msg engine.Message
	var err error
	if o.envelopes != "" {
		err = batchFlags(mf)
	} else {
		msg, err = mf.message()
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
		return exitUsage
	}
	var seedN *uint64
	if o.seed != "" {
		n, err := strconv.ParseUint(o.seed, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "postern dry-run: --seed %q is not a non-negative integer\n", o.seed)
			return exitUsage
		}
		seedN = &n
	}
	opts := func() []engine.EvalOption {
		opts := []engine.EvalOption{engine.WithTrace()}
		if seedN != nil {
			// A source of its own for each message: a corpus gives the
			// same answers whatever its order.
			opts = append(opts, engine.WithRand(policytest.Rand(*seedN)))
		}
		if o.noDNS {
			opts = append(opts, engine.WithoutDNS())
		}
		return opts
	}
	eng, code := loadEngine(mf.policy, engine.Options{}, stderr)
	if eng == nil {
		return code
	}
	defer eng.Close()
	write := func(msg engine.Message, dec *engine.Decision) error {
		switch {
		case o.brief:
			return writeBrief(stdout, msg, dec)
		case mf.format == "json":
			return dec.WriteJSON(stdout)
		case mf.format == "jsonl":
			return dec.WriteJSONLine(stdout)
		}
		return dec.WriteText(stdout)
	}
	if o.envelopes != "" {
		separate := mf.format == "text" && !o.brief
		return dryRunCorpus(eng, mf, o.envelopes, stdin, opts, write, separate, stdout, stderr)
	}
	dec, err := eng.Evaluate(context.Background(), msg, opts()...)
	if err == nil {
		err = write(msg, dec)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
		return exitFailed
	}
	return exitOK
}

// batchFlags checks the flags of a dry-run over a corpus: the envelopes
// come from the file, and decisions one after the other need a format
// that separates them.
func batchFlags(mf *messageFlags) error {
	switch {
	case mf.policy == "":
		return errors.New("-c POLICY is required")
	case mf.from != "" || len(mf.to) > 0:
		return errors.New("--envelopes gives the senders and recipients: leave out --from and --to")
	case mf.format == "json":
		return errors.New("--format json writes one decision; with --envelopes use --format jsonl (one decision per line)")
	}
	return mf.checkFormat()
}

// dryRunCorpus decides every envelope of a corpus in order and writes
// each decision (text decisions are separated by a blank line). A line
// that is not an envelope is reported with its number on stderr, and the
// rest goes on; the exit status is then 1.
func dryRunCorpus(eng *engine.Engine, mf *messageFlags, path string, stdin io.Reader, opts func() []engine.EvalOption,
	write func(engine.Message, *engine.Decision) error, separate bool, stdout, stderr io.Writer) int {
	in, name := stdin, "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
			return exitFailed
		}
		defer f.Close()
		in, name = f, path
	}
	r := corpus.NewReader(in, name)
	bad, n := 0, 0
	for {
		env, err := r.Next()
		switch {
		case errors.Is(err, io.EOF):
			if bad > 0 {
				fmt.Fprintf(stderr, "postern dry-run: %d %s of %s not decided\n", bad, plural(bad, "line", "lines"), textsafe.Escape(name))
				return exitFailed
			}
			return exitOK
		case errors.As(err, new(*corpus.LineError)):
			fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
			bad++
			continue
		case err != nil:
			fmt.Fprintf(stderr, "postern dry-run: %s: %s\n", textsafe.Escape(name), escErr(err))
			return exitFailed
		}
		msg, err := env.Message()
		if err == nil {
			err = mf.apply(&msg)
		}
		var dec *engine.Decision
		if err == nil {
			dec, err = eng.Evaluate(context.Background(), msg, opts()...)
		}
		if err != nil {
			fmt.Fprintf(stderr, "postern dry-run: %s:%d: %s\n", textsafe.Escape(name), r.Line(), escErr(err))
			bad++
			continue
		}
		if n++; n > 1 && separate {
			fmt.Fprintln(stdout)
		}
		if err := write(msg, dec); err != nil {
			fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
			return exitFailed
		}
	}
}

// loadEngine loads the policy, printing its problems; nil means exit with
// the returned code.
func loadEngine(path string, opts engine.Options, stderr io.Writer) (*engine.Engine, int) {
	set, err := policies.LoadFile(path, policies.Options{})
	if err != nil {
		printLoadError(stderr, path, err)
		return nil, exitFailed
	}
	for _, w := range set.Warnings {
		fmt.Fprintln(stderr, w)
	}
	eng, err := engine.New(set, opts)
	if err != nil {
		printLoadError(stderr, path, err)
		return nil, exitFailed
	}
	for _, w := range eng.Warnings() {
		fmt.Fprintln(stderr, w)
	}
	return eng, exitOK
}

// printLoadError prints why a policy did not load: one *expr.Error a line
// (its Error method escapes what it quotes; only its caret snippet adds
// lines, each starting with " | "), then the count. Any other error is one
// escaped line.
func printLoadError(stderr io.Writer, path string, err error) {
	var list policies.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintf(stderr, "%s: %d %s\n", textsafe.Escape(path), len(list), plural(len(list), "error", "errors"))
		return
	}
	fmt.Fprintf(stderr, "postern: %s\n", escErr(err))
}
