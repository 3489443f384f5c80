package relay

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/transport/dns"
)

// ptrZone gives 192.0.2.0/24 and 2001:db8::/32 reverse records of every
// kind a client's reverse zone may hold, and their forward records.
const ptrZone = `$ORIGIN 2.0.192.in-addr.arpa.
$TTL 300
@  IN SOA ns.example.test. host.example.test. 1 3600 600 86400 60
10 IN PTR Good.Example.TEST.
11 IN PTR liar.example.test.
12 IN PTR nowhere.example.test.
13 IN PTR 192.0.2.13.
14 IN PTR -bad.example.test.
15 IN PTR first.example.test.
15 IN PTR second.example.test.
16 IN PTR n1.example.test.
16 IN PTR n2.example.test.
16 IN PTR n3.example.test.
16 IN PTR n4.example.test.
17 IN PTR v6only.example.test.
18 IN TXT "no PTR here"
$ORIGIN 8.b.d.0.1.0.0.2.ip6.arpa.
5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR dual.example.test.
6.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR v4only.example.test.
$ORIGIN example.test.
good   IN A    192.0.2.10
liar   IN A    192.0.2.99
first  IN A    192.0.2.99
second IN A    192.0.2.1
second IN A    192.0.2.15
n1     IN A    192.0.2.99
n2     IN A    192.0.2.99
n3     IN A    192.0.2.99
n4     IN A    192.0.2.16
v6only IN AAAA 2001:db8::17
dual   IN A    192.0.2.25
dual   IN AAAA 2001:db8::25
v4only IN A    192.0.2.26
`

func ptrStatic(t *testing.T) *dns.Static {
	t.Helper()
	s, err := dns.NewStaticFromReader(strings.NewReader(ptrZone), "ptr.zone", false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// countingResolver counts the PTR and the forward (A and AAAA) questions
// asked.
type countingResolver struct {
	*dns.Static
	ptr, forward atomic.Int64
}

func (c *countingResolver) LookupPTR(ctx context.Context, ip netip.Addr) (dns.PTRResult, error) {
	c.ptr.Add(1)
	return c.Static.LookupPTR(ctx, ip)
}

func (c *countingResolver) LookupA(ctx context.Context, host string) (dns.AddrResult, error) {
	c.forward.Add(1)
	return c.Static.LookupA(ctx, host)
}

func (c *countingResolver) LookupAAAA(ctx context.Context, host string) (dns.AddrResult, error) {
	c.forward.Add(1)
	return c.Static.LookupAAAA(ctx, host)
}

// A PTR name is the client's name only when it resolves back to the
// client's address (A for IPv4, AAAA for IPv6), is a valid host name, and
// is among the first maxPTRNames names; it comes lower-case, without the
// trailing dot. Every other case is an error (the listener writes
// "unknown"). Each name checked in vain is logged at Warn in Postfix's
// words, "hostname NAME does not resolve to address IP".
func TestClientNameForwardConfirmed(t *testing.T) {
	r := &countingResolver{Static: ptrStatic(t)}
	var logs bytes.Buffer
	name := clientName(r, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	const liar = `level=WARN msg="hostname liar.example.test does not resolve to address 192.0.2.11" hostname=liar.example.test client_ip=192.0.2.11` + "\n"
	for _, tc := range []struct {
		ip, want string
		forward  int64    // forward questions asked
		why      string   // in the error, when want is ""
		warns    []string // the warnings logged, in order
	}{
		{"192.0.2.10", "good.example.test", 1, "", nil},
		{"::ffff:192.0.2.10", "good.example.test", 1, "", nil}, // a v4-mapped client is its IPv4 address
		{"192.0.2.11", "", 1, "liar.example.test does not resolve back to 192.0.2.11", []string{"hostname liar.example.test does not resolve to address 192.0.2.11"}},
		{"192.0.2.12", "", 1, "not found", []string{"hostname nowhere.example.test does not resolve to address 192.0.2.12"}},
		{"192.0.2.13", "", 0, "not a valid host name", nil},
		{"192.0.2.14", "", 0, "not a valid host name", nil},
		{"192.0.2.15", "second.example.test", 2, "", []string{"hostname first.example.test does not resolve to address 192.0.2.15"}},
		{"192.0.2.16", "", maxPTRNames, "only the first 3 PTR names", []string{
			"hostname n1.example.test does not resolve to address 192.0.2.16",
			"hostname n2.example.test does not resolve to address 192.0.2.16",
			"hostname n3.example.test does not resolve to address 192.0.2.16",
		}},
		{"192.0.2.17", "", 1, "no data", []string{"hostname v6only.example.test does not resolve to address 192.0.2.17"}}, // an A question, never AAAA, for an IPv4 client
		{"192.0.2.18", "", 0, "no data", nil}, // a name without PTR
		{"192.0.2.99", "", 0, "not found", nil},
		{"2001:db8::25", "dual.example.test", 1, "", nil},
		{"2001:db8::26", "", 1, "no data", []string{"hostname v4only.example.test does not resolve to address 2001:db8::26"}}, // an AAAA question for an IPv6 client
	} {
		r.forward.Store(0)
		logs.Reset()
		got, err := name(ctx, netip.MustParseAddr(tc.ip))
		switch {
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.ip, got, err, tc.want)
		case tc.want == "" && (err == nil || got != "" || !strings.Contains(err.Error(), tc.why)):
			t.Errorf("%s: %q, %v; want an error saying %q", tc.ip, got, err, tc.why)
		}
		if n := r.forward.Load(); n != tc.forward {
			t.Errorf("%s: %d forward questions, want %d", tc.ip, n, tc.forward)
		}
		var warns []string
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if line == "" {
				continue
			}
			if !strings.Contains(line, "level=WARN") {
				t.Errorf("%s: a log line not at Warn: %s", tc.ip, line)
			}
			_, msg, _ := strings.Cut(line, `msg="`)
			msg, _, _ = strings.Cut(msg, `"`)
			warns = append(warns, msg)
		}
		if !slices.Equal(warns, tc.warns) {
			t.Errorf("%s: warnings %q, want %q", tc.ip, warns, tc.warns)
		}
		if tc.ip == "192.0.2.11" && !strings.HasSuffix(logs.String(), liar) {
			t.Errorf("%s: the warning is\n%s\nwant it to end\n%s", tc.ip, logs.String(), liar)
		}
		if tc.ip == "192.0.2.12" && !strings.Contains(logs.String(), "err=") {
			t.Errorf("%s: the warning does not say why the forward question failed:\n%s", tc.ip, logs.String())
		}
	}
	if _, err := name(ctx, netip.MustParseAddr("192.0.2.12")); !errors.Is(err, dns.ErrNotFound) {
		t.Errorf("the forward lookup's error is not in the chain: %v", err)
	}
}

// A caller that gives up (the daemon stopping) makes no warning: the name
// was not refuted.
func TestClientNameCanceledNoWarning(t *testing.T) {
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := clientName(ptrStatic(t), slog.New(slog.NewTextHandler(&logs, nil)))(ctx, netip.MustParseAddr("192.0.2.11"))
	if err == nil || got != "" {
		t.Errorf("%q, %v; want an error", got, err)
	}
	if logs.Len() != 0 {
		t.Errorf("a canceled naming logged:\n%s", logs.String())
	}
}

// A loopback client (127.0.0.0/8, ::1, v4-mapped loopback) is "localhost"
// without a single question, even through a resolver that would name it
// otherwise, and even through one that cannot ask PTR questions or none.
func TestClientNameLoopback(t *testing.T) {
	s, err := dns.NewStaticFromReader(strings.NewReader(`$ORIGIN 0.0.127.in-addr.arpa.
$TTL 300
1 IN PTR other.example.test.
$ORIGIN example.test.
other IN A 127.0.0.1
`), "loopback.zone", false)
	if err != nil {
		t.Fatal(err)
	}
	r := &countingResolver{Static: s}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	namers := map[string]func(context.Context, netip.Addr) (string, error){
		"counting":        clientName(r, log),
		"without reverse": clientName(withoutReverse{r}, log),
		"nil":             clientName(nil, log),
		"daemon":          (&Daemon{log: log}).clientPTR,
	}
	for what, name := range namers {
		for _, ip := range []string{"127.0.0.1", "127.0.0.5", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::1%lo"} {
			got, err := name(context.Background(), netip.MustParseAddr(ip))
			if err != nil || got != "localhost" {
				t.Errorf("%s: %s is %q, %v; want localhost", what, ip, got, err)
			}
		}
	}
	if p, f := r.ptr.Load(), r.forward.Load(); p != 0 || f != 0 {
		t.Errorf("%d PTR and %d forward questions for loopback clients, want none", p, f)
	}
	// The same resolver is asked for any other client.
	if _, err := clientName(r, log)(context.Background(), netip.MustParseAddr("192.0.2.10")); !errors.Is(err, dns.ErrNotFound) || r.ptr.Load() != 1 {
		t.Errorf("192.0.2.10: %v after %d PTR questions; want not found after 1", err, r.ptr.Load())
	}
	if logs.Len() != 0 {
		t.Errorf("naming loopback clients logged:\n%s", logs.String())
	}
}

// withoutReverse is a resolver that does not implement dns.Reverse (the
// embedded interface promotes only Resolver's methods).
type withoutReverse struct{ dns.Resolver }

// A resolver that cannot ask PTR questions (or none) names no client
// other than loopback; the daemon without an engine neither.
func TestClientNameWithoutReverse(t *testing.T) {
	r := withoutReverse{ptrStatic(t)}
	if _, ok := dns.Resolver(r).(dns.Reverse); ok {
		t.Fatal("the test resolver implements dns.Reverse")
	}
	ip := netip.MustParseAddr("192.0.2.10")
	for what, name := range map[string]func(context.Context, netip.Addr) (string, error){
		"without reverse":       clientName(r, nil),
		"nil":                   clientName(nil, nil),
		"daemon without engine": (&Daemon{}).clientPTR,
	} {
		if got, err := name(context.Background(), ip); !errors.Is(err, errNoReverse) || got != "" {
			t.Errorf("%s: %q, %v; want errNoReverse", what, got, err)
		}
	}
}

// deadlineResolver records the deadline of the contexts it is given.
type deadlineResolver struct {
	*dns.Static
	ptr, forward time.Time
}

func (d *deadlineResolver) LookupPTR(ctx context.Context, ip netip.Addr) (dns.PTRResult, error) {
	d.ptr, _ = ctx.Deadline()
	return d.Static.LookupPTR(ctx, ip)
}

func (d *deadlineResolver) LookupA(ctx context.Context, host string) (dns.AddrResult, error) {
	d.forward, _ = ctx.Deadline()
	return d.Static.LookupA(ctx, host)
}

// The PTR and forward questions share one deadline, ptrTimeout from the
// start, even when the caller gives none.
func TestClientNameDeadline(t *testing.T) {
	r := &deadlineResolver{Static: ptrStatic(t)}
	start := time.Now()
	if got, err := clientName(r, nil)(context.Background(), netip.MustParseAddr("192.0.2.10")); err != nil || got != "good.example.test" {
		t.Fatalf("%q, %v", got, err)
	}
	end := time.Now()
	if r.ptr.IsZero() || r.ptr.Before(start.Add(ptrTimeout)) || r.ptr.After(end.Add(ptrTimeout)) {
		t.Errorf("PTR deadline %v, want ptrTimeout (%v) after the call began", r.ptr.Sub(start), ptrTimeout)
	}
	if !r.forward.Equal(r.ptr) {
		t.Errorf("forward deadline %v, PTR deadline %v: want one budget", r.forward, r.ptr)
	}
}

// validHostName takes host names and refuses what is not one, or could
// pass for an address.
func TestValidHostName(t *testing.T) {
	for name, want := range map[string]bool{
		"mail.example.test":                  true,
		"localhost":                          true,
		"a-b.example.test":                   true,
		"_dmarc.example":                     true, // underscores are tolerated, as Postfix does
		"mx1.123":                            false,
		"192.0.2.1":                          false,
		"1.2.3.4.5":                          false,
		"":                                   false,
		"a..b":                               false,
		"-a.example":                         false,
		"a b.example":                        false,
		"mail.example.":                      false, // callers strip one dot; two is wrong
		"é.example":                          false,
		strings.Repeat("a", 64) + ".example": false,
	} {
		if got := validHostName(name); got != want {
			t.Errorf("validHostName(%q) = %v, want %v", name, got, want)
		}
	}
}
