package mtasts

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func entry(domain, id string, maxAge time.Duration, fetched time.Time) Entry {
	return Entry{Domain: domain, ID: id, Fetched: fetched,
		Policy: &Policy{Mode: Enforce, MX: []string{"mx1.example.net", "*.example.org"}, MaxAge: maxAge}}
}

func sameEntry(t *testing.T, got Entry, ok bool, want Entry) {
	t.Helper()
	if !ok {
		t.Fatalf("no entry for %s", want.Domain)
	}
	if got.Domain != want.Domain || got.ID != want.ID || !got.Fetched.Equal(want.Fetched) || !reflect.DeepEqual(got.Policy, want.Policy) {
		t.Fatalf("entry = %+v (policy %+v), want %+v (policy %+v)", got, got.Policy, want, want.Policy)
	}
}

func TestCachePutGet(t *testing.T) {
	c, err := OpenCache("")
	if err != nil {
		t.Fatal(err)
	}
	e := entry("example.com", "1", time.Hour, t0)
	if _, ok := c.Get("example.com"); ok {
		t.Fatal("entry in an empty cache")
	}
	if err := c.Put(e); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Get("EXAMPLE.com.")
	sameEntry(t, got, ok, e)
	if !got.Expires().Equal(t0.Add(time.Hour)) {
		t.Fatalf("Expires = %v, want Fetched + max_age", got.Expires())
	}
	e2 := entry("Example.COM", "2", time.Hour, t0.Add(time.Minute))
	if err := c.Put(e2); err != nil {
		t.Fatal(err)
	}
	got, ok = c.Get("example.com")
	e2.Domain = "example.com"
	sameEntry(t, got, ok, e2)
	if err := c.Put(Entry{Domain: "x.com"}); err == nil {
		t.Fatal("Put of an entry without a policy succeeded")
	}
}

// TestCacheRestart: a second OpenCache of the same directory (a restart)
// sees the entries, also for domains that are not valid names.
func TestCacheRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sts")
	c, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries := []Entry{
		entry("example.com", "20260101", 24*time.Hour, t0),
		entry("mail.example.org", "a1", 0, t0.Add(time.Second)),
		entry("../../etc/passwd", "x", time.Hour, t0),
		entry("a/b\x00c", "y", time.Hour, t0),
	}
	for _, e := range entries {
		if err := c.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(entry("example.com", "20260102", 48*time.Hour, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	entries[0] = entry("example.com", "20260102", 48*time.Hour, t0.Add(time.Hour))

	files, _ := os.ReadDir(dir)
	if len(files) != len(entries) {
		t.Fatalf("%d files in the cache directory, want %d (one per domain, no temporary leftovers)", len(files), len(entries))
	}
	c2, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got, ok := c2.Get(e.Domain)
		sameEntry(t, got, ok, e)
	}
	if errs := c2.Errors(); len(errs) != 0 {
		t.Fatalf("Errors = %v", errs)
	}
}

// TestCacheCorruptFiles: files that are not valid entries are skipped
// and reported; the others load.
func TestCacheCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCache(dir)
	good := entry("good.example", "1", time.Hour, t0)
	if err := c.Put(good); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fileName("garbage.example"), "not json")
	write(fileName("truncated.example"), `{"domain":"truncated.example","id":"1","fet`)
	write(fileName("badpolicy.example"), `{"domain":"badpolicy.example","id":"1","fetched":"2026-01-01T00:00:00Z","policy":["version: STSv1","mode: bogus","max_age: 1"]}`)
	write(fileName("renamed.example"), `{"domain":"other.example","id":"1","fetched":"2026-01-01T00:00:00Z","policy":["version: STSv1","mode: none","max_age: 1"]}`)
	write(".tmp-123", "left by a crash")
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}

	c2, err := OpenCache(dir)
	if err != nil {
		t.Fatalf("OpenCache with corrupt files: %v", err)
	}
	got, ok := c2.Get("good.example")
	sameEntry(t, got, ok, good)
	for _, d := range []string{"garbage.example", "truncated.example", "badpolicy.example", "renamed.example", "other.example"} {
		if _, ok := c2.Get(d); ok {
			t.Errorf("corrupt entry %s loaded", d)
		}
	}
	errs := c2.Errors()
	all := fmt.Sprint(errs)
	if len(errs) != 5 {
		t.Fatalf("Errors = %d (%s), want 5: four corrupt files and the directory", len(errs), all)
	}
	for _, want := range []string{fileName("garbage.example"), fileName("badpolicy.example"), `mode "bogus"`, `domain "other.example"`, "not a regular file"} {
		if !strings.Contains(all, want) {
			t.Errorf("Errors %s do not mention %q", all, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-123")); !os.IsNotExist(err) {
		t.Errorf("the leftover temporary file was not removed: %v", err)
	}
}

// TestCacheWriteError: a failed file write is returned and reported, and
// the entry stays in memory.
func TestCacheWriteError(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCache(dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	e := entry("example.com", "1", time.Hour, t0)
	if err := c.Put(e); err == nil {
		t.Fatal("Put into a removed directory succeeded")
	}
	got, ok := c.Get("example.com")
	sameEntry(t, got, ok, e)
	if len(c.Errors()) != 1 {
		t.Fatalf("Errors = %v, want the write failure", c.Errors())
	}
}

// TestCacheBound: past the bound, the entry that expires first goes,
// from memory and from the directory; the one just put stays even when
// it expires first.
func TestCacheBound(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCache(dir)
	c.max = 3
	for i, age := range []time.Duration{3 * time.Hour, time.Hour, 2 * time.Hour} {
		if err := c.Put(entry(fmt.Sprintf("d%d.example", i), "1", age, t0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(entry("d3.example", "1", time.Minute, t0)); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{"d0.example": true, "d1.example": false, "d2.example": true, "d3.example": true} {
		if _, ok := c.Get(d); ok != want {
			t.Errorf("after eviction, Get(%s) found = %v, want %v", d, ok, want)
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 3 {
		t.Fatalf("%d files left, want 3", len(files))
	}
}

// TestCacheConcurrent: concurrent Put and Get (run with -race), with the
// files consistent afterwards.
func TestCacheConcurrent(t *testing.T) {
	dir := t.TempDir()
	c, _ := OpenCache(dir)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				d := fmt.Sprintf("d%d.example", i%5)
				if err := c.Put(entry(d, fmt.Sprint(g), time.Hour, t0)); err != nil {
					t.Error(err)
				}
				if e, ok := c.Get(d); !ok || e.Policy == nil {
					t.Errorf("Get(%s) after Put = %+v, %v", d, e, ok)
				}
			}
		}()
	}
	wg.Wait()
	c2, _ := OpenCache(dir)
	for i := range 5 {
		d := fmt.Sprintf("d%d.example", i)
		mem, _ := c.Get(d)
		disk, ok := c2.Get(d)
		sameEntry(t, disk, ok, mem)
	}
}
