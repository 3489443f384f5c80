package blackbox_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"golang.org/x/crypto/bcrypt"
)

// netnsClient connects to addr from inside ns (from the address local)
// and reads the greeting.
func netnsClient(t *testing.T, ns *smtpbed.Netns, addr, local string) *smtpClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := ns.DialContext(ctx, "tcp4", netip.MustParseAddrPort(addr), netip.MustParseAddr(local))
	if err != nil {
		t.Fatalf("connect to %s from %s in %s: %v", addr, local, ns.Name, err)
	}
	c, r, err := newSMTPClient(conn)
	if err != nil || r.Code != 220 {
		conn.Close()
		t.Fatalf("greeting from %s: %v %v", addr, r, err)
	}
	t.Cleanup(c.Close)
	return c
}

// ehloKeywords are the extension keywords of an EHLO reply.
func ehloKeywords(r reply) []string {
	var out []string
	for i, line := range strings.Split(r.Text, "\n") {
		if i == 0 {
			continue // the greeting line
		}
		out = append(out, strings.ToUpper(strings.Fields(line + " x")[0]))
	}
	return out
}

func has(list []string, w string) bool {
	for _, x := range list {
		if x == w {
			return true
		}
	}
	return false
}

// TestOpenRelayRefused: a relay listening on an address other machines
// reach (192.0.2.25 in a network namespace), with the default
// relay.networks (loopback), refuses to relay for a client of another
// machine (a second namespace): 554 5.7.1 at RCPT. Its listener has TLS
// and AUTH: AUTH is not advertised before STARTTLS, is after it, and an
// authenticated client may relay (so the 554 is the relay check). A
// policy whose networks include 0.0.0.0/0 or ::/0 on a non-loopback
// listener is refused by postern check and postern relay (exit 1, the
// error at file:line:col), and so is a loopback listener moved onto such
// an address by --listen.
func TestOpenRelayRefused(t *testing.T) {
	pair := smtpbed.NewNetPair(t)
	ca := smtpbed.NewCA(t)
	leaf := ca.Issue(t, "relay.test", "192.0.2.25")
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("carol:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The clients are not on loopback: the relay names them through the
	// policy's resolver, which must not be the system's (no question may
	// leave the machine). An empty static zone answers "not found".
	zone := filepath.Join(dir, "zone.txt")
	if err := os.WriteFile(zone, []byte("; no records: the clients have no reverse DNS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`version: 1
hostname: relay.test
dns: {resolver: static, zone-file: %s}
relay:
  listeners:
    - {name: mta, address: LISTEN, tls: {cert: %s, key: %s}}
  auth: {users-file: %s}
  queue: {startup-spread: 0s}
routing:
  route: sink
  routes:
    sink: {type: relay, address: 127.0.0.1, port: 2526}
tls: {starttls: disable}
`, zone, leaf.CertFile, leaf.KeyFile, users)
	const addr = "192.0.2.25:25"
	r := newRelay(t, relayOptions{Policy: policy, Listen: addr, Wrap: pair.Server.ExecPrefix()})
	r.Start()

	t.Run("relay denied from another network", func(t *testing.T) {
		c := netnsClient(t, pair.Client, addr, "192.0.2.10")
		ehlo, err := c.Cmd("EHLO client.test")
		if err != nil || ehlo.Code != 250 {
			t.Fatalf("EHLO: %v %v", ehlo, err)
		}
		kw := ehloKeywords(ehlo)
		if !has(kw, "STARTTLS") {
			t.Errorf("EHLO does not offer STARTTLS on a listener with tls: %q", kw)
		}
		if has(kw, "AUTH") {
			t.Errorf("EHLO offers AUTH before STARTTLS: %q", kw)
		}
		if rr, err := c.Cmd("MAIL FROM:<alice@sender.test>"); err != nil || rr.Code != 250 {
			t.Fatalf("MAIL: %v %v", rr, err)
		}
		rr, err := c.Cmd("RCPT TO:<bob@dest.test>")
		if err != nil {
			t.Fatal(err)
		}
		if rr.Code != 554 || !strings.HasPrefix(rr.Text, "5.7.1 ") {
			t.Errorf("RCPT from 192.0.2.10: %v, want 554 5.7.1", rr)
		}
	})

	t.Run("AUTH only after STARTTLS, and then relaying", func(t *testing.T) {
		c := netnsClient(t, pair.Client, addr, "192.0.2.11")
		if rr, err := c.Cmd("EHLO client.test"); err != nil || rr.Code != 250 {
			t.Fatalf("EHLO: %v %v", rr, err)
		}
		if rr, err := c.Cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00carol\x00s3cret"))); err != nil || rr.Code/100 == 2 {
			t.Errorf("AUTH before STARTTLS: %v %v, want a refusal", rr, err)
		}
		if err := c.StartTLS(&tls.Config{RootCAs: ca.Pool, ServerName: "relay.test"}); err != nil {
			t.Fatal(err)
		}
		ehlo, err := c.Cmd("EHLO client.test")
		if err != nil || ehlo.Code != 250 {
			t.Fatalf("EHLO after STARTTLS: %v %v", ehlo, err)
		}
		if kw := ehloKeywords(ehlo); !has(kw, "AUTH") {
			t.Errorf("EHLO after STARTTLS does not offer AUTH: %q", kw)
		}
		if rr, err := c.Cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00carol\x00s3cret"))); err != nil || rr.Code != 235 {
			t.Fatalf("AUTH PLAIN after STARTTLS: %v %v, want 235", rr, err)
		}
		if rr, err := c.Cmd("MAIL FROM:<alice@sender.test>"); err != nil || rr.Code != 250 {
			t.Fatalf("MAIL: %v %v", rr, err)
		}
		if rr, err := c.Cmd("RCPT TO:<bob@dest.test>"); err != nil || rr.Code != 250 {
			t.Errorf("RCPT after AUTH: %v %v, want 250", rr, err)
		}
	})

	for _, c := range []struct{ name, networks, entry string }{
		{"0.0.0.0/0 in networks", "[127.0.0.0/8, 0.0.0.0/0]", "0.0.0.0/0"},
		{"::/0 in networks", "\n    - 127.0.0.0/8\n    - \"::/0\"", `"::/0"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := fmt.Sprintf("version: 1\nhostname: relay.test\nrelay:\n  listeners: [{name: mta, address: %s}]\n  networks: %s\n"+
				"routing:\n  route: sink\n  routes:\n    sink: {type: relay, address: 127.0.0.1, port: 2526}\ntls: {starttls: disable}\n", addr, c.networks)
			path := filepath.Join(t.TempDir(), "open.yaml")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			want := positionOf(t, path, text, c.entry)
			for _, argv := range [][]string{
				{posternBin, "check", "-c", path},
				{posternBin, "relay", "-c", path, "--spool", filepath.Join(t.TempDir(), "spool")},
			} {
				code, out := runExit(t, 20*time.Second, argv...)
				if code != 1 {
					t.Errorf("%s: exit %d, want 1\n%s", argv[1], code, out)
				}
				if !strings.Contains(out, want) || !strings.Contains(out, "relay.networks") {
					t.Errorf("%s: the error is not at %q:\n%s", argv[1], want, out)
				}
			}
		})
	}

	t.Run("--listen moves a loopback listener of an open policy", func(t *testing.T) {
		// Permissive networks are harmless on a loopback listener; moved
		// by --listen onto an address other machines reach, the relay is
		// open, and the guard must refuse it as it refuses the policy.
		text := "version: 1\nhostname: relay.test\ndns: {resolver: static, zone-file: " + zone + "}\n" +
			"relay:\n  listeners: [{name: mta, address: 127.0.0.1:10025}]\n  networks: [0.0.0.0/0]\n" +
			"routing:\n  route: sink\n  routes:\n    sink: {type: relay, address: 127.0.0.1, port: 2526}\ntls: {starttls: disable}\n"
		path := filepath.Join(t.TempDir(), "loopback-open.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		// The wildcard, inside the server's namespace: every address of
		// it, 192.0.2.26 among them.
		const moved, reach = "0.0.0.0:2525", "192.0.2.26:2525"
		argv := append(pair.Server.ExecPrefix(), posternBin, "relay", "-c", path, "--spool", filepath.Join(t.TempDir(), "spool"), "--listen", moved)
		cmd := exec.Command(argv[0], argv[1:]...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		})
		// It must exit at once; if it is still up after its start-up,
		// show what a client of another machine gets.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var up bool
		for !up {
			select {
			case err := <-done:
				done <- err
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out.String(), "relay.networks") {
					t.Errorf("postern relay --listen %s with networks [0.0.0.0/0]: %v, want exit 1 and the open-relay error\n%s", moved, err, out.String())
				}
				return
			case <-ctx.Done():
				t.Fatalf("postern relay neither exited nor listened in 20 s:\n%s", out.String())
			case <-time.After(20 * time.Millisecond):
				up = pair.Client.DialReady(netip.MustParseAddrPort(reach))(ctx) == nil
			}
		}
		c := netnsClient(t, pair.Client, reach, "192.0.2.10")
		var got []string
		for _, line := range []string{"EHLO client.test", "MAIL FROM:<alice@sender.test>", "RCPT TO:<bob@dest.test>"} {
			rr, err := c.Cmd("%s", line)
			got = append(got, fmt.Sprintf("%s -> %v %v", line, rr, err))
		}
		t.Errorf("postern relay started with networks [0.0.0.0/0] on %s (moved there by --listen from a loopback listener), an open relay; a client at 192.0.2.10 connecting to %s got:\n  %s\nrelay output:\n%s",
			moved, reach, strings.Join(got, "\n  "), out.String())
	})
}

// positionOf is "FILE:LINE:COL:" of the first occurrence of entry in the
// policy text.
func positionOf(t *testing.T, path, text, entry string) string {
	t.Helper()
	for i, line := range strings.Split(text, "\n") {
		if j := strings.Index(line, entry); j >= 0 {
			return fmt.Sprintf("%s:%d:%d:", path, i+1, j+1)
		}
	}
	t.Fatalf("%q is not in the policy", entry)
	return ""
}

// runExit runs argv and returns its exit code and combined output.
func runExit(t *testing.T, timeout time.Duration, argv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%v: %v\n%s", argv, err, out)
	return -1, ""
}
