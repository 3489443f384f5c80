package spool

import (
	crand "crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// IDLen is the length of a queue ID in characters.
const IDLen = 16

// idEncoding is RFC 4648 section 7 base32hex, upper case, unpadded. Its
// alphabet is in ASCII order, so encoded IDs sort as their bits do, and
// 80 bits fill 16 characters exactly: every valid string decodes to one
// ID and back.
var idEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// idAlphabet is the alphabet of idEncoding, in order.
const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUV"

// ErrBadID is wrapped by the errors for a string that is not a queue ID.
var ErrBadID = errors.New("not a queue ID (16 characters of 0-9 and A-V)")

// NewID returns a queue ID for a message arriving at now: 48 bits of Unix
// milliseconds followed by 32 bits read from rand, encoded as 16
// characters of base32hex (RFC 4648 section 7). IDs of different
// milliseconds sort by time as strings. rand nil, or a rand that fails,
// means crypto/rand. Times before 1970 count as 1970.
func NewID(now time.Time, rand io.Reader) string {
	ms := now.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	if ms >= 1<<48 {
		ms = 1<<48 - 1
	}
	var b [10]byte
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	if rand == nil {
		rand = crand.Reader
	}
	if _, err := io.ReadFull(rand, b[6:]); err != nil {
		_, _ = crand.Read(b[6:]) // never fails (crypto/rand aborts the program instead)
	}
	return idEncoding.EncodeToString(b[:])
}

// ValidID reports whether id is a well-formed queue ID: exactly 16
// characters of the upper-case base32hex alphabet. Anything else,
// including paths such as "../x", is refused.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if strings.IndexByte(idAlphabet, c) < 0 {
			return false
		}
	}
	return true
}

// ParseID checks id and returns the arrival time it encodes, to the
// millisecond, in UTC. The error wraps [ErrBadID].
func ParseID(id string) (time.Time, error) {
	if !ValidID(id) {
		return time.Time{}, fmt.Errorf("queue ID %q: %w", id, ErrBadID)
	}
	b, err := idEncoding.DecodeString(id)
	if err != nil || len(b) != 10 {
		return time.Time{}, fmt.Errorf("queue ID %q: %w", id, ErrBadID)
	}
	var ms int64
	for _, c := range b[:6] {
		ms = ms<<8 | int64(c)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// subdir is the directory of id under msg/ and state/: its characters 7
// and 8, ten bits of its millisecond time that change every 8 ms and come
// round every 8 s. Messages received together share a directory, so one
// directory fsync covers them all (group commit: with the random bits,
// concurrent messages almost never shared one, and each paid its own),
// and over time they still spread over 1024 directories.
func subdir(id string) string { return id[7:9] }
