package spool

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// testEnvelope is a realistic envelope: two recipients with DSN
// parameters and the client's details.
func testEnvelope() *Envelope {
	return &Envelope{
		From: "alice@example.org",
		Recipients: []Recipient{
			{Addr: "bob@example.net", Notify: []string{"FAILURE", "DELAY"}, ORcpt: "rfc822;bob@example.net"},
			{Addr: "carol@example.com"},
		},
		Ret:       "HDRS",
		EnvID:     "QQ314159",
		SMTPUTF8:  true,
		Body:      "8BITMIME",
		ClientIP:  "127.0.0.1",
		ClientPTR: "localhost",
		HELO:      "client.example.org",
		Listener:  "mta",
		TLS:       "TLSv1.3 TLS_AES_128_GCM_SHA256",
		Auth:      "alice",
		Hops:      2,
		MessageID: "<20240101.1234@example.org>",
	}
}

// testBody returns n bytes of CRLF-terminated lines.
func testBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Received: from client.example.org\r\nSubject: test\r\n\r\n")
	for i := 0; b.Len() < n; i++ {
		b.WriteString("line of body text, with some bytes in it to fill the message\r\n")
	}
	return b.Bytes()[:n]
}

// fixedClock is a clock for Options.Now that tests move by hand.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sameDir are Options whose IDs all land in one msg/AB directory: the
// directory comes from the ID's time, and this clock stands still.
func sameDir() Options {
	c := &fixedClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	return Options{Now: c.Now}
}

// spreadDirs are Options whose consecutive IDs land in different msg/AB
// directories: the clock moves on by 300 ms at every reading (the
// directory's characters change every 256 ms).
func spreadDirs() Options {
	c := &fixedClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	return Options{Now: func() time.Time { c.Add(300 * time.Millisecond); return c.Now() }}
}

// openTest opens a spool in a fresh directory with the real file system
// and closes it at the end of the test.
func openTest(t testing.TB, opts Options) *Spool {
	t.Helper()
	return openTestFS(t, t.TempDir(), opts, osFS())
}

func openTestFS(t testing.TB, dir string, opts Options, fs fsOps) *Spool {
	t.Helper()
	s, err := open(dir, opts, fs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// queue commits one message and returns its ID.
func queue(t testing.TB, s *Spool, env *Envelope, body []byte) string {
	t.Helper()
	r, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Abort()
	if _, err := r.Write(body); err != nil {
		t.Fatal(err)
	}
	id, err := r.Commit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// files lists the regular files under dir, relative, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// captureLog returns a logger writing JSON records into the buffer.
func captureLog() (*slog.Logger, *testbed.Buffer) {
	b := &testbed.Buffer{}
	return slog.New(slog.NewJSONHandler(b, nil)), b
}
