package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/postern-mta/postern/internal/textsafe"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// maxResultsInput bounds what tlsrpt reads.
const maxResultsInput = 1 << 30

// maxSeen bounds the records remembered to count each session once (see
// readResults).
const maxSeen = 1 << 16

// tlsrptOptions are tlsrpt's flags.
type tlsrptOptions struct {
	org, contact string
	day          string
}

// tlsrptFlags builds the FlagSet tlsrpt parses (and completion and the
// man page describe).
func tlsrptFlags() (*flag.FlagSet, *tlsrptOptions) {
	fs := newFlagSet("tlsrpt")
	o := &tlsrptOptions{}
	fs.StringVar(&o.org, "org", "", "organization-name of the reports (required)")
	fs.StringVar(&o.contact, "contact", "", "contact-info of the reports: an address at the submitting domain (required)")
	fs.StringVar(&o.day, "day", "", "only the reports of this UTC `day` (YYYY-MM-DD); default: every day the records cover")
	return fs, o
}

// cmdTLSRPT reads delivery results (the JSON of send --format json, or one
// result object a line) and prints the TLS-RPT aggregate reports (RFC 8460
// section 4) their records make: one per policy domain and UTC day, as one
// JSON array.
func cmdTLSRPT(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, o := tlsrptFlags()
	fs.SetOutput(stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if o.org == "" || o.contact == "" {
		fmt.Fprintln(stderr, "postern tlsrpt: --org and --contact are required (they go into every report)")
		fs.Usage()
		return exitUsage
	}
	var only time.Time
	if o.day != "" {
		d, err := time.Parse(time.DateOnly, o.day)
		if err != nil {
			fmt.Fprintf(stderr, "postern tlsrpt: --day %q: want YYYY-MM-DD\n", o.day)
			return exitUsage
		}
		only = d
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "postern tlsrpt: one input at a time")
		return exitUsage
	}
	in, name := stdin, "standard input"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "postern tlsrpt: %s\n", escErr(err))
			return exitFailed
		}
		defer f.Close()
		in, name = f, fs.Arg(0)
	}
	agg := tlsrpt.NewAggregator()
	days := map[time.Time]bool{}
	n, err := readResults(io.LimitReader(in, maxResultsInput), func(r tlsrpt.Result) {
		agg.Add(r)
		days[r.Time.UTC().Truncate(24*time.Hour)] = true
	})
	if err != nil {
		fmt.Fprintf(stderr, "postern tlsrpt: %s: result %d: %s\n", textsafe.Escape(name), n+1, escErr(err))
		return exitFailed
	}
	var reports []*tlsrpt.Report
	sorted := make([]time.Time, 0, len(days))
	for d := range days {
		if only.IsZero() || d.Equal(only) {
			sorted = append(sorted, d)
		}
	}
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	for _, d := range sorted {
		reports = append(reports, agg.Reports(d, o.org, o.contact, true)...)
	}
	if reports == nil {
		reports = []*tlsrpt.Report{}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(reports); err != nil {
		fmt.Fprintf(stderr, "postern tlsrpt: %s\n", escErr(err))
		return exitFailed
	}
	if d := agg.Dropped(); d > 0 {
		fmt.Fprintf(stderr, "postern tlsrpt: %d records did not fit in memory and are missing from the reports\n", d)
	}
	return exitOK
}

// readResults calls add for every TLS-RPT record of the results in r: a
// stream of JSON values, each a result object or an array of them (the
// output of send --format json, concatenated, or one object a line). The
// recipients of one group share their records, so a record is added once
// however many results repeat it: within one array (one send's output),
// and among the last maxSeen records of single objects (one a line): the
// results of one delivery are near each other, and the set stays bounded
// however long the input. It returns how many results it read.
func readResults(r io.Reader, add func(tlsrpt.Result)) (int, error) {
	type result struct {
		TLSRPT []json.RawMessage `json:"tlsrpt"`
	}
	dec := json.NewDecoder(r)
	seen := map[string]bool{}
	n := 0
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return n, err
		}
		var batch []result
		if len(raw) > 0 && raw[0] == '[' || len(seen) > maxSeen {
			clear(seen) // another send's results, or a bound reached
		}
		if len(raw) > 0 && raw[0] == '[' {
			if err := json.Unmarshal(raw, &batch); err != nil {
				return n, err
			}
		} else {
			var one result
			if err := json.Unmarshal(raw, &one); err != nil {
				return n, err
			}
			batch = []result{one}
		}
		for _, res := range batch {
			for _, raw := range res.TLSRPT {
				if seen[string(raw)] {
					continue
				}
				seen[string(raw)] = true
				var rec tlsrpt.Result
				if err := json.Unmarshal(raw, &rec); err != nil {
					return n, fmt.Errorf("tlsrpt record: %w", err)
				}
				add(rec)
			}
			n++
		}
	}
}
