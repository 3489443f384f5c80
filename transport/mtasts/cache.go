package mtasts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/postern-mta/postern/internal/safefile"
)

// MaxEntries bounds a [Cache]: past it, the entry that expires first is
// dropped (from memory and from its directory).
const MaxEntries = 10000

// maxFileSize caps a cache file; a policy body is at most 64 KiB, so a
// larger file is not ours.
const maxFileSize = 1 << 20

// maxProblems is how many of the latest problems [Cache.Errors] keeps.
const maxProblems = 32

// Entry is a cached policy.
type Entry struct {
	// Domain is the policy domain, lower-cased, without a trailing dot.
	Domain string
	// ID is the id of the TXT record the policy was fetched for.
	ID     string
	Policy *Policy
	// Fetched is when the policy was fetched.
	Fetched time.Time
}

// Expires is when the entry stops being usable: Fetched + Policy.MaxAge.
func (e Entry) Expires() time.Time { return e.Fetched.Add(e.Policy.MaxAge) }

// Cache holds fetched policies by domain, in memory and, when its
// directory is set, in files under it that survive a restart.
//
// Each domain has one small file, named by the SHA-256 of the domain (so
// any domain string makes a safe name), written atomically: a temporary
// file, fsync, rename, fsync of the directory. Files that cannot be read
// or do not hold a valid entry are skipped and reported by
// [Cache.Errors], never fatal: a lost entry only means one more fetch.
//
// The cache holds at most [MaxEntries] entries. Entries are kept past
// their expiry (the caller judges expiry with its own clock, see
// [Entry.Expires]) until replaced or evicted.
//
// One directory belongs to one Cache at a time. A Cache is safe for
// concurrent use.
type Cache struct {
	dir string
	max int

	// wmu orders writes: a Put updates memory and its file under it, so
	// the file of a domain always holds the last entry in memory.
	wmu sync.Mutex

	mu       sync.Mutex
	entries  map[string]Entry
	problems []error
}

// fileEntry is an entry as stored: the policy as its canonical lines,
// parsed again (and so checked) when loaded.
type fileEntry struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Policy  []string  `json:"policy"`
}

// OpenCache returns a cache kept in memory and, when dir is not "", in
// files under dir, loading the entries dir already holds. The error is
// for dir itself (it cannot be created or listed); problems with single
// files are reported by [Cache.Errors].
func OpenCache(dir string) (*Cache, error) {
	c := &Cache{dir: dir, max: MaxEntries, entries: map[string]Entry{}}
	if dir == "" {
		return c, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mta-sts cache: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("mta-sts cache: %w", err)
	}
	for _, de := range des {
		path := filepath.Join(dir, de.Name())
		if strings.HasPrefix(de.Name(), ".tmp-") {
			// Left by a crash between create and rename.
			_ = os.Remove(path)
			continue
		}
		e, err := readEntry(path)
		if err != nil {
			c.problem(fmt.Errorf("mta-sts cache: %s: %w (ignored)", path, err))
			continue
		}
		c.entries[e.Domain] = e
	}
	for _, d := range c.evict("") {
		_ = os.Remove(c.path(d))
	}
	return c, nil
}

// readEntry reads and checks one cache file.
func readEntry(path string) (Entry, error) {
	b, err := safefile.Read(path, maxFileSize)
	if err != nil {
		return Entry{}, err
	}
	var fe fileEntry
	if err := json.Unmarshal(b, &fe); err != nil {
		return Entry{}, err
	}
	if fe.Domain == "" || fileName(fe.Domain) != filepath.Base(path) {
		return Entry{}, fmt.Errorf("holds domain %q, which is not the one its name stands for", fe.Domain)
	}
	p, err := ParsePolicy([]byte(strings.Join(fe.Policy, "\n")))
	if err != nil {
		return Entry{}, err
	}
	return Entry{Domain: fe.Domain, ID: fe.ID, Policy: p, Fetched: fe.Fetched}, nil
}

// fileName is the file of a (normalised) domain.
func fileName(domain string) string {
	sum := sha256.Sum256([]byte(domain))
	return hex.EncodeToString(sum[:]) + ".json"
}

func (c *Cache) path(domain string) string { return filepath.Join(c.dir, fileName(domain)) }

// Get returns the entry of domain (any case, trailing dot or not), expired
// or not.
func (c *Cache) Get(domain string) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[normalDomain(domain)]
	return e, ok
}

// Put stores e in memory and, when the cache has a directory, in its
// file. A file error is returned (and kept for [Cache.Errors]); the entry
// stays in memory.
func (c *Cache) Put(e Entry) error {
	e.Domain = normalDomain(e.Domain)
	if e.Domain == "" || e.Policy == nil {
		return errors.New("mta-sts cache: an entry needs a domain and a policy")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	c.entries[e.Domain] = e
	evicted := c.evict(e.Domain)
	c.mu.Unlock()
	if c.dir == "" {
		return nil
	}
	var errs []error
	for _, d := range evicted {
		if err := os.Remove(c.path(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := c.write(e); err != nil {
		errs = append(errs, fmt.Errorf("writing the entry of %s: %w", e.Domain, err))
	}
	if err := errors.Join(errs...); err != nil {
		err = fmt.Errorf("mta-sts cache: %w", err)
		c.mu.Lock()
		c.problem(err)
		c.mu.Unlock()
		return err
	}
	return nil
}

// evict drops the entries that expire first until at most c.max are
// left, never keep, and returns their domains. c.mu is held.
func (c *Cache) evict(keep string) []string {
	var out []string
	for len(c.entries) > c.max {
		first := ""
		var at time.Time
		for d, e := range c.entries {
			if d != keep && (first == "" || e.Expires().Before(at)) {
				first, at = d, e.Expires()
			}
		}
		delete(c.entries, first)
		out = append(out, first)
	}
	return out
}

// write stores e atomically in its file.
func (c *Cache) write(e Entry) error {
	b, err := json.Marshal(fileEntry{Domain: e.Domain, ID: e.ID, Fetched: e.Fetched, Policy: e.Policy.Lines()})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path(e.Domain))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// The rename is durable once the directory is synced.
	d, err := os.Open(c.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// problem keeps err for Errors. c.mu is held (or c is not shared yet).
func (c *Cache) problem(err error) {
	c.problems = append(c.problems, err)
	if n := len(c.problems); n > maxProblems {
		c.problems = append([]error(nil), c.problems[n-maxProblems:]...)
	}
}

// Errors returns the latest problems (at most 32) met with the cache's
// files: files skipped when the cache was opened (unreadable, corrupt,
// not a valid entry) and failed writes since.
func (c *Cache) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.problems...)
}

// Len is the number of policies the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
