// Package corpus reads and writes corpora of message envelopes: JSON
// Lines (one JSON object per line, RFC 8259 objects separated by "\n"),
// each object one message's envelope as the engine sees it. `postern diff`
// and `postern dry-run --envelopes` read them; `postern envelopes` writes
// them from a real MTA's log.
//
// One line:
//
//	{"id":"4Hk2Vb0q1Sz9","from":"alice@example.org","to":["bob@example.com","carol@example.net"],"vars":{"size":"48213","retry_num":"0"},"meta":{"stream":"bulk"}}
//
// from is required ("" is the null sender <>); to is required and not
// empty; id (a queue ID, for reports), vars (recipient-phase variables by
// name, each a string or a number) and meta (strings) are optional.
// Unknown keys are errors, so a misspelt key cannot silently do nothing;
// blank lines are skipped.
package corpus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/postern-mta/postern/engine"
)

// Envelope is one message of a corpus.
type Envelope struct {
	// ID names the message in reports: the queue ID an importer found,
	// or "" (reports then use the line number).
	ID string `json:"id,omitempty"`
	// From is the return path; "" (or "<>") is the null sender.
	From string `json:"from"`
	// To are the recipients, in envelope order.
	To []string `json:"to"`
	// Vars are recipient-phase variables by name (retry_num, last_error,
	// size, queue_name, ...), in their text form.
	Vars map[string]Scalar `json:"vars,omitempty"`
	// Meta are the embedder's values, meta["key"] in expressions.
	Meta map[string]string `json:"meta,omitempty"`
}

// Scalar is a variable's value: read from a JSON string, number or
// boolean, kept as text, written as a string.
type Scalar string

// UnmarshalJSON accepts a string, a number or a boolean.
func (s *Scalar) UnmarshalJSON(data []byte) error {
	switch {
	case len(data) > 0 && data[0] == '"':
		var v string
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		*s = Scalar(v)
	case bytes.Equal(data, []byte("true")), bytes.Equal(data, []byte("false")):
		*s = Scalar(data)
	default:
		var n json.Number
		if err := json.Unmarshal(data, &n); err != nil {
			return fmt.Errorf("a variable is a string, a number or a boolean, not %s", data)
		}
		*s = Scalar(n)
	}
	return nil
}

// Message is the engine's message for the envelope: vars set with
// [engine.Message.SetVar], "<>" read as the null sender.
func (e *Envelope) Message() (engine.Message, error) {
	m := engine.Message{From: e.From, To: e.To, Meta: e.Meta}
	if m.From == "<>" {
		m.From = ""
	}
	for name, v := range e.Vars {
		if err := m.SetVar(name, string(v)); err != nil {
			return m, fmt.Errorf("vars: %w", err)
		}
	}
	return m, nil
}

// maxLine bounds one line (one envelope): 16 MiB holds a message with
// hundreds of thousands of recipients; a file with no newlines at all is
// refused rather than read into memory whole.
const maxLine = 16 << 20

// Reader reads a corpus, one envelope at a time.
type Reader struct {
	name string
	r    *bufio.Reader
	line int
	buf  []byte
}

// NewReader reads the corpus in r; name (a file name, or "-") starts
// every error.
func NewReader(r io.Reader, name string) *Reader {
	return &Reader{name: name, r: bufio.NewReaderSize(r, 64<<10)}
}

// Line is the line number of the envelope Next returned last.
func (r *Reader) Line() int { return r.line }

// LineError is a corpus line that is not an envelope.
type LineError struct {
	File string
	Line int
	Err  error // what is wrong
}

// Error returns "FILE:LINE: what is wrong".
func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

// Unwrap returns what is wrong.
func (e *LineError) Unwrap() error { return e.Err }

// Next returns the next envelope, or io.EOF after the last. A line that
// is not an envelope gives a *LineError, and reading may go on after it
// (the next call reads the next line); any other error is the reader's.
func (r *Reader) Next() (Envelope, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Envelope{}, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		env, err := parse(line)
		if err != nil {
			return Envelope{}, &LineError{File: r.name, Line: r.line, Err: err}
		}
		return env, nil
	}
}

// readLine returns the next line without its newline.
func (r *Reader) readLine() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.r.ReadSlice('\n')
		r.buf = append(r.buf, chunk...)
		if len(r.buf) > maxLine {
			r.line++
			// Skip the rest of the line so reading can go on.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.r.ReadSlice('\n')
			}
			return nil, &LineError{File: r.name, Line: r.line, Err: fmt.Errorf("line longer than %d bytes: one envelope per line", maxLine)}
		}
		switch {
		case err == nil:
			r.line++
			return bytes.TrimSuffix(r.buf, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(r.buf) > 0:
			r.line++
			return r.buf, nil
		default:
			return nil, err
		}
	}
}

// wire is an envelope as read: From is a pointer so a missing "from" is
// told apart from the null sender.
type wire struct {
	ID   string            `json:"id"`
	From *string           `json:"from"`
	To   []string          `json:"to"`
	Vars map[string]Scalar `json:"vars"`
	Meta map[string]string `json:"meta"`
}

func parse(line []byte) (Envelope, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return Envelope{}, fmt.Errorf("not an envelope object: %w (keys: id, from, to, vars, meta)", err)
	}
	if dec.More() {
		return Envelope{}, errors.New("more than one JSON value on the line: one envelope per line")
	}
	switch {
	case w.From == nil:
		return Envelope{}, errors.New(`no "from": give the return path, "" for the null sender`)
	case len(w.To) == 0:
		return Envelope{}, errors.New(`no recipients: "to" is a non-empty list`)
	}
	for i, to := range w.To {
		if to == "" {
			return Envelope{}, fmt.Errorf(`"to" item %d is empty`, i+1)
		}
	}
	return Envelope{ID: w.ID, From: *w.From, To: w.To, Vars: w.Vars, Meta: w.Meta}, nil
}

// Writer writes a corpus, one envelope per line.
type Writer struct {
	w   *bufio.Writer
	enc *json.Encoder
}

// NewWriter writes to w; call Flush at the end.
func NewWriter(w io.Writer) *Writer {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false) // addresses keep their < > & as written
	return &Writer{w: bw, enc: enc}
}

// Write writes one envelope as one line. Keys come in a fixed order (id,
// from, to, vars, meta; vars and meta sorted), so the same envelopes give
// the same bytes.
func (w *Writer) Write(e Envelope) error {
	if e.To == nil {
		e.To = []string{}
	}
	return w.enc.Encode(e) // one line: Encode ends it with "\n"
}

// Flush writes what is buffered.
func (w *Writer) Flush() error { return w.w.Flush() }

// Int is n as a Scalar, for importers.
func Int(n int) Scalar { return Scalar(strconv.Itoa(n)) }
