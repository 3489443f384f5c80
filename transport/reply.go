package transport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what a server may send in one reply. RFC 5321 section 4.5.3.1.5
// allows 512 octets per reply line; real servers exceed it a little, so we
// allow more, but a peer that sends endless lines gets a protocol error
// instead of our memory.
const (
	maxReplyLine  = 2048
	maxReplyLines = 100
)

// errProtocol marks a reply that is not SMTP.
var errProtocol = errors.New("smtp protocol error")

// reply is one (possibly multi-line) SMTP reply.
type reply struct {
	Code     int
	Enhanced EnhancedCode
	Lines    []string // text of each line, without code, separator and enhanced code
}

// text joins the lines with a space.
func (r *reply) text() string { return strings.Join(r.Lines, " ") }

func (r *reply) String() string {
	s := strconv.Itoa(r.Code)
	if !r.Enhanced.IsZero() {
		s += " " + r.Enhanced.String()
	}
	if t := r.text(); t != "" {
		s += " " + t
	}
	return s
}

// protocolError is returned for replies that cannot be parsed; it wraps
// errProtocol.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "smtp protocol error: " + e.msg }
func (e *protocolError) Unwrap() error { return errProtocol }

func protoErrf(format string, args ...any) error {
	return &protocolError{fmt.Sprintf(format, args...)}
}

// quoteLine shortens and quotes a line for an error message.
func quoteLine(b []byte) string {
	if len(b) > 64 {
		return strconv.Quote(string(b[:64])) + "..."
	}
	return strconv.Quote(string(b))
}

// readReply reads one reply. The reader's buffer must be at least
// maxReplyLine bytes (see newReader); longer lines are a protocol error. A
// line may end in CRLF or a bare LF (lenient, like most clients).
func readReply(r *bufio.Reader) (*reply, error) {
	rep := &reply{}
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return nil, protoErrf("reply longer than %d lines", maxReplyLines)
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, protoErrf("reply line longer than %d bytes: %s", maxReplyLine, quoteLine(line))
			}
			if len(line) > 0 && errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("connection closed in the middle of a reply line %s: %w", quoteLine(line), io.ErrUnexpectedEOF)
			}
			return nil, err
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		code, more, text, err := parseReplyLine(line)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			rep.Code = code
		} else if code != rep.Code {
			return nil, protoErrf("reply code changed from %d to %d inside a multi-line reply", rep.Code, code)
		}
		rep.Lines = append(rep.Lines, text)
		if !more {
			break
		}
	}
	rep.Enhanced, rep.Lines = parseEnhanced(rep.Code, rep.Lines)
	return rep, nil
}

// parseReplyLine splits "250-text" into 250, true, "text".
func parseReplyLine(line []byte) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", protoErrf("short reply line %s", quoteLine(line))
	}
	// RFC 5321 section 4.2: the first digit is 2-5, the second 0-5, the
	// third 0-9.
	if line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || line[2] < '0' || line[2] > '9' {
		return 0, false, "", protoErrf("reply line does not start with a reply code: %s", quoteLine(line))
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
		more = false
	case '-':
		more = true
	default:
		return 0, false, "", protoErrf("bad separator after reply code: %s", quoteLine(line))
	}
	for _, c := range line[4:] {
		// Text is printable ASCII or UTF-8 and HT (RFC 5321 textstring,
		// RFC 6531); other control characters are not SMTP.
		if c < 0x20 && c != '\t' || c == 0x7f {
			return 0, false, "", protoErrf("control character in reply line: %s", quoteLine(line))
		}
	}
	return code, more, string(line[4:]), nil
}

// parseEnhanced strips an RFC 3463 enhanced code from the start of each line
// when the first line has one whose class matches the reply code.
func parseEnhanced(code int, lines []string) (EnhancedCode, []string) {
	if len(lines) == 0 {
		return EnhancedCode{}, lines
	}
	ec, rest, ok := splitEnhanced(lines[0])
	if !ok || ec[0] != code/100 || code/100 == 3 {
		return EnhancedCode{}, lines
	}
	lines[0] = rest
	for i := 1; i < len(lines); i++ {
		if e2, r2, ok := splitEnhanced(lines[i]); ok && e2 == ec {
			lines[i] = r2
		}
	}
	return ec, lines
}

// splitEnhanced parses "X.Y.Z text": X is 2, 4 or 5, Y and Z 1-3 digits.
func splitEnhanced(s string) (EnhancedCode, string, bool) {
	word, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, s, false
	}
	var ec EnhancedCode
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 || (i == 0 && len(p) != 1) {
			return EnhancedCode{}, s, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p[0] == '+' || p[0] == '-' {
			return EnhancedCode{}, s, false
		}
		ec[i] = n
	}
	if ec[0] != 2 && ec[0] != 4 && ec[0] != 5 {
		return EnhancedCode{}, s, false
	}
	return ec, rest, true
}

// extensions are the EHLO keywords (upper case) and their parameters.
type extensions map[string]string

// parseEHLO reads the extensions from the lines of a 250 EHLO reply; the
// first line is the server's greeting and is skipped.
func parseEHLO(lines []string) extensions {
	ext := extensions{}
	for i, l := range lines {
		if i == 0 {
			continue
		}
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		kw, params, _ := strings.Cut(l, " ")
		// Old servers announce "AUTH=LOGIN PLAIN" next to (or instead of)
		// "AUTH LOGIN PLAIN".
		if k, p, ok := strings.Cut(kw, "="); ok && strings.EqualFold(k, "AUTH") {
			kw, params = k, strings.TrimSpace(p+" "+params)
		}
		kw = strings.ToUpper(kw)
		if old, ok := ext[kw]; ok && params != "" && old != "" {
			params = old + " " + params
		}
		ext[kw] = strings.TrimSpace(params)
	}
	return ext
}

func (e extensions) has(kw string) bool { _, ok := e[kw]; return ok }

// size returns the SIZE limit; 0 means none announced or no limit.
func (e extensions) size() int64 {
	p, ok := e["SIZE"]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// authMechanism picks PLAIN, else LOGIN, from the AUTH extension.
func (e extensions) authMechanism() string {
	var login bool
	for _, m := range strings.Fields(e["AUTH"]) {
		switch strings.ToUpper(m) {
		case "PLAIN":
			return "PLAIN"
		case "LOGIN":
			login = true
		}
	}
	if login {
		return "LOGIN"
	}
	return ""
}
