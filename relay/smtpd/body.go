package smtpd

import (
	"bytes"
	"strings"
)

// lineSplitter cuts message content into lines, each handed on with a CRLF
// end: CRLF stays, and a bare LF or a bare CR (not part of a CRLF) becomes
// CRLF, or, when reject is set, stops the message with errBareNewline. A
// line longer than MaxLineLength stops it with errLineTooLong. It works
// the same on DATA content (dot-unstuffed by go-smtp, which only ends DATA
// at CRLF.CRLF, so "<LF>.<CR><LF>" is content) and on BDAT chunks, whose
// boundaries may fall anywhere, between a CR and its LF included.
type lineSplitter struct {
	reject    bool
	line      []byte // the current line, without its end
	pendingCR bool   // the last byte fed was a CR
}

// feed takes the next bytes. emit gets every complete line (with CRLF); its
// argument is reused after it returns.
func (s *lineSplitter) feed(p []byte, emit func([]byte) error) error {
	for len(p) > 0 {
		if s.pendingCR {
			s.pendingCR = false
			if p[0] == '\n' {
				p = p[1:]
			} else if s.reject {
				return errBareNewline
			}
			if err := s.endLine(emit); err != nil {
				return err
			}
			continue
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			return s.add(p)
		}
		if err := s.add(p[:i]); err != nil {
			return err
		}
		if p[i] == '\n' {
			if s.reject {
				return errBareNewline
			}
			p = p[i+1:]
			if err := s.endLine(emit); err != nil {
				return err
			}
			continue
		}
		// A CR: its LF may be in the next chunk.
		s.pendingCR = true
		p = p[i+1:]
	}
	return nil
}

// finish ends the content: a last line without its end gets CRLF (a
// trailing bare CR is a bare newline like any other).
func (s *lineSplitter) finish(emit func([]byte) error) error {
	if s.pendingCR {
		if s.reject {
			return errBareNewline
		}
		s.pendingCR = false
		return s.endLine(emit)
	}
	if len(s.line) > 0 {
		return s.endLine(emit)
	}
	return nil
}

func (s *lineSplitter) add(b []byte) error {
	if len(s.line)+len(b) > MaxLineLength-2 {
		return errLineTooLong
	}
	s.line = append(s.line, b...)
	return nil
}

func (s *lineSplitter) endLine(emit func([]byte) error) error {
	s.line = append(s.line, '\r', '\n')
	err := emit(s.line)
	s.line = s.line[:0]
	return err
}

// headerScan collects the header section (RFC 5322 2.2) line by line,
// counts its Received fields and finds the first Message-ID. The section
// ends at the empty line, or at the first line that is neither a field nor
// a continuation (that line is the body's first, as Postfix does).
type headerScan struct {
	limit, maxHops int

	buf       bytes.Buffer
	hops      int
	messageID string

	inMsgID   bool   // the field being read is the first Message-ID
	seenMsgID bool   // a Message-ID field was seen
	msgID     []byte // its value so far, unfolded
}

// add takes the next line (CRLF included). end reports that the line is
// not part of the header section: it and what follows are the body.
func (h *headerScan) add(line []byte) (end bool, err error) {
	content := line[:len(line)-2]
	switch {
	case len(content) == 0:
		h.endField()
		return true, nil
	case content[0] == ' ' || content[0] == '\t':
		if h.buf.Len() == 0 {
			return true, nil // a continuation of nothing: not a header
		}
		if h.inMsgID && len(h.msgID) < 1000 {
			h.msgID = append(h.msgID, content...)
		}
	default:
		name, value, ok := fieldName(content)
		if !ok {
			h.endField()
			return true, nil
		}
		h.endField()
		if strings.EqualFold(name, "Received") {
			h.hops++
			if h.hops >= h.maxHops {
				return false, errTooManyHops
			}
		}
		if !h.seenMsgID && strings.EqualFold(name, "Message-ID") {
			h.seenMsgID, h.inMsgID = true, true
			h.msgID = append(h.msgID[:0], value...)
		}
	}
	if h.buf.Len()+len(line) > h.limit {
		return false, errHeaderTooLarge
	}
	h.buf.Write(line)
	return false, nil
}

// endField finishes the field being read (it matters for Message-ID only).
func (h *headerScan) endField() {
	if !h.inMsgID {
		return
	}
	h.inMsgID = false
	v := strings.TrimSpace(string(h.msgID))
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			v = v[i : i+j+1]
		}
	}
	if len(v) > 998 {
		v = v[:998]
	}
	h.messageID = v
}

// fieldName splits "Name: value" (RFC 5322 2.2: printable ASCII but colon;
// obsolete white space before the colon tolerated).
func fieldName(content []byte) (name string, value []byte, ok bool) {
	i := bytes.IndexByte(content, ':')
	if i <= 0 {
		return "", nil, false
	}
	n := bytes.TrimRight(content[:i], " \t")
	if len(n) == 0 {
		return "", nil, false
	}
	for _, c := range n {
		if c < 33 || c > 126 {
			return "", nil, false
		}
	}
	return string(n), content[i+1:], true
}
