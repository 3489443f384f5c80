package dns

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/postern-mta/postern/internal/safefile"
)

func loadStatic(t testing.TB, secure bool) *Static {
	t.Helper()
	s, err := NewStatic("testdata/static.zone", secure, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestStaticMX(t *testing.T) {
	s := loadStatic(t, true)
	ctx := context.Background()
	r, err := s.LookupMX(ctx, "Example.TEST.")
	if err != nil {
		t.Fatal(err)
	}
	want := []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}}
	if !reflect.DeepEqual(r.Records, want) || r.NullMX || !r.Secure {
		t.Fatalf("MX = %+v", r)
	}
	if r.Info.TTL != 300*time.Second || r.Info.Cached || r.Info.Server != "" {
		t.Fatalf("Info = %+v", r.Info)
	}
	r, err = s.LookupMX(ctx, "nullmx.example.test")
	if err != nil || !r.NullMX || len(r.Records) != 0 {
		t.Fatalf("null MX = %+v, %v", r, err)
	}
}

func TestStaticTable(t *testing.T) {
	ctx := context.Background()
	s := loadStatic(t, false)
	type lookup func(name string) (any, error)
	a := func(n string) (any, error) { r, err := s.LookupA(ctx, n); return r.Addrs, err }
	aaaa := func(n string) (any, error) { r, err := s.LookupAAAA(ctx, n); return r.Addrs, err }
	txt := func(n string) (any, error) { r, err := s.LookupTXT(ctx, n); return r.Records, err }
	mx := func(n string) (any, error) { r, err := s.LookupMX(ctx, n); return r.Records, err }
	tlsa := func(n string) (any, error) { r, err := s.LookupTLSA(ctx, n); return r.Records, err }
	hash := []byte{0xb9, 0x84, 0x25, 0x15, 0xc5, 0xe3, 0x3e, 0xae, 0x9b, 0x0e, 0x79, 0x44, 0xc4, 0xec, 0x2d, 0x22,
		0x49, 0x19, 0x18, 0x9c, 0xa8, 0x2d, 0x8f, 0xd0, 0x56, 0x0e, 0x2b, 0x8b, 0xcf, 0x6e, 0xd1, 0x58}
	tests := []struct {
		name    string
		do      lookup
		q       string
		want    any
		wantErr error
	}{
		{"A", a, "mx1.example.test", addrs("127.0.0.2"), nil},
		{"A two records", a, "mx2.example.test", addrs("127.0.0.3", "127.0.0.4"), nil},
		{"AAAA", aaaa, "mx1.example.test", addrs("::1"), nil},
		{"NXDOMAIN", a, "nosuch.example.test", nil, ErrNotFound},
		{"NODATA", aaaa, "mx2.example.test", nil, ErrNoData},
		{"NODATA at apex", a, "example.test", nil, ErrNoData},
		{"empty non-terminal is NODATA", a, "b.deep.example.test", nil, ErrNoData},
		{"below a leaf is NXDOMAIN", a, "x.a.b.deep.example.test", nil, ErrNotFound},
		{"outside the zone", a, "example.org", nil, ErrNotFound},
		{"CNAME", a, "alias.example.test", addrs("127.0.0.2"), nil},
		{"CNAME chain", aaaa, "alias2.example.test", addrs("::1"), nil},
		{"CNAME to NODATA", txt, "alias.example.test", nil, ErrNoData},
		{"CNAME to NXDOMAIN", a, "dangling.example.test", nil, ErrNotFound},
		{"CNAME loop", a, "loop1.example.test", nil, ErrTemporary},
		{"wildcard", a, "anything.wild.example.test", addrs("127.0.0.9"), nil},
		{"wildcard deeper", a, "x.y.wild.example.test", addrs("127.0.0.9"), nil},
		{"existing name not covered", a, "exists.wild.example.test", nil, ErrNoData},
		{"TXT", txt, "_mta-sts.example.test", []string{"v=STSv1; id=20260101T000000;"}, nil},
		{"TXT joined", txt, "long.example.test", []string{"part one, part two", "second record"}, nil},
		{"TLSA", tlsa, "_25._tcp.mx1.example.test", []TLSA{{3, 1, 1, hash}}, nil},
		{"TLSA absent", tlsa, "_25._tcp.mx2.example.test", nil, ErrNotFound},
		{"MX relative, upper-case target", mx, "EXAMPLE.test", []MX{{"mx1.example.test", 10}, {"mx2.example.test", 20}}, nil},
		{"MX NODATA", mx, "mx1.example.test", nil, ErrNoData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.do(tc.q)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				var de *Error
				if !errors.As(err, &de) || de.Name != normalize(tc.q) {
					t.Fatalf("err = %#v, want *Error naming %s", err, tc.q)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStaticSecureFlagAndTTL(t *testing.T) {
	ctx := context.Background()
	for _, secure := range []bool{true, false} {
		s := loadStatic(t, secure)
		r, err := s.LookupA(ctx, "mx2.example.test")
		if err != nil {
			t.Fatal(err)
		}
		if r.Secure != secure {
			t.Errorf("secure=%v: Secure = %v", secure, r.Secure)
		}
		if r.Info.TTL != 60*time.Second { // smallest TTL of the RRset
			t.Errorf("TTL = %v, want 60s", r.Info.TTL)
		}
	}
	// Through a CNAME the TTL is the smallest along the chain.
	r, err := loadStatic(t, false).LookupA(ctx, "alias2.example.test")
	if err != nil || r.Info.TTL != 30*time.Second {
		t.Fatalf("alias2 TTL = %v, %v", r.Info.TTL, err)
	}
	// The expanded name is reported, for DANE's TLSA base domain.
	r, err = loadStatic(t, false).LookupAAAA(ctx, "alias2.example.test")
	if err != nil || r.Canonical != "mx1.example.test" {
		t.Errorf("alias2 Canonical = %q, %v; want mx1.example.test (alias2 -> alias -> mx1)", r.Canonical, err)
	}
	if r, _ := loadStatic(t, false).LookupA(ctx, "mx1.example.test"); r.Canonical != "" {
		t.Errorf("Canonical without a CNAME = %q", r.Canonical)
	}
}

func TestStaticNegativeTTL(t *testing.T) {
	s := loadStatic(t, false)
	r, err := s.query(context.Background(), "nosuch.example.test", 1)
	if !errors.Is(err, ErrNotFound) || r == nil || !r.hasTTL || r.ttl != 120 {
		t.Fatalf("negative = %+v, %v; want TTL 120 (SOA minimum)", r, err)
	}
	// The result returned with the error carries it in its Info.
	res, err := s.LookupA(context.Background(), "nosuch.example.test")
	if !errors.Is(err, ErrNotFound) || res.Info != (Info{TTL: 120 * time.Second}) {
		t.Fatalf("LookupA: Info %+v, %v; want TTL 120s", res.Info, err)
	}
}

// Parse errors give file:line:col and the kind of problem; errors found
// in the records give the record's rank and type. None quotes the file.
func TestStaticParseErrors(t *testing.T) {
	tests := []struct{ zone, want, secret string }{
		{"$ORIGIN x.test.\n@ IN A 1.2.3\n", "policy-zone.txt:2:12: dns: static zone: bad A A", "1.2.3"},
		{"$ORIGIN x.test.\n\n@ IN MX ten mx\n", "policy-zone.txt:3:", "ten"},
		{"$ORIGIN x.test.\nsecretowner IN CNAME b\nsecretowner IN A 127.0.0.1\n",
			"dns: static zone policy-zone.txt: record 1 (CNAME): its owner has other records too", "secretowner"},
		{"$ORIGIN x.test.\nsecretowner IN A 127.0.0.1\nsecretowner IN CNAME b\n",
			"dns: static zone policy-zone.txt: record 2 (CNAME): its owner has other records too", "secretowner"},
		{"$ORIGIN x.test.\nsecretowner IN CNAME b\nsecretowner IN CNAME c\n",
			"dns: static zone policy-zone.txt: record 2 (CNAME): a second CNAME, with another target, for the owner of record 1", "secretowner"},
		{"$ORIGIN x.test.\nsecretowner IN TLSA 3 1 1 zz\n",
			"dns: static zone policy-zone.txt: record 1 (TLSA): certificate data is not hex", "secretowner"},
	}
	for _, tc := range tests {
		_, err := NewStaticFromReader(strings.NewReader(tc.zone), "policy-zone.txt", false)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.secret) {
			t.Errorf("zone %q: err = %v, want it to contain %q and not %q", tc.zone, err, tc.want, tc.secret)
		}
	}
	if _, err := NewStatic("testdata/does-not-exist.zone", false, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

// A path that names a file which is not a zone file (a policy typo, or
// someone probing) must not have its content echoed: the error keeps the
// file name and the line, drops the text.
func TestStaticErrorsDoNotEchoContent(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, line string }{
		// The parser chokes on the first line of a shadow file.
		{"shadow", "root:$y$j9T$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n", ":1:"},
		{"shadow-later", "; comment\nx.test. IN A 127.0.0.1\nroot:$y$j9T$SECRETHASH:19000:0:99999:7:::\n", ":3:"},
		// Here the secret is the rdata the parser quotes.
		{"rdata", "x.test. IN A root:$y$j9T$SECRETHASH\n", ":1:"},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := NewStatic(path, false, 0)
		if err == nil {
			t.Fatalf("%s: parsed", tc.name)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, path+tc.line) || !strings.Contains(msg, "dns: static zone: ") {
			t.Errorf("%s: err = %q, want it to start with %q", tc.name, msg, path+tc.line)
		}
		if strings.Contains(msg, "SECRETHASH") || strings.Contains(msg, "root:") {
			t.Errorf("%s: err = %q echoes the file", tc.name, msg)
		}
		var pe *mdns.ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: the *dns.ParseError is not in the chain: %#v", tc.name, err)
		}
	}
}

// A parse error whose message is not of the expected form is not shown.
func TestZoneErrorFallback(t *testing.T) {
	zp := mdns.NewZoneParser(strings.NewReader("x.test. IN A root:SECRETHASH\n"), ".", "a.zone")
	for _, ok := zp.Next(); ok; _, ok = zp.Next() {
	}
	perr := zp.Err()
	if perr == nil || !strings.Contains(perr.Error(), "SECRETHASH") {
		t.Fatalf("test premise: miekg/dns error %v should quote the token", perr)
	}
	// Named for another file, the message does not start as expected.
	err := zoneError("b.zone", perr)
	if err.Error() != "b.zone: dns: static zone: not a valid zone file" {
		t.Errorf("unexpected form: %q", err)
	}
	var pe *mdns.ParseError
	if !errors.As(err, &pe) {
		t.Error("the *dns.ParseError is not in the chain")
	}
	// An error that is no *dns.ParseError at all.
	err = zoneError("b.zone", errors.New("SECRETHASH"))
	if err.Error() != "b.zone: dns: static zone: not a valid zone file" {
		t.Errorf("not a ParseError: %q", err)
	}
	if got := zoneError("", errors.New("SECRETHASH")).Error(); got != "dns: static zone: not a valid zone file" {
		t.Errorf("no file name: %q", got)
	}
}

func TestDropQuotedToken(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{`bad A A: "1.2.3"`, "bad A A", true},
		{`bad A A: ""`, "bad A A", true},
		{`: "tok"`, "", true},
		// Quotes and ": " inside the token are escaped.
		{`bad A A: "x: \"y\": \"z"`, "bad A A", true},
		{`bad A A: "a\\"`, "bad A A", true},
		{`bad A A: "x at line: 1:2"`, "bad A A", true},
		// A message with quotes of its own.
		{`bad "q": thing: "tok"`, `bad "q": thing`, true},
		{`no token here`, "", false},
		{`bad: "unterminated`, "", false},
		{`bad: "a" "b"`, "", false},
	} {
		got, ok := dropQuotedToken(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("dropQuotedToken(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// Only regular files are read: a FIFO would block the open, /dev/zero and
// /dev/urandom never end, a directory is no zone. Each must be refused at
// once; a hang fails the test at a generous deadline instead of stalling it.
func TestNewStaticRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", "/dev/urandom", fifo, dir} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		done := make(chan error, 1)
		go func() {
			_, err := NewStatic(path, false, 0)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, safefile.ErrNotRegular) {
				t.Errorf("%s: err = %v, want one wrapping safefile.ErrNotRegular", path, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: NewStatic did not return", path)
		}
	}
	// Through New, the same.
	if _, err := New(Config{Kind: KindStatic, ZoneFile: fifo}); !errors.Is(err, safefile.ErrNotRegular) {
		t.Errorf("New with a FIFO: err = %v", err)
	}
}

func TestNewStaticSizeCap(t *testing.T) {
	dir := t.TempDir()
	zone := "x.test. IN A 127.0.0.1\ny.test. IN A 127.0.0.2\n"
	path := filepath.Join(dir, "zone")
	if err := os.WriteFile(path, []byte(zone), 0o600); err != nil {
		t.Fatal(err)
	}
	size := int64(len(zone))
	if _, err := NewStatic(path, false, size); err != nil {
		t.Errorf("file at the cap: %v", err)
	}
	for _, cap := range []int64{size - 1, 10} {
		if _, err := NewStatic(path, false, cap); !errors.Is(err, safefile.ErrTooLarge) {
			t.Errorf("cap %d, file of %d bytes: err = %v, want one wrapping safefile.ErrTooLarge", cap, size, err)
		}
	}
	if _, err := New(Config{Kind: KindStatic, ZoneFile: path, ZoneFileMaxSize: size - 1}); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("New with ZoneFileMaxSize below the size: err = %v", err)
	}
	if _, err := New(Config{Kind: KindStatic, ZoneFile: path, ZoneFileMaxSize: size}); err != nil {
		t.Errorf("New with ZoneFileMaxSize at the size: %v", err)
	}
	if _, err := NewStatic(path, false, -1); err == nil {
		t.Error("negative cap accepted")
	}
	// Zero means DefaultZoneFileMaxSize (a sparse file: no disk used).
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(zone), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, DefaultZoneFileMaxSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStatic(big, false, 0); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("default cap: err = %v, want one wrapping safefile.ErrTooLarge", err)
	}
	// A reader that goes over its cap while the zone is read (a file that
	// grows): the read error wins over the parse error the cut-off causes.
	for _, cap := range []int64{size - 1, 30} {
		_, err := NewStaticFromReader(safefile.Reader(strings.NewReader(zone), "growing", cap), "growing", false)
		if !errors.Is(err, safefile.ErrTooLarge) {
			t.Errorf("reader capped at %d: err = %v, want one wrapping safefile.ErrTooLarge", cap, err)
		}
	}
}
