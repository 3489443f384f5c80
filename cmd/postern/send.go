package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
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
)

// maxCAFile bounds --ca-file: a bundle of every public CA is about 200 KiB.
const maxCAFile = 16 << 20

// maxMessage bounds what send reads: a message larger than this is refused
// before anything is connected to.
const maxMessage = 64 << 20

func cmdSend(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf messageFlags
	mf.register(fs)
	caFile := fs.String("ca-file", "", "PEM `file` of CA certificates to trust instead of the system roots")
	requireTLS := fs.Bool("requiretls", false, "ask for REQUIRETLS (RFC 8689): TLS and a verified certificate on every hop")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up on the whole delivery after this `duration`")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postern send -c POLICY --from ADDR --to ADDR [--to ADDR ...] [--var NAME=VALUE ...] [--format text|json] [--ca-file PEM] [FILE.eml | -]")
		fmt.Fprintln(stderr, "Exit status 3 when a recipient was not delivered: temporary, permanent, or local (send has no local store).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
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
	msg.RequireTLS = *requireTLS

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
	if *caFile != "" {
		pem, err := safefile.Read(*caFile, maxCAFile)
		if err != nil {
			fmt.Fprintf(stderr, "postern send: --ca-file: %s\n", escErr(err))
			return exitFailed
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "postern send: --ca-file %s: no PEM certificate in it\n", textsafe.Escape(*caFile))
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
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, err := eng.Deliver(ctx, msg, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "postern send: %s\n", escErr(err))
		return exitFailed
	}
	if mf.format == "json" {
		err = writeResultsJSON(stdout, results)
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

// resultJSON is the JSON form of one recipient's result.
type resultJSON struct {
	Recipient string   `json:"recipient"`
	Status    string   `json:"status"`
	Route     string   `json:"route"`
	Code      int      `json:"code,omitempty"`
	Enhanced  string   `json:"enhanced_code,omitempty"`
	Text      string   `json:"text,omitempty"`
	Class     string   `json:"class,omitempty"`
	Host      string   `json:"host,omitempty"`
	Address   string   `json:"address,omitempty"`
	Source    string   `json:"source,omitempty"`
	Protocol  string   `json:"protocol,omitempty"`
	TLS       *tlsJSON `json:"tls,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Duration  string   `json:"duration"`
	RetryAt   string   `json:"retry_after,omitempty"`
}

type tlsJSON struct {
	Version  string `json:"version"`
	Cipher   string `json:"cipher"`
	Verified string `json:"verified"`
}

func toJSON(r engine.Result) resultJSON {
	j := resultJSON{Recipient: r.Recipient, Status: r.StatusText(), Route: r.Route, Code: r.Code,
		Enhanced: r.Enhanced.String(), Text: r.Text, Host: r.Host, Duration: r.Duration.Round(time.Millisecond).String()}
	if r.Class != "" && r.Class != "none" {
		j.Class = string(r.Class)
	}
	if r.Address.IsValid() {
		j.Address = r.Address.String()
	}
	if r.Source.IsValid() {
		j.Source = r.Source.String()
	}
	if r.Host != "" {
		j.Protocol = r.Protocol.String()
	}
	if r.TLS.Version != 0 {
		j.TLS = &tlsJSON{Version: tlsVersionName(r.TLS.Version), Cipher: tlsCipherName(r.TLS.CipherSuite), Verified: string(r.TLS.Verified)}
	}
	for _, w := range r.Warnings {
		j.Warnings = append(j.Warnings, w.String())
	}
	if !r.RetryAfter.IsZero() {
		j.RetryAt = r.RetryAfter.UTC().Format(time.RFC3339)
	}
	return j
}

func writeResultsJSON(w io.Writer, results []engine.Result) error {
	out := make([]resultJSON, len(results))
	for i, r := range results {
		out[i] = toJSON(r)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// writeResultsText prints one line per recipient. Every string in it is
// escaped (textsafe.Escape, or %q for the server's text and the warnings),
// so a recipient, host or reply with a line feed or a terminal escape
// sequence in it cannot add a line or rewrite the terminal.
func writeResultsText(w io.Writer, results []engine.Result) error {
	esc := textsafe.Escape
	for _, r := range results {
		j := toJSON(r)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", esc(j.Recipient), esc(strings.ToUpper(j.Status)))
		if j.Code != 0 {
			fmt.Fprintf(&b, " %d", j.Code)
			if j.Enhanced != "" {
				fmt.Fprintf(&b, " %s", esc(j.Enhanced))
			}
		}
		if j.Text != "" {
			fmt.Fprintf(&b, " %q", j.Text)
		}
		fmt.Fprintf(&b, " route=%s", orDash(esc(j.Route)))
		if j.Host != "" {
			fmt.Fprintf(&b, " host=%s", esc(j.Host))
		}
		if j.Address != "" {
			fmt.Fprintf(&b, " addr=%s", esc(j.Address))
		}
		if j.TLS != nil {
			fmt.Fprintf(&b, " tls=%s/%s verified=%s", esc(j.TLS.Version), esc(j.TLS.Cipher), esc(j.TLS.Verified))
		} else if j.Host != "" {
			b.WriteString(" tls=none")
		}
		if j.Class != "" {
			fmt.Fprintf(&b, " class=%s", esc(j.Class))
		}
		for _, warn := range j.Warnings {
			fmt.Fprintf(&b, " warning=%q", warn)
		}
		fmt.Fprintf(&b, " in %s\n", j.Duration)
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
