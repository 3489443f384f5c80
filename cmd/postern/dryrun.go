package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/engine"
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
}

func (m *messageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.policy, "c", "", "policy `file`")
	fs.StringVar(&m.from, "from", "", "envelope sender `address` (\"\" or <> for the null sender)")
	fs.Var(&m.to, "to", "recipient `address` (repeat for several)")
	fs.Var(&m.vars, "var", "set a recipient-phase variable: `NAME=VALUE` (repeatable), e.g. --var retry_num=2 --var last_error=tls")
	fs.Var(&m.meta, "meta", "set meta[K]: `K=V` (repeatable)")
	fs.IntVar(&m.size, "size", 0, "message size in `bytes`")
	fs.StringVar(&m.format, "format", "text", "output `format`: text or json")
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
	if m.format != "text" && m.format != "json" {
		return msg, fmt.Errorf("--format %q: use text or json", m.format)
	}
	for _, kv := range m.meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return msg, fmt.Errorf("--meta %q: write K=V", kv)
		}
		if msg.Meta == nil {
			msg.Meta = map[string]string{}
		}
		msg.Meta[k] = v
	}
	for _, kv := range m.vars {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return msg, fmt.Errorf("--var %q: write NAME=VALUE", kv)
		}
		if err := setVar(&msg, name, value); err != nil {
			return msg, fmt.Errorf("--var %s: %w", name, err)
		}
	}
	return msg, nil
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

func cmdDryRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dry-run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf messageFlags
	mf.register(fs)
	seed := fs.String("seed", "", "shuffle equal-preference MX hosts with this seed (an integer), so runs repeat")
	noDNS := fs.Bool("no-dns", false, "stop before any DNS lookup: recipient-phase decisions only")
	brief := fs.Bool("brief", false, "one line per recipient: route, outcome, first host and address, TLS in effect, source address")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern dry-run -c POLICY --from ADDR --to ADDR [--to ADDR ...] [--var NAME=VALUE ...] [--meta K=V ...] [--size N] [--seed N] [--no-dns] [--brief | --format text|json]")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "postern dry-run: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	msg, err := mf.message()
	if err != nil {
		fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
		return exitUsage
	}
	opts := []engine.EvalOption{engine.WithTrace()}
	if *seed != "" {
		n, err := strconv.ParseUint(*seed, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "postern dry-run: --seed %q is not a non-negative integer\n", *seed)
			return exitUsage
		}
		rng := rand.New(rand.NewPCG(n, n^0x9e3779b97f4a7c15))
		opts = append(opts, engine.WithRand(rng.Uint64))
	}
	if *noDNS {
		opts = append(opts, engine.WithoutDNS())
	}
	eng, code := loadEngine(mf.policy, engine.Options{}, stderr)
	if eng == nil {
		return code
	}
	dec, err := eng.Evaluate(context.Background(), msg, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
		return exitFailed
	}
	switch {
	case *brief:
		err = writeBrief(stdout, msg, dec)
	case mf.format == "json":
		err = dec.WriteJSON(stdout)
	default:
		err = dec.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern dry-run: %s\n", escErr(err))
		return exitFailed
	}
	return exitOK
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
