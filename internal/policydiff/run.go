package policydiff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/postern-mta/postern/internal/corpus"
)

// Report is the comparison of a whole corpus.
type Report struct {
	Envelopes  int      `json:"envelopes"`
	Recipients int      `json:"recipients"`
	Changed    int      `json:"changed"` // recipients with at least one change
	Changes    []Change `json:"changes"` // by corpus line, then recipient order
	// Errors are the envelopes that could not be compared (a bad line,
	// a variable that does not parse), each with file:line; they count
	// in neither Envelopes nor Recipients.
	Errors []error `json:"-"`
}

// job is one envelope to compare.
type job struct {
	line int
	env  corpus.Envelope
}

// result is what comparing one envelope gave.
type result struct {
	line       int
	recipients int
	changed    int
	changes    []Change
	err        error
}

// Run compares every envelope r reads, with workers goroutines (at least
// one), and returns the report. A line that is not an envelope, or one
// the engine cannot consider, is kept in Report.Errors and the rest goes
// on; only a read error of the corpus itself (or ctx ending) stops it.
func Run(ctx context.Context, d *Differ, r *corpus.Reader, name string, workers int) (*Report, error) {
	workers = max(workers, 1)
	jobs := make(chan job, 4*workers)
	results := make(chan result, 4*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				changes, changed, err := d.Envelope(ctx, j.line, j.env)
				if err != nil {
					err = fmt.Errorf("%s:%d: %w", name, j.line, err)
				}
				results <- result{line: j.line, recipients: len(j.env.To), changed: changed, changes: changes, err: err}
			}
		}()
	}
	rep := &Report{Changes: []Change{}}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for res := range results {
			if res.err != nil {
				rep.Errors = append(rep.Errors, lineError{res.line, res.err})
				continue
			}
			rep.Envelopes++
			rep.Recipients += res.recipients
			rep.Changed += res.changed
			rep.Changes = append(rep.Changes, res.changes...)
		}
	}()
	readErr := feed(ctx, r, jobs, func(err error) { results <- result{line: r.Line(), err: err} })
	close(jobs)
	wg.Wait()
	close(results)
	<-collected
	if readErr != nil {
		return nil, readErr
	}
	// Workers finish out of order: put the changes (stable within an
	// envelope) and the errors back in corpus order.
	slices.SortStableFunc(rep.Changes, func(a, b Change) int { return a.Line - b.Line })
	slices.SortStableFunc(rep.Errors, func(a, b error) int { return a.(lineError).line - b.(lineError).line })
	for i, e := range rep.Errors {
		rep.Errors[i] = e.(lineError).err
	}
	return rep, nil
}

// lineError is an error with the corpus line it is about, for sorting.
type lineError struct {
	line int
	err  error
}

func (e lineError) Error() string { return e.err.Error() }

// feed reads the corpus into jobs; a bad line goes to bad, a read error
// ends it.
func feed(ctx context.Context, r *corpus.Reader, jobs chan<- job, bad func(error)) error {
	for {
		env, err := r.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, new(*corpus.LineError)):
			bad(err)
			continue
		case err != nil:
			return err
		}
		select {
		case jobs <- job{line: r.Line(), env: env}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
