package main

// `postern send` run as a user runs it: the binary is built once (TestMain)
// and delivers to real receivers on loopback — smtp-sink, aiosmtpd with
// STARTTLS and a throwaway CA, and aiosmtpd with AUTH — with policies that
// use relay routes and a static zone file.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
)

// sendBinDir holds the postern binary built for these tests.
var (
	sendBinDir  string
	sendBinOnce sync.Once
	sendBinPath string
	sendBinErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postern-send-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sendBinDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// posternBinary builds the command once, on first use, so that tests that
// do not run it do not wait for the build.
func posternBinary(t testing.TB) string {
	t.Helper()
	sendBinOnce.Do(func() {
		sendBinPath = filepath.Join(sendBinDir, "postern")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", sendBinPath, ".").CombinedOutput()
		if err != nil {
			sendBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if sendBinErr != nil {
		t.Fatal(sendBinErr)
	}
	return sendBinPath
}

// sendRun is one run of the binary.
type sendRun struct {
	code           int
	stdout, stderr string
}

// runSend runs `postern send args...` in dir with stdin and extra
// environment variables, and returns its exit status and output.
func runSend(t testing.TB, dir string, stdin string, env []string, args ...string) sendRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, posternBinary(t), append([]string{"send"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := sendRun{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("postern send %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, r.stdout, r.stderr)
	}
	return r
}

func (r sendRun) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// sendZone resolves the relay names of these tests to loopback (relays may
// be on loopback; MX hosts may not).
const sendZone = `$TTL 300
$ORIGIN relay.test.
@          IN SOA ns1 hostmaster 1 3600 600 604800 300
@          IN NS  ns1
ns1        IN A   192.0.2.53
smtp       IN A   127.0.0.1
auth       IN A   127.0.0.1
$ORIGIN nullmx.test.
@          IN SOA ns1.relay.test. hostmaster.relay.test. 1 3600 600 604800 300
@          IN NS  ns1.relay.test.
@          IN MX  0 .
`

// sendMessage has CRLF line ends, a lone dot and dot-prefixed lines.
const sendMessage = "From: Alice <alice@sender.test>\r\n" +
	"To: Bob <bob@dest.test>\r\n" +
	"Subject: postern send test\r\n" +
	"Message-ID: <send-test@sender.test>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	".\r\n" +
	"..two dots\r\n" +
	".one dot\r\n" +
	"Bye.\r\n"

// sendDir writes policy.yaml (routes plus the static zone), zone.txt and
// msg.eml into a new directory.
func sendDir(t testing.TB, policy string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"policy.yaml": "version: 1\nhostname: mta.sender.test\n" + policy + "dns:\n  resolver: static\n  zone-file: zone.txt\n",
		"zone.txt":    sendZone,
		"msg.eml":     sendMessage,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sendRoute is a policy routing every recipient to one relay.
func sendRoute(address string, port uint16, extra ...string) string {
	s := fmt.Sprintf("routing:\n  route: relay\n  routes:\n    relay:\n      type: relay\n      address: %s\n      port: %d\n", address, port)
	for _, e := range extra {
		s += "      " + e + "\n"
	}
	return s
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// (a) A message from a .eml file, over STARTTLS (require) to aiosmtpd, the
// certificate verified with --ca-file.
func TestSendSTARTTLS(t *testing.T) {
	t.Parallel()
	ca := smtpbed.NewCA(t)
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Leaf: ca.Issue(t, "smtp.relay.test")})
	dir := sendDir(t, sendRoute("smtp.relay.test", sink.Addr.Port())+"tls:\n  starttls: require\n")
	args := []string{"-c", "policy.yaml", "--from", "alice@sender.test", "--to", "bob@dest.test", "--to", "carol@dest.test"}

	r := runSend(t, dir, "", nil, append(args, "--ca-file", ca.CertFile, "msg.eml")...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("want exit 0 and nothing on stderr:\n%s", r)
	}
	out := lines(r.stdout)
	if len(out) != 2 {
		t.Fatalf("want one line per recipient:\n%s", r)
	}
	for i, rcpt := range []string{"bob@dest.test", "carol@dest.test"} {
		want := regexp.MustCompile(`^` + regexp.QuoteMeta(rcpt) + ` DELIVERED 250 2\.0\.0 "queued" route=relay host=smtp\.relay\.test addr=` +
			regexp.QuoteMeta(sink.Addr.String()) + ` tls=TLS 1\.3/TLS_[A-Z0-9_]+ verified=pkix in \d+(\.\d+)?m?s$`)
		if !want.MatchString(out[i]) {
			t.Errorf("line %d:\n%s\ndoes not match %s", i, out[i], want)
		}
	}
	msgs := sink.WaitMessages(t, 1)
	if len(msgs) != 1 {
		t.Fatalf("the receiver has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !m.TLS || m.From != "alice@sender.test" || strings.Join(m.Rcpts, ",") != "bob@dest.test,carol@dest.test" || m.Helo != "mta.sender.test" {
		t.Errorf("received %+v", m)
	}
	if string(m.Content) != sendMessage {
		t.Errorf("message altered in transit:\n got %q\nwant %q", m.Content, sendMessage)
	}

	// Without --ca-file the system roots do not know the throwaway CA:
	// nothing is sent, the failure is temporary, exit 3.
	r = runSend(t, dir, "", nil, append(args, "msg.eml")...)
	if r.code != 3 || len(lines(r.stdout)) != 2 || strings.Count(r.stdout, " TEMPORARY 454 4.7.5 ") != 2 || !strings.Contains(r.stdout, "class=tls") {
		t.Errorf("untrusted certificate: want exit 3 and two TEMPORARY 454 lines:\n%s", r)
	}
	if n := len(sink.Messages(t)); n != 1 {
		t.Errorf("the receiver has %d messages after the refused session, want 1", n)
	}

	// --format json carries each recipient's TLS-RPT records (RFC 8460),
	// and postern tlsrpt makes the report of them: one failed session
	// (certificate-not-trusted), counted once for the two recipients.
	r = runSend(t, dir, "", nil, append(args, "--format", "json", "msg.eml")...)
	var results []struct {
		TLSRPT []struct {
			PolicyType string `json:"policy_type"`
			ResultType string `json:"result_type"`
			Receiving  string `json:"receiving_ip"`
		} `json:"tlsrpt"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil || len(results) != 2 {
		t.Fatalf("--format json: %v\n%s", err, r)
	}
	for _, res := range results {
		if len(res.TLSRPT) != 1 || res.TLSRPT[0].PolicyType != "no-policy-found" || res.TLSRPT[0].ResultType != "certificate-not-trusted" ||
			res.TLSRPT[0].Receiving != sink.Addr.Addr().String() {
			t.Errorf("tlsrpt records %+v, want one certificate-not-trusted session at %s", res.TLSRPT, sink.Addr.Addr())
		}
	}
	var report bytes.Buffer
	if code := runIO([]string{"tlsrpt", "--org", "Sender", "--contact", "tlsrpt@sender.test"}, strings.NewReader(r.stdout), &report, io.Discard); code != 0 ||
		!strings.Contains(report.String(), `"total-failure-session-count": 1`) || !strings.Contains(report.String(), `"result-type": "certificate-not-trusted"`) {
		t.Errorf("postern tlsrpt: exit %d\n%s", code, report.String())
	}

	// A --ca-file that is not PEM: exit 1 before anything is attempted.
	if r := runSend(t, dir, "", nil, append(args, "--ca-file", "msg.eml", "msg.eml")...); r.code != 1 || !strings.Contains(r.stderr, "no PEM certificate") || r.stdout != "" {
		t.Errorf("--ca-file without a certificate:\n%s", r)
	}
}

// sendResultJSON mirrors the documented fields of one JSON result.
type sendResultJSON struct {
	Recipient string `json:"recipient"`
	Status    string `json:"status"`
	Route     string `json:"route"`
	Code      int    `json:"code"`
	Enhanced  string `json:"enhanced_code"`
	Text      string `json:"text"`
	Class     string `json:"class"`
	Host      string `json:"host"`
	Address   string `json:"address"`
	Source    string `json:"source"`
	Protocol  string `json:"protocol"`
	TLS       *struct {
		Version  string `json:"version"`
		Cipher   string `json:"cipher"`
		Verified string `json:"verified"`
	} `json:"tls"`
	Warnings  []string `json:"warnings"`
	Duration  string   `json:"duration"`
	RetryAt   string   `json:"retry_after"`
	RetryFrom string   `json:"retry_from"`
	Notify    bool     `json:"notify_delay"`
}

func decodeSendJSON(t testing.TB, r sendRun) []sendResultJSON {
	t.Helper()
	var out []sendResultJSON
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, r)
	}
	return out
}

// (b) The message on standard input ("-"), JSON output checked field by
// field.
func TestSendStdinJSON(t *testing.T) {
	t.Parallel()
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	dir := sendDir(t, sendRoute("127.0.0.1", sink.Addr.Port()))
	r := runSend(t, dir, sendMessage, nil, "-c", "policy.yaml", "--from", "alice@sender.test",
		"--to", "bob@dest.test", "--to", "carol@other.test", "--format", "json", "-")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("want exit 0:\n%s", r)
	}
	res := decodeSendJSON(t, r)
	if len(res) != 2 {
		t.Fatalf("%d results, want 2:\n%s", len(res), r)
	}
	for i, rcpt := range []string{"bob@dest.test", "carol@other.test"} {
		j := res[i]
		src, err := netip.ParseAddrPort(j.Source)
		d, derr := time.ParseDuration(j.Duration)
		if j.Recipient != rcpt || j.Status != "delivered" || j.Route != "relay" || j.Code != 250 || j.Enhanced != "2.0.0" ||
			j.Text != "Ok" || j.Class != "" || j.Host != "127.0.0.1" || j.Address != sink.Addr.String() ||
			err != nil || src.Addr() != netip.MustParseAddr("127.0.0.1") || j.Protocol != "smtp" || j.TLS != nil ||
			len(j.Warnings) != 0 || derr != nil || d <= 0 || d > 30*time.Second || j.RetryAt != "" {
			t.Errorf("result %d: %+v", i, j)
		}
	}
	msgs := sink.WaitMessages(t, 2) // one transaction per recipient domain
	if len(msgs) != 2 {
		t.Fatalf("the sink has %d messages, want 2", len(msgs))
	}
	want := strings.ReplaceAll(sendMessage, "\r\n", "\n")
	for _, m := range msgs {
		if m.Data != want || m.MailArgs != "<alice@sender.test>" {
			t.Errorf("captured %+v\nwant data %q", m, want)
		}
	}
}

// (c) Exit 3 when some recipients are not delivered: refused at RCPT with a
// 4xx or a 5xx, or failed before any connection (null MX).
func TestSendRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		args   []string
		status string
		line   string
	}{
		{"RCPT 4xx", []string{"-r", "RCPT"}, "temporary", ` TEMPORARY 450 4.3.0 "Error: command failed" route=bad `},
		{"RCPT 5xx", []string{"-f", "RCPT"}, "permanent", ` PERMANENT 500 5.3.0 "Error: command failed" route=bad `},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			good := smtpbed.StartSink(t, smtpbed.SinkOptions{})
			bad := smtpbed.StartSink(t, smtpbed.SinkOptions{Args: tt.args})
			policy := fmt.Sprintf(`routing:
  route:
    - if: rcpt_domain == "good.test"
      then: good
    - if: rcpt_domain == "bad.test"
      then: bad
    - else: mx
  routes:
    good: {type: relay, address: 127.0.0.1, port: %d}
    bad: {type: relay, address: 127.0.0.1, port: %d}
`, good.Addr.Port(), bad.Addr.Port())
			dir := sendDir(t, policy)
			args := []string{"-c", "policy.yaml", "--from", "alice@sender.test", "--to", "ok@good.test", "--to", "no@bad.test", "--to", "x@nullmx.test"}
			r := runSend(t, dir, "", nil, append(args, "msg.eml")...)
			out := lines(r.stdout)
			if r.code != 3 || len(out) != 3 {
				t.Fatalf("want exit 3 and three lines:\n%s", r)
			}
			if !strings.HasPrefix(out[0], "ok@good.test DELIVERED 250 ") ||
				!strings.HasPrefix(out[1], "no@bad.test"+tt.line) || !strings.Contains(out[1], " class=unexpected-reply ") ||
				!strings.HasPrefix(out[2], "x@nullmx.test PERMANENT 550 ") || !strings.Contains(out[2], "route=mx") {
				t.Errorf("lines:\n%s", r.stdout)
			}
			r = runSend(t, dir, "", nil, append(args, "--format", "json", "msg.eml")...)
			res := decodeSendJSON(t, r)
			if r.code != 3 || len(res) != 3 || res[0].Status != "delivered" || res[1].Status != tt.status ||
				res[1].Class != "unexpected-reply" || res[2].Status != "permanent" || res[2].Host != "" || res[2].Address != "" {
				t.Errorf("JSON: %+v\n%s", res, r)
			}
			if n := len(good.WaitMessages(t, 2)); n != 2 {
				t.Errorf("the good sink has %d messages, want 2", n)
			}
		})
	}
}

// (d) Exit 1 when the policy does not load or the message cannot be read,
// exit 2 for bad usage; nothing on stdout either way.
func TestSendExitCodes(t *testing.T) {
	t.Parallel()
	dir := sendDir(t, sendRoute("127.0.0.1", 1))
	bad := "version: 1\nrouting:\n  route: relay\n  routes:\n    relay: {type: relay, address: 127.0.0.1, prot: 25}\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.eml"), []byte("\n \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"--from", "a@sender.test", "--to", "b@dest.test"}
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"policy with an unknown key", append([]string{"-c", "bad.yaml"}, append(env, "msg.eml")...), 1, "bad.yaml:5:"},
		{"policy missing", append([]string{"-c", "missing.yaml"}, append(env, "msg.eml")...), 1, "missing.yaml"},
		{"message file missing", append([]string{"-c", "policy.yaml"}, append(env, "missing.eml")...), 1, "missing.eml"},
		{"empty message", append([]string{"-c", "policy.yaml"}, append(env, "empty.eml")...), 1, "is empty"},
		{"no --to", []string{"-c", "policy.yaml", "--from", "a@sender.test", "msg.eml"}, 2, "at least one --to"},
		{"no -c", append(env[:len(env):len(env)], "msg.eml"), 2, "-c POLICY is required"},
		{"two files", append([]string{"-c", "policy.yaml"}, append(env, "msg.eml", "msg.eml")...), 2, "one message at a time"},
		{"bad --format", append([]string{"-c", "policy.yaml", "--format", "yaml"}, append(env, "msg.eml")...), 2, "--format"},
		{"unknown flag", append([]string{"-c", "policy.yaml", "--frobnicate"}, append(env, "msg.eml")...), 2, "frobnicate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runSend(t, dir, "", nil, tt.args...)
			if r.code != tt.code || r.stdout != "" || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("want exit %d, empty stdout, stderr containing %q:\n%s", tt.code, tt.stderr, r)
			}
		})
	}
}

// authServerPy is an aiosmtpd receiver that offers AUTH PLAIN and LOGIN
// without TLS, records the credentials it is given, and refuses them all.
const authServerPy = `import asyncio, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult
host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def authenticator(server, session, envelope, mechanism, auth_data):
    with open(log, "a") as f:
        f.write("%s %s %s\n" % (mechanism, auth_data.login.decode(), auth_data.password.decode()))
    return AuthResult(success=False, handled=False)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 queued"
class C(Controller):
    def factory(self):
        return SMTP(self.handler, hostname="auth.relay.test", authenticator=authenticator, auth_require_tls=False)
c = C(Handler(), hostname=host, port=port)
c.start()
print("listening %s:%d" % (host, port), flush=True)
asyncio.get_event_loop().run_forever()
`

// startAuthServer starts authServerPy and returns its address and the file
// where it writes "MECHANISM LOGIN PASSWORD" for every attempt.
func startAuthServer(t testing.TB) (netip.AddrPort, string) {
	t.Helper()
	py := testbed.Require(t, "python3")
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		py = "/usr/bin/python3" // Debian's python3-aiosmtpd (testbed.md 1c)
	}
	dir := t.TempDir()
	script, log := filepath.Join(dir, "authsink.py"), filepath.Join(dir, "auth.log")
	if err := os.WriteFile(script, []byte(authServerPy), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testbed.FreePort(t, "127.0.0.1")
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	p := testbed.Start(t, dir, py, script, "127.0.0.1", strconv.Itoa(port), log)
	testbed.WaitFor(t, p, 15*time.Second, testbed.DialReady(addr.String()))
	return addr, log
}

// secretForms are the ways a secret could leak: as is, and inside the
// base64 of AUTH PLAIN or LOGIN.
func secretForms(user, secret string) []string {
	b64 := base64.StdEncoding.EncodeToString
	return []string{secret, b64([]byte("\x00" + user + "\x00" + secret)), b64([]byte(secret))}
}

// (e) The relay's secret never appears in the output, whatever happens at
// AUTH: refused by a server that offers AUTH, not offered at all
// (smtp-sink), or not set.
func TestSendSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const user, secret = "relay-user", "Zq8-never-print-me-7Kx"
	env := []string{"POSTERN_SEND_TEST_SECRET=" + secret}
	auth := []string{"allow-plaintext-auth: true", "auth:", "  username: " + user, "  secret: {env: POSTERN_SEND_TEST_SECRET}"}
	args := []string{"-c", "policy.yaml", "--from", "alice@sender.test", "--to", "bob@dest.test"}
	noLeak := func(t *testing.T, r sendRun) {
		t.Helper()
		for _, s := range secretForms(user, secret) {
			if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
				t.Errorf("the secret (as %q) is in the output:\n%s", s, r)
			}
		}
	}

	t.Run("AUTH refused", func(t *testing.T) {
		t.Parallel()
		addr, log := startAuthServer(t)
		dir := sendDir(t, sendRoute("auth.relay.test", addr.Port(), auth...))
		for _, format := range []string{"text", "json"} {
			r := runSend(t, dir, "", env, append(args, "--format", format, "msg.eml")...)
			noLeak(t, r)
			if r.code != 3 || !strings.Contains(r.stdout, "535") || !strings.Contains(r.stdout, "5.7.8") {
				t.Errorf("%s: want exit 3 and the 535 reply:\n%s", format, r)
			}
		}
		// The server was given the real credentials: the test is not
		// vacuous.
		got, err := os.ReadFile(log)
		if err != nil || !strings.Contains(string(got), " "+user+" "+secret+"\n") {
			t.Errorf("the server did not receive the credentials (%v): %q", err, got)
		}
	})
	t.Run("AUTH not offered", func(t *testing.T) {
		t.Parallel()
		sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
		dir := sendDir(t, sendRoute("127.0.0.1", sink.Addr.Port(), auth...))
		r := runSend(t, dir, "", env, append(args, "--format", "json", "msg.eml")...)
		noLeak(t, r)
		// smtp-sink offers no AUTH; the engine delivers without it (as
		// Postfix's smtp client does). Record what happened.
		t.Logf("relay without AUTH: %s", r)
	})
	t.Run("secret not set", func(t *testing.T) {
		t.Parallel()
		sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
		dir := sendDir(t, sendRoute("127.0.0.1", sink.Addr.Port(), auth...))
		r := runSend(t, dir, "", []string{"POSTERN_SEND_TEST_SECRET="}, append(args, "msg.eml")...)
		noLeak(t, r)
		if r.code != 3 || !strings.Contains(r.stdout, "bob@dest.test TEMPORARY 451 ") || !strings.Contains(r.stdout, "POSTERN_SEND_TEST_SECRET is not set") {
			t.Errorf("want exit 3 and a temporary failure naming the variable:\n%s", r)
		}
		// The credentials are read before anything is connected to: the
		// result names no server address, so nothing can be on its way
		// to the sink.
		if strings.Contains(r.stdout, " addr=") {
			t.Errorf("a connection was made without the credentials:\n%s", r)
		}
		if n := len(sink.Messages(t)); n != 0 {
			t.Errorf("%d messages delivered without the credentials", n)
		}
	})
}
