// Package mtalog turns a real MTA's log into a corpus of envelopes
// (package corpus): one envelope per message, with its sender, its
// recipients (each once, in the order the log first names them) and its
// size, for `postern envelopes`.
//
// It reads two logs:
//
//   - Postfix's, as syslog writes it (RFC 3164 "Nov 24 10:12:01 host
//     postfix/qmgr[123]: ...", RFC 5424 with or without its header,
//     rsyslog's ISO 8601 timestamps) or as Postfix's own maillog_file
//     (postlogd(8)) does. Of Postfix's lines it uses three: the queue
//     manager's "QUEUEID: from=<sender>, size=N, nrcpt=M (queue active)",
//     every delivery agent's "QUEUEID: to=<recipient>, ... status=..."
//     and "QUEUEID: removed", which ends the message.
//   - Exim's main log (the Exim specification, chapter "Log files"), in
//     files or through syslog: the arrival line "ID <= sender ... S=size
//     [for recipients]", the delivery lines "=>", "->", ">>", "*>", "**"
//     and "==", and "ID Completed", which ends the message.
//
// Every other line is skipped. A message is emitted when its end line is
// read, so memory holds only the messages in flight; at the end of the
// input the messages still open (still deferred, say) are emitted too,
// in the order the log first named them. A message whose sender line was
// never seen (the log starts while it was in flight) is counted in
// [Stats] and left out: its envelope is not known.
//
// The addresses are kept as the log writes them (RFC 5321 quoted local
// parts included); "<>" is the null sender, "" in the corpus.
package mtalog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/postern-mta/postern/internal/corpus"
)

// Stats count what a read found.
type Stats struct {
	// Lines is the number of lines read.
	Lines int
	// Used is the number of lines that gave a sender, a recipient or the
	// end of a message. None at all usually means the log is not the
	// format it was read as.
	Used int
	// Unknown is the number of lines in no log format the reader knows
	// (no syslog prefix, no Exim timestamp), or longer than 1 MiB.
	Unknown int
	// Envelopes and Recipients count what was emitted.
	Envelopes, Recipients int
	// NoSender counts the messages left out because their sender line
	// was not in the log (it starts while they were in flight).
	NoSender int
	// NoRecipients counts the messages left out because no recipient
	// line was seen (deleted from the queue before any delivery attempt,
	// or the log ends first).
	NoRecipients int
	// Probes counts Postfix address-verification probes and `sendmail
	// -bv` reports (status=deliverable or undeliverable), left out: they
	// are not mail that was sent.
	Probes int
}

// Format is a log format.
type Format int

// The formats an [Importer] reads.
const (
	Postfix Format = iota + 1
	Exim
)

// String names the MTA: "Postfix", "Exim".
func (f Format) String() string {
	switch f {
	case Postfix:
		return "Postfix"
	case Exim:
		return "Exim"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Options tune an [Importer].
type Options struct {
	// PostfixInstance, when set, keeps only the Postfix lines of that
	// syslog_name (the part of the program name before the first "/",
	// e.g. "postfix-out"), for hosts that run several instances: a
	// message relayed from one instance to another is in the log once
	// per instance.
	PostfixInstance string
}

// Importer reads one log, possibly split in several files (rotated logs,
// read oldest first: a message may start in one and end in the next).
type Importer struct {
	format Format
	opts   Options
	stats  Stats
	open   map[string]*message
	seq    uint64
	emit   func(corpus.Envelope) error
	buf    []byte
}

// NewImporter returns an importer of format that gives every envelope to
// emit; an error from emit stops the read and is returned.
func NewImporter(format Format, opts Options, emit func(corpus.Envelope) error) *Importer {
	return &Importer{format: format, opts: opts, open: map[string]*message{}, emit: emit}
}

// Stats returns the counts so far.
func (im *Importer) Stats() Stats { return im.stats }

// ReadPostfix reads a Postfix log to its end and emits its envelopes,
// those still open at the end last.
func ReadPostfix(r io.Reader, emit func(corpus.Envelope) error) (Stats, error) {
	return readAll(Postfix, r, emit)
}

// ReadExim reads an Exim main log to its end and emits its envelopes,
// those still open at the end last.
func ReadExim(r io.Reader, emit func(corpus.Envelope) error) (Stats, error) {
	return readAll(Exim, r, emit)
}

func readAll(f Format, r io.Reader, emit func(corpus.Envelope) error) (Stats, error) {
	im := NewImporter(f, Options{}, emit)
	if err := im.Read(r); err != nil {
		return im.Stats(), err
	}
	err := im.Close()
	return im.Stats(), err
}

// maxLine bounds a line: the longest real ones (an Exim arrival line
// with a long "for" list) are some kilobytes; a longer one is skipped
// rather than held in memory.
const maxLine = 1 << 20

// Read reads r to its end. Messages still open at its end stay open: the
// next Read (the next file) may end them; Close emits them.
func (im *Importer) Read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := im.readLine(br)
		if line != nil {
			im.stats.Lines++
			if err := im.line(line); err != nil {
				return err
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, errLong):
			im.stats.Lines++
			im.stats.Unknown++
		default:
			return fmt.Errorf("line %d: %w", im.stats.Lines+1, err)
		}
	}
}

var errLong = errors.New("line too long")

// readLine returns the next line without its line end (LF or CRLF), nil
// and io.EOF at the end, or nil and errLong for a line too long (skipped
// to its end).
func (im *Importer) readLine(br *bufio.Reader) ([]byte, error) {
	im.buf = im.buf[:0]
	for {
		chunk, err := br.ReadSlice('\n')
		if len(im.buf)+len(chunk) > maxLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errLong
		}
		im.buf = append(im.buf, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil, errors.Is(err, io.EOF) && len(im.buf) > 0:
			line := im.buf
			if n := len(line); n > 0 && line[n-1] == '\n' {
				line = line[:n-1]
			}
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		default:
			return nil, err
		}
	}
}

func (im *Importer) line(b []byte) error {
	switch im.format {
	case Postfix:
		return im.postfixLine(string(b))
	case Exim:
		return im.eximLine(string(b))
	}
	return fmt.Errorf("mtalog: unknown format %v", im.format)
}

// Close emits the messages still open, in the order the log first named
// them: a message still deferred at the end of the log is still mail
// that was sent.
func (im *Importer) Close() error {
	rest := make([]*message, 0, len(im.open))
	for _, m := range im.open {
		rest = append(rest, m)
	}
	slices.SortFunc(rest, func(a, b *message) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	clear(im.open)
	for _, m := range rest {
		if err := im.finish(m); err != nil {
			return err
		}
	}
	return nil
}

// message is one queue entry as far as the log told it.
type message struct {
	seq     uint64
	id      string
	from    string
	hasFrom bool
	size    int
	hasSize bool
	to      []string
	seen    map[string]bool
	probe   bool
	// Exim: the arrival line's "for" list, and whether it is whole (not
	// cut short with "<trunc>").
	forList     []string
	forComplete bool
}

// get returns the open message of key, making it when there is none.
func (im *Importer) get(key, id string) *message {
	m := im.open[key]
	if m == nil {
		im.seq++
		m = &message{seq: im.seq, id: id}
		im.open[key] = m
	}
	return m
}

// addTo adds a recipient, once.
func (m *message) addTo(addr string) {
	if addr == "" || m.seen[addr] {
		return
	}
	if m.seen == nil {
		m.seen = map[string]bool{}
	}
	m.seen[addr] = true
	m.to = append(m.to, addr)
}

// end ends the message of key: it is emitted, or counted as left out.
func (im *Importer) end(key string) error {
	m := im.open[key]
	if m == nil {
		// Its sender and recipients were before the log's start.
		im.stats.NoSender++
		return nil
	}
	delete(im.open, key)
	return im.finish(m)
}

func (im *Importer) finish(m *message) error {
	to := m.to
	if m.forComplete {
		to = dedupe(m.forList)
	} else if len(m.forList) > 0 {
		to = dedupe(append(slices.Clone(m.forList), m.to...))
	}
	switch {
	case m.probe:
		im.stats.Probes++
		return nil
	case !m.hasFrom:
		im.stats.NoSender++
		return nil
	case len(to) == 0:
		im.stats.NoRecipients++
		return nil
	}
	env := corpus.Envelope{ID: m.id, From: m.from, To: to}
	if m.hasSize {
		env.Vars = map[string]corpus.Scalar{"size": corpus.Int(m.size)}
	}
	im.stats.Envelopes++
	im.stats.Recipients += len(to)
	return im.emit(env)
}

// dedupe returns addrs without empty strings and repeats, in order.
func dedupe(addrs []string) []string {
	var m message
	for _, a := range addrs {
		m.addTo(a)
	}
	return m.to
}
