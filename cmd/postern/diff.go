package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/internal/jsonout"
	"github.com/postern-mta/postern/internal/policydiff"
	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/policies"
)

// exitChanged is diff's status when a decision changed.
const exitChanged = 4

// diffOptions are diff's flags.
type diffOptions struct {
	oldPath, newPath string
	envelopes        string
	format           string
	seed             uint64
}

// diffFlags builds the FlagSet diff parses (and completion and the man
// page describe).
func diffFlags() (*flag.FlagSet, *diffOptions) {
	fs := newFlagSet("diff")
	o := &diffOptions{}
	fs.StringVar(&o.oldPath, "old", "", "the policy in force (`file`); its dns section gives the one resolver both are evaluated with")
	fs.StringVar(&o.newPath, "new", "", "the edited policy (`file`)")
	fs.StringVar(&o.envelopes, "envelopes", "", "the corpus: JSON Lines, one envelope per line (`file`, or - for standard input)")
	fs.StringVar(&o.format, "format", "text", "output `format`: text, or json (one object)")
	fs.Uint64Var(&o.seed, "seed", 1, "seeds the shuffle of equal-preference MX hosts, the same under both policies")
	return fs, o
}

// cmdDiff evaluates a corpus of envelopes under two policies against one
// resolver and reports every recipient whose decision changes.
func cmdDiff(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, o := diffFlags()
	fs.SetOutput(stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	switch {
	case o.oldPath == "" || o.newPath == "" || o.envelopes == "":
		fmt.Fprintln(stderr, "postern diff: --old, --new and --envelopes are required")
		fs.Usage()
		return exitUsage
	case !slices.Contains(diffFormats, o.format):
		fmt.Fprintf(stderr, "postern diff: --format %q: want %s\n", o.format, strings.Join(diffFormats, " or "))
		return exitUsage
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "postern diff: unexpected argument %q\n", textsafe.Escape(fs.Arg(0)))
		return exitUsage
	}
	oldEng, code := loadEngine(o.oldPath, engine.Options{}, stderr)
	if oldEng == nil {
		return code
	}
	defer oldEng.Close()
	// One resolver, one cache: DNS cannot make a difference of its own.
	newEng, code := loadEngine(o.newPath, engine.Options{Resolver: oldEng.Resolver()}, stderr)
	if newEng == nil {
		return code
	}
	defer newEng.Close()
	if dnsDiffers(oldEng.Policy(), newEng.Policy()) {
		fmt.Fprintf(stderr, "postern diff: note: %s's dns section differs; both policies are evaluated with %s's resolver\n",
			textsafe.Escape(o.newPath), textsafe.Escape(o.oldPath))
	}
	in, name := stdin, "standard input"
	if o.envelopes != "-" {
		f, err := os.Open(o.envelopes)
		if err != nil {
			fmt.Fprintf(stderr, "postern diff: %s\n", escErr(err))
			return exitFailed
		}
		defer f.Close()
		in, name = f, o.envelopes
	}
	d := &policydiff.Differ{Old: oldEng, New: newEng, Seed: o.seed}
	rep, err := policydiff.Run(context.Background(), d, corpus.NewReader(in, name), name, runtime.GOMAXPROCS(0))
	if err != nil {
		fmt.Fprintf(stderr, "postern diff: %s: %s\n", textsafe.Escape(name), escErr(err))
		return exitFailed
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(stderr, "postern diff: %s\n", escErr(e))
	}
	if o.format == "json" {
		err = writeDiffJSON(stdout, rep)
	} else {
		err = writeDiffText(stdout, rep)
	}
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "postern diff: %s\n", escErr(err))
		return exitFailed
	case len(rep.Errors) > 0:
		fmt.Fprintf(stderr, "postern diff: %d %s of %s could not be compared\n", len(rep.Errors), plural(len(rep.Errors), "line", "lines"), textsafe.Escape(name))
		return exitFailed
	case rep.Changed > 0:
		return exitChanged
	}
	return exitOK
}

// dnsDiffers reports whether the two policies describe different
// resolvers (the new one's is not used).
func dnsDiffers(a, b *policies.Set) bool {
	x, y := a.DNS, b.DNS
	x.ZoneFileAt, y.ZoneFileAt = policies.Pos{}, policies.Pos{} // where it is written does not matter
	return !reflect.DeepEqual(x, y)
}

// writeDiffText prints the summary line, then one block per change: the
// envelope and recipient, the field, old -> new, and the step that
// decided each side.
func writeDiffText(w io.Writer, rep *policydiff.Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s, %d %s, %d changed\n", rep.Envelopes, plural(rep.Envelopes, "envelope", "envelopes"),
		rep.Recipients, plural(rep.Recipients, "recipient", "recipients"), rep.Changed)
	for _, c := range rep.Changes {
		where := "line " + strconv.Itoa(c.Line)
		if c.ID != "" {
			where += " (" + textsafe.Escape(c.ID) + ")"
		}
		where += ": " + textsafe.Escape(c.Recipient) + ": " + c.Field
		if len(c.At) > 0 {
			at := make([]string, len(c.At))
			for i, p := range c.At {
				at[i] = textsafe.Escape(p.String())
			}
			where += " at " + strings.Join(at, ", ")
		}
		fmt.Fprintf(&b, "%s: %s -> %s\n", where, shown(c.Old), shown(c.New))
		for _, side := range []struct {
			name string
			e    *policies.TraceEntry
		}{{"old", c.OldRule}, {"new", c.NewRule}} {
			if side.e != nil {
				fmt.Fprintf(&b, "    %s: %s\n", side.name, strings.ReplaceAll(engine.TraceLine(*side.e), "\n", "\n         "))
			}
		}
		if b.Len() > 64<<10 {
			if _, err := io.WriteString(w, b.String()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shown is a value as the text report prints it: escaped, "" for empty.
func shown(v string) string {
	if v == "" {
		return `""`
	}
	return textsafe.Escape(v)
}

// writeDiffJSON writes the report as one object, a change at a time: a
// report of a large corpus is never held as one JSON text.
func writeDiffJSON(w io.Writer, rep *policydiff.Report) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `{"envelopes":%d,"recipients":%d,"changed":%d,"changes":[`, rep.Envelopes, rep.Recipients, rep.Changed)
	for i := range rep.Changes {
		data, err := jsonout.Marshal(&rep.Changes[i])
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(data)
	}
	bw.WriteString("]}\n")
	return bw.Flush()
}
