package smtpbed

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

// SinkOptions configure [StartSink].
type SinkOptions struct {
	// Host to listen on; default 127.0.0.1. IPv6 literals are fine.
	Host string
	// Port to listen on; default a free port (inside a Netns: 25).
	Port int
	// LMTP makes the sink speak LMTP (-L).
	LMTP bool
	// Args are extra smtp-sink options, e.g. "-r", "RCPT" or "-Q", "DATA".
	Args []string
	// Netns runs the sink inside this network namespace.
	Netns *Netns
}

// Sink is a running Postfix smtp-sink that writes every message it
// receives to a file (-d).
type Sink struct {
	Addr netip.AddrPort
	Dir  string
	Proc *testbed.Process
}

// StartSink starts smtp-sink and waits until it accepts connections. The
// test is skipped when Postfix is not installed (failed with
// POSTERN_REQUIRE_PEERS=1).
func StartSink(t testing.TB, o SinkOptions) *Sink {
	t.Helper()
	bin := testbed.Require(t, "smtp-sink")
	host, port := testbed.ListenOn(t, o.Host, o.Port, o.Netns != nil, 25)
	// smtp-sink drops to nobody (-u) before writing captures, and t.TempDir
	// is inside a directory only root may enter: use a directory of our own.
	dir, err := os.MkdirTemp("", "postern-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr(host), uint16(port))
	argv := []string{bin}
	if os.Geteuid() == 0 {
		argv = append(argv, "-u", "nobody")
	}
	argv = append(argv, "-d", filepath.Join(dir, "%H%M%S."))
	if o.LMTP {
		argv = append(argv, "-L")
	}
	argv = append(argv, o.Args...)
	argv = append(argv, "inet:"+addr.String(), "64")
	var ready func(ctx context.Context) error
	if o.Netns != nil {
		argv = append(o.Netns.ExecPrefix(), argv...)
		ready = o.Netns.DialReady(addr)
	} else {
		ready = testbed.DialReady(addr.String())
	}
	p := testbed.Start(t, dir, argv...)
	testbed.WaitFor(t, p, 5*time.Second, ready)
	return &Sink{Addr: addr, Dir: dir, Proc: p}
}

// Dumped is one message captured by smtp-sink.
type Dumped struct {
	ClientAddr string   // X-Client-Addr ("ipv6:" prefix for IPv6)
	Proto      string   // SMTP, ESMTP or LMTP
	Helo       string   // EHLO/HELO argument
	MailArgs   string   // everything after "MAIL FROM:"
	RcptArgs   []string // everything after "RCPT TO:", one per RCPT
	Data       string   // the message as received (LF line ends, dots unstuffed)
}

// Messages reads the capture files, oldest first.
func (s *Sink) Messages(t testing.TB) []Dumped {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.Dir, "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	type fm struct {
		mod  time.Time
		name string
	}
	var fms []fm
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		fms = append(fms, fm{st.ModTime(), f})
	}
	sort.SliceStable(fms, func(i, j int) bool { return fms[i].mod.Before(fms[j].mod) })
	var out []Dumped
	for _, f := range fms {
		b, err := os.ReadFile(f.name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, parseDump(b))
	}
	return out
}

// WaitMessages waits until n messages were captured (smtp-sink writes the
// file as the data arrives, and closes it after the final dot).
func (s *Sink) WaitMessages(t testing.TB, n int) []Dumped {
	t.Helper()
	return waitMessages(n, func() []Dumped { return s.Messages(t) })
}

// waitMessages polls get every 20ms until it returns at least n messages
// or 5s have passed, and returns what it got last.
func waitMessages[M any](n int, get func() []M) []M {
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := get()
		if len(m) >= n || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func parseDump(b []byte) Dumped {
	var d Dumped
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var body []string
	inBody := false
	received := 0
	for sc.Scan() {
		l := sc.Text()
		if inBody {
			body = append(body, l)
			continue
		}
		if received > 0 {
			// The Received header is three lines; the message follows.
			received++
			if received == 3 {
				inBody = true
			}
			continue
		}
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "X-Client-Addr":
			d.ClientAddr = v
		case "X-Client-Proto":
			d.Proto = v
		case "X-Helo-Args":
			d.Helo = v
		case "X-Mail-Args":
			d.MailArgs = v
		case "X-Rcpt-Args":
			d.RcptArgs = append(d.RcptArgs, v)
		case "Received":
			received = 1
		}
	}
	// The dump ends with an empty line of its own.
	if n := len(body); n > 0 && body[n-1] == "" {
		body = body[:n-1]
	}
	if len(body) > 0 {
		d.Data = strings.Join(body, "\n") + "\n"
	}
	return d
}

// DialReadyFunc is a ready check that dials with dial.
func DialReadyFunc(dial func(ctx context.Context) (net.Conn, error)) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c, err := dial(ctx)
		if err != nil {
			return err
		}
		return c.Close()
	}
}
