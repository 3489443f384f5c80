package transport_test

// SMTP AUTH, and keeping secrets out of results and logs.

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

func TestAuth(t *testing.T) {
	ca := smtpbed.NewCA(t)
	tcfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "relay.example.test").Cert}}
	const secret = "s3cr3t-pa55"
	relay := func(mods ...func(*transport.Host)) func(*transport.Host) {
		return func(h *transport.Host) {
			h.Name, h.IsRelay = "relay.example.test", true
			h.Auth = &transport.Auth{Username: "user", Secret: secret}
			for _, m := range mods {
				m(h)
			}
		}
	}
	c := newClient(t, ca.Pool)
	t.Run("plaintext refused", func(t *testing.T) {
		s := newFakeServer(t, script{ext: append([]string{"AUTH PLAIN LOGIN"}, defaultExt...)})
		res := deliver(t, c, with(planFor(s.Addr), relay()), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
		if contains(s.Wire(), "AUTH") || contains(s.Wire(), marker) {
			t.Error("credentials or message sent in plaintext")
		}
	})
	t.Run("plaintext allowed, PLAIN", func(t *testing.T) {
		s := newFakeServer(t, script{ext: append([]string{"AUTH PLAIN LOGIN"}, defaultExt...)})
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.AllowPlaintextAuth = true })), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if !contains(s.Wire(), "AUTH PLAIN AHVzZXIAczNjcjN0LXBhNTU=") {
			t.Errorf("wire %q", s.Wire())
		}
	})
	t.Run("TLS, LOGIN only", func(t *testing.T) {
		s := newFakeServer(t, script{tls: tcfg, ext: append([]string{"AUTH=LOGIN"}, defaultExt...)})
		res := deliver(t, c, with(planFor(s.Addr), relay(requireTLS)), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusDelivered, transport.ClassNone)
		if contains(s.Wire(), "AUTH") {
			t.Error("AUTH visible on the wire")
		}
	})
	t.Run("rejected", func(t *testing.T) {
		s := newFakeServer(t, script{ext: append([]string{"AUTH PLAIN"}, defaultExt...), reply: map[string]string{"AUTH": "535 5.7.8 bad credentials"}})
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.AllowPlaintextAuth = true })), newMsg(body, "b@example.test"))
		// Refused credentials defer (a rotated password must not bounce
		// mail), keeping the server's reply in the text.
		wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
		if res[0].Code != 454 || !strings.Contains(res[0].Text, "535 5.7.8 bad credentials") {
			t.Errorf("code %d text %q", res[0].Code, res[0].Text)
		}
		if strings.Contains(dump(res), secret) {
			t.Error("secret in results")
		}
	})
	t.Run("not offered", func(t *testing.T) {
		s := newFakeServer(t, script{})
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.AllowPlaintextAuth = true })), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassUnexpectedReply)
	})
	t.Run("implicit TLS", func(t *testing.T) {
		s := newFakeServer(t, script{})
		// The fake server speaks plaintext: implicit TLS must fail, never
		// fall back.
		res := deliver(t, c, with(planFor(s.Addr), relay(func(h *transport.Host) { h.ImplicitTLS = true })), newMsg(body, "b@example.test"))
		wantAll(t, res, transport.StatusTemporary, transport.ClassTLS)
		if s.Conns() != 1 || contains(s.Wire(), "EHLO") {
			t.Errorf("conns %d, wire %q", s.Conns(), s.Wire())
		}
	})
}

// A server that repeats the AUTH line (or LOGIN's password line) and the
// decoded password in its refusal: none of it reaches the results.
func TestAuthEchoRedacted(t *testing.T) {
	const user, secret = "user", "s3cr3t-pa55"
	enc := base64.StdEncoding.EncodeToString
	forms := []string{
		secret,
		enc([]byte("\x00" + user + "\x00" + secret)),                   // the PLAIN blob
		strings.TrimRight(enc([]byte("\x00"+user+"\x00"+secret)), "="), // ... unpadded
		enc([]byte(secret)),                         // the LOGIN password
		strings.TrimRight(enc([]byte(secret)), "="), // ... unpadded
	}
	for _, tt := range []struct {
		name, ext, reply string
		wantText         string // "" when the reply is not shown at all
	}{
		{"PLAIN echo", "AUTH PLAIN", "", "authentication refused (535 5.7.8 you sent: AUTH PLAIN [redacted] password [redacted] is wrong)"},
		{"LOGIN echo", "AUTH LOGIN", "", "authentication refused (535 5.7.8 you sent: [redacted] password [redacted] is wrong)"},
		{"PLAIN echo, unpadded", "AUTH PLAIN", "535 5.7.8 got " + forms[2] + " and " + forms[4], "authentication refused (535 5.7.8 got [redacted] and [redacted])"},
		{"4xx echo", "AUTH PLAIN", "454 4.7.0 try later, " + secret, "try later, [redacted]"},
		// A reply that is not SMTP (a NUL byte) is reported without its text.
		{"garbage echo", "AUTH PLAIN", "535 5.7.8 \x00" + user + "\x00" + secret, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := script{ext: append([]string{tt.ext}, defaultExt...), authEcho: tt.reply == ""}
			if tt.reply != "" {
				sc.reply = map[string]string{"AUTH": tt.reply}
			}
			s := newFakeServer(t, sc)
			p := with(planFor(s.Addr), func(h *transport.Host) {
				h.Name, h.IsRelay, h.AllowPlaintextAuth = "relay.example.test", true, true
				h.Auth = &transport.Auth{Username: user, Secret: secret}
			})
			res := deliver(t, newClient(t, nil), p, newMsg(body, "b@example.test"))
			wantStatus(t, res, transport.StatusTemporary)
			if !s.hasCommand("AUTH") || s.hasCommand("MAIL") {
				t.Fatalf("commands %q", s.Commands())
			}
			// Failure messages show where a leak is, not the secret.
			mask := func(s string) string {
				for i, f := range forms {
					s = strings.ReplaceAll(s, f, fmt.Sprintf("<LEAK%d>", i))
				}
				return s
			}
			r := res[0]
			if tt.wantText != "" && r.Text != tt.wantText {
				t.Errorf("text %q, want %q", mask(r.Text), tt.wantText)
			}
			if tt.wantText == "" && (r.Class != transport.ClassUnexpectedReply || !strings.HasPrefix(r.Text, "bad reply to AUTH PLAIN")) {
				t.Errorf("%s", mask(dump(res)))
			}
			out := r.Text + "\n" + r.Err.Error() + "\n" + fmt.Sprintf("%+v", res) + "\n" + fmt.Sprintf("%v", res) + "\n" + dump(res)
			for e := error(r.Err); e != nil; e = errors.Unwrap(e) {
				out += "\n" + e.Error()
			}
			if m := mask(out); m != out {
				t.Errorf("the secret (forms <LEAKn>) is in the results:\n%s", m)
			}
		})
	}
}

func TestSecretRedaction(t *testing.T) {
	const secret = "hunter2-secret"
	p := &transport.Plan{Hosts: []transport.Host{{Name: "relay", Auth: &transport.Auth{Username: "u", Secret: secret}}}}
	var buf bytes.Buffer
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&buf, f+"\n", *p.Hosts[0].Auth)
		fmt.Fprintf(&buf, f+"\n", p.Hosts[0].Auth.Secret)
		fmt.Fprintf(&buf, f+"\n", p.Hosts)
	}
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "auth", p.Hosts[0].Auth, "secret", p.Hosts[0].Auth.Secret)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "secret", p.Hosts[0].Auth.Secret)
	if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), fmt.Sprintf("%x", secret)) {
		t.Errorf("secret printed:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "[redacted]") {
		t.Errorf("no redaction marker:\n%s", buf.String())
	}
}
