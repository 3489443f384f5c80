package main

import (
	"bufio"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/postern-mta/postern/internal/corpus"
	"github.com/postern-mta/postern/internal/mtalog"
	"github.com/postern-mta/postern/internal/textsafe"
)

// envelopesOptions are envelopes' flags.
type envelopesOptions struct {
	postfixLogs, eximLogs listFlag
	instance              string
}

// envelopesFlags builds the FlagSet envelopes parses (and completion and
// the man page describe).
func envelopesFlags() (*flag.FlagSet, *envelopesOptions) {
	fs := newFlagSet("envelopes")
	o := &envelopesOptions{}
	fs.Var(&o.postfixLogs, "postfix-log", "read Postfix's mail log `FILE` (repeatable)")
	fs.Var(&o.eximLogs, "exim-log", "read Exim's main log `FILE` (repeatable)")
	fs.StringVar(&o.instance, "postfix-instance", "", "keep only the Postfix lines of this syslog_name (`NAME`, e.g. postfix-out), for hosts running several instances")
	return fs, o
}

// cmdEnvelopes writes a corpus (docs/corpus.md) from a Postfix or Exim
// log: one JSON line per message, for diff and dry-run --envelopes.
func cmdEnvelopes(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, o := envelopesFlags()
	fs.SetOutput(stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	var format mtalog.Format
	files := []string(o.postfixLogs)
	switch {
	case len(o.postfixLogs) > 0 && len(o.eximLogs) > 0:
		fmt.Fprintln(stderr, "postern envelopes: --postfix-log and --exim-log: one MTA's log at a time")
		return exitUsage
	case len(o.postfixLogs) > 0:
		format = mtalog.Postfix
	case len(o.eximLogs) > 0:
		format, files = mtalog.Exim, o.eximLogs
	default:
		fmt.Fprintln(stderr, "postern envelopes: say which MTA wrote the log: --postfix-log FILE or --exim-log FILE")
		fs.Usage()
		return exitUsage
	}
	if o.instance != "" && format != mtalog.Postfix {
		fmt.Fprintln(stderr, "postern envelopes: --postfix-instance is for Postfix logs")
		return exitUsage
	}
	files = append(files, fs.Args()...)
	stdinUsed := false
	for _, f := range files {
		if f == "-" {
			if stdinUsed {
				fmt.Fprintln(stderr, `postern envelopes: "-" (standard input) given twice`)
				return exitUsage
			}
			stdinUsed = true
		}
	}

	w := corpus.NewWriter(stdout)
	im := mtalog.NewImporter(format, mtalog.Options{PostfixInstance: o.instance}, func(e corpus.Envelope) error {
		if err := w.Write(e); err != nil {
			return writeError{err}
		}
		return nil
	})
	var names []string
	for _, f := range files {
		name := displayName(f)
		names = append(names, name)
		before := im.Stats()
		if err := readLog(im, f, stdin); err != nil {
			return envelopesFailed(stderr, name, err, w)
		}
		if after := im.Stats(); after.Lines > before.Lines && after.Used == before.Used {
			fmt.Fprintf(stderr, "postern envelopes: warning: %s: no sender, recipient or end-of-message line in its %d %s: is it %s log?\n",
				name, after.Lines-before.Lines, plural(after.Lines-before.Lines, "line", "lines"), article(format))
		}
	}
	if err := im.Close(); err != nil {
		return envelopesFailed(stderr, "", err, w)
	}
	if err := w.Flush(); err != nil {
		return envelopesFailed(stderr, "", writeError{err}, w)
	}
	fmt.Fprintln(stderr, summary(format, im.Stats(), names))
	return exitOK
}

// writeError is an error writing the corpus, told apart from one
// reading the log.
type writeError struct{ err error }

func (e writeError) Error() string { return "writing the corpus: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// envelopesFailed reports err; the envelopes emitted so far are written
// (each line of the corpus is a whole envelope).
func envelopesFailed(stderr io.Writer, name string, err error, w *corpus.Writer) int {
	var we writeError
	if errors.As(err, &we) || name == "" {
		fmt.Fprintf(stderr, "postern envelopes: %s\n", escErr(err))
	} else {
		fmt.Fprintf(stderr, "postern envelopes: %s: %s\n", name, escErr(err))
	}
	_ = w.Flush()
	return exitFailed
}

// readLog reads one file of the log into im: "-" is stdin, and a gzip
// stream (a rotated mail.log.2.gz) is recognised by its magic number.
func readLog(im *mtalog.Importer, file string, stdin io.Reader) error {
	var r io.Reader = stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the caller names the file
			}
			return err
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		return im.Read(zr)
	}
	return im.Read(br)
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return textsafe.Escape(file)
}

func article(f mtalog.Format) string {
	if f == mtalog.Exim {
		return "an Exim"
	}
	return "a Postfix"
}

// summary is the line on stderr after a successful run, e.g.
// "postern envelopes: 1234 envelopes, 2345 recipients from mail.log (12
// queue IDs skipped: no sender line)".
func summary(format mtalog.Format, st mtalog.Stats, names []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "postern envelopes: %d %s, %d %s from %s", st.Envelopes, plural(st.Envelopes, "envelope", "envelopes"),
		st.Recipients, plural(st.Recipients, "recipient", "recipients"), strings.Join(names, ", "))
	id := "queue ID"
	if format == mtalog.Exim {
		id = "message ID"
	}
	var skipped []string
	if st.NoSender > 0 {
		skipped = append(skipped, fmt.Sprintf("%d %s skipped: no sender line", st.NoSender, plural(st.NoSender, id, id+"s")))
	}
	if st.NoRecipients > 0 {
		skipped = append(skipped, fmt.Sprintf("%d without a recipient line", st.NoRecipients))
	}
	if st.Probes > 0 {
		skipped = append(skipped, fmt.Sprintf("%d address-verification %s", st.Probes, plural(st.Probes, "probe", "probes")))
	}
	if st.Unknown > 0 {
		skipped = append(skipped, fmt.Sprintf("%d %s in no log format known", st.Unknown, plural(st.Unknown, "line", "lines")))
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(skipped, "; "))
	}
	return b.String()
}
