package dns

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	mdns "github.com/miekg/dns"

	"github.com/postern-mta/postern/internal/safefile"
)

// DefaultZoneFileMaxSize is the largest zone file [NewStatic] reads when
// given no cap (and [New] when Config.ZoneFileMaxSize is zero).
const DefaultZoneFileMaxSize = 64 << 20

// NewStatic reads the zone file at path, which must be a regular file of
// at most maxSize bytes (zero means [DefaultZoneFileMaxSize]): a FIFO, a
// device, a directory or a socket is refused with an error wrapping
// [safefile.ErrNotRegular], a larger file with one wrapping
// [safefile.ErrTooLarge]. secure marks every answer as
// DNSSEC-authenticated. Errors give positions (file:line:column) and the
// kind of problem, never text read from the file: a path that names a
// file which is not a zone file (such as /etc/shadow) must not have its
// content shown in a message or a log.
func NewStatic(path string, secure bool, maxSize int64) (*Static, error) {
	if maxSize < 0 {
		return nil, fmt.Errorf("dns: static zone %s: negative size cap %d", path, maxSize)
	}
	if maxSize == 0 {
		maxSize = DefaultZoneFileMaxSize
	}
	f, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: static zone: %w", err)
	}
	defer f.Close()
	// Refuse a file already too large before parsing any of it; the capped
	// reader catches one that grows while it is read.
	if fi, err := f.Stat(); err == nil && fi.Size() > maxSize {
		return nil, fmt.Errorf("dns: static zone: %s: %w (the limit is %d bytes)", path, safefile.ErrTooLarge, maxSize)
	}
	return NewStaticFromReader(safefile.Reader(f, path, maxSize), path, secure)
}

// NewStaticFromReader reads a zone from r; name is the file name used in
// error messages. The initial origin is the root: relative names need an
// $ORIGIN line. $INCLUDE is not allowed. A read error from r is returned
// wrapped. Like those of [NewStatic], its errors never quote the zone's
// text: parse errors give file:line:column and the kind of problem (the
// underlying *dns.ParseError of github.com/miekg/dns, which does quote
// it, stays reachable with errors.As), and errors found in the records
// give the record's number (its rank among the file's records, counting
// from 1) and type.
func NewStaticFromReader(r io.Reader, name string, secure bool) (*Static, error) {
	src := &readErrReader{r: r}
	s, err := newStatic(src, name, secure)
	if src.err != nil {
		// The parser may have stopped on a half-read record and reported
		// that instead; the read error is the real cause.
		return nil, fmt.Errorf("dns: static zone: %w", src.err)
	}
	return s, err
}

// readErrReader remembers the first error, other than io.EOF, of r.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func newStatic(r io.Reader, name string, secure bool) (*Static, error) {
	zp := mdns.NewZoneParser(r, ".", name)
	zp.SetDefaultTTL(3600)
	s := &Static{secure: secure, names: make(map[string]*staticNode)}
	type key struct {
		name  string
		qtype uint16
	}
	collectors := make(map[key]*collector)
	var owners []string
	// Errors found in the records name them by rank (n), never by owner
	// or data: those are text from the file.
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		n++
		h := rr.Header()
		if h.Class != mdns.ClassINET {
			continue
		}
		owner := normalize(h.Name)
		node := s.node(owner)
		owners = append(owners, owner)
		switch v := rr.(type) {
		case *mdns.CNAME:
			if node.cname != "" && node.cname != normalize(v.Target) {
				return nil, fmt.Errorf("dns: static zone %s: record %d (CNAME): a second CNAME, with another target, for the owner of record %d", name, n, node.cnameRec)
			}
			node.cname, node.ttl = normalize(v.Target), h.Ttl
			if node.cnameRec == 0 {
				node.cnameRec = n
			}
			continue
		case *mdns.SOA:
			s.apexes = append(s.apexes, staticApex{name: owner, negTTL: min(h.Ttl, v.Minttl)})
			continue
		case *mdns.TLSA:
			if _, err := decodeHex(v.Certificate); err != nil {
				return nil, fmt.Errorf("dns: static zone %s: record %d (TLSA): %w", name, n, err)
			}
		}
		k := key{owner, h.Rrtype}
		c := collectors[k]
		if c == nil {
			c = &collector{qtype: h.Rrtype, resp: response{secure: secure, ttl: h.Ttl}}
		}
		if c.add(rr) {
			c.resp.ttl = min(c.resp.ttl, h.Ttl)
			collectors[k] = c
		}
	}
	if err := zp.Err(); err != nil {
		return nil, zoneError(name, err)
	}
	for k, c := range collectors {
		c.finish()
		resp := c.resp
		s.names[k.name].answers[k.qtype] = &resp
	}
	// A CNAME owner has no other data (RFC 1034 section 3.6.2). The
	// first offending CNAME in file order is reported (map order varies).
	bad := 0
	for _, node := range s.names {
		if node.cname != "" && len(node.answers) > 0 && (bad == 0 || node.cnameRec < bad) {
			bad = node.cnameRec
		}
	}
	if bad != 0 {
		return nil, fmt.Errorf("dns: static zone %s: record %d (CNAME): its owner has other records too", name, bad)
	}
	// Longest apex first, so the closest enclosing zone wins.
	for i := 1; i < len(s.apexes); i++ {
		for j := i; j > 0 && labels(s.apexes[j].name) > labels(s.apexes[j-1].name); j-- {
			s.apexes[j], s.apexes[j-1] = s.apexes[j-1], s.apexes[j]
		}
	}
	// Empty non-terminals: every ancestor of an owner exists, up to the
	// enclosing zone's apex (or, outside any SOA, up to a TLD).
	for _, owner := range owners {
		stop := s.apexFor(owner).name
		for p := parent(owner); p != "" && p != "." && len(p) >= len(stop); p = parent(p) {
			if stop == "" && !strings.Contains(p, ".") {
				break
			}
			s.node(p)
			if p == stop {
				break
			}
		}
	}
	return s, nil
}

func decodeHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("certificate data is not hex")
	}
	return b, nil
}
