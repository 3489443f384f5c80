package mtalog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/corpus"
)

// fuzzRead reads data as a log of format f: no panic, every envelope has
// recipients, none empty and none twice, and the corpus it makes is read
// back whole by the corpus reader.
func fuzzRead(t *testing.T, f Format, data []byte) {
	var out bytes.Buffer
	w := corpus.NewWriter(&out)
	n := 0
	st, err := readAll(f, bytes.NewReader(data), func(e corpus.Envelope) error {
		n++
		if len(e.To) == 0 {
			t.Fatalf("envelope %+v without recipients", e)
		}
		seen := map[string]bool{}
		for _, to := range e.To {
			if to == "" || seen[to] {
				t.Fatalf("envelope %+v: empty or repeated recipient %q", e, to)
			}
			seen[to] = true
		}
		return w.Write(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Envelopes != n || st.Lines < st.Used+st.Unknown {
		t.Fatalf("stats %+v after %d envelopes", st, n)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := corpus.NewReader(&out, "fuzz")
	for i := 0; i < n; i++ {
		if _, err := r.Next(); err != nil {
			t.Fatalf("envelope %d does not read back: %v\n%s", i+1, err, out.String())
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after %d envelopes: %v", n, err)
	}
}

// addSeeds adds the test data's log lines, whole and line by line.
func addSeeds(f *testing.F, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for l := range strings.SplitSeq(string(b), "\n") {
		f.Add([]byte(l + "\n"))
	}
}

func FuzzReadPostfix(f *testing.F) {
	addSeeds(f, "testdata/postfix-prefixes.log")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, Postfix, data) })
}

func FuzzReadExim(f *testing.F) {
	addSeeds(f, "testdata/exim-main.log")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, Exim, data) })
}
