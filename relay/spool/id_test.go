package spool

import (
	"bytes"
	"errors"
	"sort"
	"testing"
	"time"
)

// TestNewIDFormat: 16 characters of base32hex that decode back to the
// millisecond they were made at; the subdirectory is the last two.
func TestNewIDFormat(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.UTC)
	id := NewID(now, bytes.NewReader([]byte{0xde, 0xad, 0xbe, 0xef}))
	if len(id) != IDLen || !ValidID(id) {
		t.Fatalf("NewID = %q, not a valid 16-character ID", id)
	}
	got, err := ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Truncate(time.Millisecond); !got.Equal(want) {
		t.Errorf("ParseID(%s) = %v, want %v", id, got, want)
	}
	if subdir(id) != id[7:9] {
		t.Errorf("subdir(%s) = %s", id, subdir(id))
	}
	// The random bits are the last 32: the same time with other bits gives
	// the same first 9 characters (45 bits of the 48-bit time) only.
	other := NewID(now, bytes.NewReader([]byte{1, 2, 3, 4}))
	if other == id || other[:9] != id[:9] {
		t.Errorf("IDs for one instant: %s and %s", id, other)
	}
	// A failing reader falls back to crypto/rand rather than a fixed ID.
	a, b := NewID(now, failingReader{}), NewID(now, failingReader{})
	if a == b || !ValidID(a) {
		t.Errorf("with a failing reader: %s, %s", a, b)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

// TestIDsSortByTime: an ID of a later millisecond sorts after one of an
// earlier millisecond whatever the random bits, over a wide span of times.
func TestIDsSortByTime(t *testing.T) {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i, step := range []time.Duration{0, time.Millisecond, time.Second, time.Hour, 24 * time.Hour, 365 * 24 * time.Hour, 50 * 365 * 24 * time.Hour} {
		bits := []byte{0xff, 0xff, 0xff, 0xff}
		if i%2 == 1 {
			bits = []byte{0, 0, 0, 0}
		}
		ids = append(ids, NewID(base.Add(step), bytes.NewReader(bits)))
	}
	if !sort.StringsAreSorted(ids) {
		t.Errorf("IDs in time order do not sort: %q", ids)
	}
	early := NewID(base, bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}))
	late := NewID(base.Add(time.Millisecond), bytes.NewReader([]byte{0, 0, 0, 0}))
	if !(early < late) {
		t.Errorf("%s (max random) should sort before %s (1 ms later, zero random)", early, late)
	}
}

// TestValidIDRefuses: anything but 16 characters of 0-9A-V is refused,
// in particular what could walk out of the spool directory.
func TestValidIDRefuses(t *testing.T) {
	for _, s := range []string{
		"", "0", "0123456789ABCDE", "0123456789ABCDEFG",
		"../../etc/passwd", "0123456789ABC/..", "0123456789ABCD/E",
		"0123456789abcdef", // lower case
		"0123456789ABCDEW", // W is not base32hex
		"0123456789ABCDE=", "0123456789ABCDE\n", "0123456789ABCDE\x00",
	} {
		if ValidID(s) {
			t.Errorf("ValidID(%q) = true", s)
		}
		if _, err := ParseID(s); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) error = %v, want ErrBadID", s, err)
		}
	}
	if !ValidID("0123456789ABCDEV") {
		t.Error("ValidID refuses a well-formed ID")
	}
}
