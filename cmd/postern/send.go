package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/safefile"
	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/transport"
)

// maxCAFile bounds --ca-file: a bundle of every public CA is about 200 KiB.
const maxCAFile = 16 << 20

// maxMessage bounds what send reads: a message larger than this is refused
// before anything is connected to.
const maxMessage = 64 << 20

// sendOptions are send's flags.
type sendOptions struct {
	messageFlags
	caFile     string
	requireTLS bool
	timeout    time.Duration
}

// sendFlags builds the FlagSet send parses (and completion and the man
// page describe).
func sendFlags() (*flag.FlagSet, *sendOptions) {
	fs := newFlagSet("send")
	o := &sendOptions{messageFlags: messageFlags{formatHelp: "output `format`: text or json", formats: sendFormats}}
	o.register(fs)
	fs.StringVar(&o.caFile, "ca-file", "", "PEM `file` of CA certificates to trust instead of the system roots")
	fs.BoolVar(&o.requireTLS, "requiretls", false, "ask for REQUIRETLS (RFC 8689): TLS and a verified certificate on every hop")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on the whole delivery after this `duration`")
	return fs, o
}

func cmdSend(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, o := sendFlags()
	fs.SetOutput(stderr)
	mf := &o.messageFlags
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "postern send: one message at a time (got %d files)\n", fs.NArg())
		return exitUsage
	}
	msg, err := mf.message()
	if err != nil {
		fmt.Fprintf(stderr, "postern send: %s\n", escErr(err))
		return exitUsage
	}
	msg.RequireTLS = o.requireTLS

	in, name := stdin, "standard input"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "postern send: %s\n", escErr(err))
			return exitFailed
		}
		defer f.Close()
		in, name = f, fs.Arg(0)
	}
	body, err := io.ReadAll(io.LimitReader(in, maxMessage+1))
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "postern send: reading %s: %s\n", textsafe.Escape(name), escErr(err))
		return exitFailed
	case len(body) > maxMessage:
		fmt.Fprintf(stderr, "postern send: %s is larger than %d MiB\n", textsafe.Escape(name), maxMessage>>20)
		return exitFailed
	case len(bytes.TrimSpace(body)) == 0:
		fmt.Fprintf(stderr, "postern send: %s is empty: give a message (RFC 5322: header, blank line, body)\n", textsafe.Escape(name))
		return exitFailed
	}

	opts := engine.Options{}
	if o.caFile != "" {
		pem, err := safefile.Read(o.caFile, maxCAFile)
		if err != nil {
			fmt.Fprintf(stderr, "postern send: --ca-file: %s\n", escErr(err))
			return exitFailed
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "postern send: --ca-file %s: no PEM certificate in it\n", textsafe.Escape(o.caFile))
			return exitFailed
		}
		opts.RootCAs = pool
	}
	eng, code := loadEngine(mf.policy, opts, stderr)
	if eng == nil {
		return code
	}
	defer eng.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	results, err := eng.Deliver(ctx, msg, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "postern send: %s\n", escErr(err))
		return exitFailed
	}
	if mf.format == "json" {
		err = engine.WriteResultsJSON(stdout, results)
	} else {
		err = writeResultsText(stdout, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "postern send: %s\n", escErr(err))
		return exitFailed
	}
	for _, r := range results {
		if r.StatusText() != "delivered" {
			return exitPartial
		}
	}
	return exitOK
}

// writeResultsText prints one line per recipient. Every string in it is
// escaped (textsafe.Escape, or %q for the server's text and the warnings),
// so a recipient, host or reply with a line feed or a terminal escape
// sequence in it cannot add a line or rewrite the terminal.
func writeResultsText(w io.Writer, results []engine.Result) error {
	esc := textsafe.Escape
	for _, r := range results {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", esc(r.Recipient), esc(strings.ToUpper(r.StatusText())))
		if r.Code != 0 {
			fmt.Fprintf(&b, " %d", r.Code)
			if !r.Enhanced.IsZero() {
				fmt.Fprintf(&b, " %s", esc(r.Enhanced.String()))
			}
		}
		if r.Text != "" {
			fmt.Fprintf(&b, " %q", r.Text)
		}
		fmt.Fprintf(&b, " route=%s", orDash(esc(r.Route)))
		if r.Host != "" {
			fmt.Fprintf(&b, " host=%s", esc(r.Host))
		}
		if r.Address.IsValid() {
			fmt.Fprintf(&b, " addr=%s", esc(r.Address.String()))
		}
		if r.TLS.Enabled() {
			fmt.Fprintf(&b, " tls=%s/%s verified=%s", esc(tls.VersionName(r.TLS.Version)),
				esc(tls.CipherSuiteName(r.TLS.CipherSuite)), esc(string(r.TLS.Verified)))
		} else if r.Host != "" {
			b.WriteString(" tls=none")
		}
		if r.Class != "" && r.Class != transport.ClassNone {
			fmt.Fprintf(&b, " class=%s", esc(string(r.Class)))
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(&b, " warning=%q", warn.String())
		}
		if !r.RetryAfter.IsZero() {
			fmt.Fprintf(&b, " retry_after=%s", r.RetryAfter.UTC().Format(time.RFC3339))
			if r.RetryFrom != "" {
				fmt.Fprintf(&b, " retry_from=%s", r.RetryFrom)
			}
		}
		if r.NotifyDelay {
			b.WriteString(" notify_delay")
		}
		fmt.Fprintf(&b, " in %s\n", r.Duration.Round(time.Millisecond))
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// escErr is err's text for a line of its own on standard error: escaped
// (textsafe.Escape), since it can quote a path, an address or a value
// given on the command line or found in a policy or a server reply.
func escErr(err error) string { return textsafe.Escape(err.Error()) }
