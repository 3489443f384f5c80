package smtpbed

import (
	_ "embed"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
)

//go:embed aiosink.py
var aiosinkPy []byte

// AIOOptions configure [StartAIOSink].
type AIOOptions struct {
	// LMTP makes the receiver speak LMTP instead of SMTP.
	LMTP bool
	// Host to listen on; default 127.0.0.1.
	Host string
	// Port to listen on; default a free port (inside a Netns: 25).
	Port int
	// Netns runs the receiver inside this network namespace.
	Netns *Netns
	// Leaf is the certificate offered on STARTTLS; nil: STARTTLS is not
	// offered.
	Leaf *Leaf
	// RequireTLS advertises REQUIRETLS (RFC 8689) and accepts the
	// REQUIRETLS parameter of MAIL FROM (recorded in MailOptions).
	RequireTLS bool
	// LMTPReplies are used in turn for the recipients of each LMTP message
	// (default: all "250 2.0.0 ok").
	LMTPReplies []string
	// DSN advertises DSN (RFC 3461) and records the NOTIFY and ORCPT
	// parameters of each RCPT TO (RcptParams) and RET and ENVID of MAIL
	// FROM (MailOptions).
	DSN bool
	// DataReply is the SMTP reply to the end of DATA (default "250 2.0.0
	// queued"); the message is recorded whatever it says.
	DataReply string
}

// AIOSink is a running aiosmtpd receiver (Debian python3-aiosmtpd) with
// STARTTLS.
type AIOSink struct {
	Addr netip.AddrPort
	Dir  string
	Proc *testbed.Process
}

// AIOMessage is one message received by an [AIOSink].
type AIOMessage struct {
	From        string   `json:"from"`
	Rcpts       []string `json:"rcpts"`
	MailOptions []string `json:"mail_options"`
	RcptOptions []string `json:"rcpt_options"`
	// RcptParams are the DSN parameters of each recipient, with
	// AIOOptions.DSN.
	RcptParams map[string][]string `json:"rcpt_params"`
	TLS        bool                `json:"tls"`
	Peer       string              `json:"peer"`
	Helo       string              `json:"helo"`
	Content    []byte              `json:"-"` // as received, dots unstuffed, CRLF kept
}

// StartAIOSink starts the receiver and waits until it accepts connections.
// It needs /usr/bin/python3 with the aiosmtpd module (the pyenv python3 on
// PATH does not have it; testbed.md section 1c).
func StartAIOSink(t testing.TB, o AIOOptions) *AIOSink {
	t.Helper()
	py := testbed.Require(t, "python3")
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		py = "/usr/bin/python3"
	}
	host, port := testbed.ListenOn(t, o.Host, o.Port, o.Netns != nil, 25)
	dir := t.TempDir()
	script := filepath.Join(dir, "aiosink.py")
	if err := os.WriteFile(script, aiosinkPy, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	mode := "smtp"
	if o.LMTP {
		mode = "lmtp"
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr(host), uint16(port))
	cert, key := "-", "-"
	if o.Leaf != nil {
		cert, key = o.Leaf.CertFile, o.Leaf.KeyFile
	}
	var fl []string
	if o.RequireTLS {
		fl = append(fl, "requiretls")
	}
	if o.DSN {
		fl = append(fl, "dsn")
	}
	flags := strings.Join(fl, ",")
	if flags == "" {
		flags = "-"
	}
	dataReply := "-"
	if o.DataReply != "" {
		dataReply = o.DataReply
	}
	argv := []string{py, script, mode, host, strconv.Itoa(port), cert, key, out, strings.Join(o.LMTPReplies, "|"), flags, dataReply}
	ready := testbed.DialReady(addr.String())
	if o.Netns != nil {
		argv = append(o.Netns.ExecPrefix(), argv...)
		ready = o.Netns.DialReady(addr)
	}
	p := testbed.Start(t, dir, argv...)
	testbed.WaitFor(t, p, 15*time.Second, ready)
	return &AIOSink{Addr: addr, Dir: out, Proc: p}
}

// Messages returns what was received so far, in order.
func (s *AIOSink) Messages(t testing.TB) []AIOMessage {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.Dir, "msg-*.json"))
	sort.Slice(files, func(i, j int) bool {
		return len(files[i]) < len(files[j]) || len(files[i]) == len(files[j]) && files[i] < files[j]
	})
	var msgs []AIOMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m AIOMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m.Content, err = os.ReadFile(strings.TrimSuffix(f, ".json") + ".eml")
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// WaitMessages waits up to 5s for n messages.
func (s *AIOSink) WaitMessages(t testing.TB, n int) []AIOMessage {
	t.Helper()
	return waitMessages(n, func() []AIOMessage { return s.Messages(t) })
}
