package dsn_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine/dsn"
)

// FuzzBuild: Build never panics, and a report it accepts always parses
// with net/mail and mime/multipart into exactly the header fields, parts
// and status fields it should have, whatever the addresses, the reply, the
// host name, the envelope ID, the boundary and the original hold.
func FuzzBuild(f *testing.F) {
	f.Add("bob@example.com", "rfc822;bob@example.com", "550 5.1.1 unknown", "mx.example.com", "alice@example.org", "ID1", "", []byte(original), byte(0), byte(0))
	f.Add("bób@exämple.org", "utf-8;BÓB@x", "451 4.4.1 \r\nX: y\r\n--B", "mx\r\n", "josé@example.org", "", "B", []byte("Subject: é\n\n--B\n"), byte(1), byte(1))
	f.Add("a@b", "", strings.Repeat("x", 3000), "", "a@b", "", "", []byte(nil), byte(2), byte(2))
	f.Add("a@b", "", "", "", "a@b", "", "", []byte("\r\n\r\n\r"), byte(3), byte(0))
	actions := []dsn.Action{dsn.Failed, dsn.Delayed, dsn.Delivered, dsn.Relayed, dsn.Expanded}
	f.Fuzz(func(t *testing.T, final, orcpt, diag, remote, to, envid, boundary string, orig []byte, action, ret byte) {
		a := actions[int(action)%len(actions)]
		rc := dsn.Recipient{Final: final, Original: orcpt, Action: a, RemoteMTA: remote, Diagnostic: diag, LastAttempt: tried}
		if a == dsn.Delayed {
			rc.WillRetryUntil = retry
		}
		r := base(rc, dsn.Recipient{Final: "second@example.com", Action: dsn.Failed})
		r.To, r.EnvID, r.Boundary, r.Original, r.Return = to, envid, boundary, orig, dsn.Return(ret%3)
		raw, err := dsn.Build(r)
		if err != nil {
			return
		}
		p, err := parseDSN(raw)
		if err != nil {
			t.Fatalf("%v\n%q", err, raw)
		}
		longOrig := slices.ContainsFunc(bytes.Split(orig, []byte("\n")), func(l []byte) bool { return len(l) > 900 })
		if !p.linesOK && !longOrig {
			t.Fatalf("a line over 998 octets or not ending CRLF\n%q", raw)
		}
		if len(p.header) != 8 {
			t.Fatalf("header fields %v, want 8", p.header)
		}
		want := 2
		if orig != nil {
			want = 3
		}
		if len(p.parts) != want {
			t.Fatalf("%d parts, want %d", len(p.parts), want)
		}
		groups, err := statusGroups(p.parts[1].body)
		if err != nil || len(groups) != 3 {
			t.Fatalf("status groups %v (%v), want 3\n%q", groups, err, p.parts[1].body)
		}
		allowed := []string{"Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-Mta", "Diagnostic-Code", "Last-Attempt-Date", "Will-Retry-Until"}
		for k, v := range groups[1] {
			if !slices.Contains(allowed, k) || len(v) != 1 {
				t.Fatalf("status field %s: %q", k, v)
			}
		}
		if got := groups[1].Get("Action"); got != string(a) {
			t.Fatalf("Action %q, want %q", got, a)
		}
		if got := groups[2].Get("Final-Recipient"); got != "rfc822; second@example.com" {
			t.Fatalf("the second recipient's Final-Recipient is %q", got)
		}
		if orig != nil {
			norm := bytes.ReplaceAll(bytes.ReplaceAll(bytes.ReplaceAll(orig, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n")), []byte("\n"), []byte("\r\n"))
			if !bytes.HasPrefix(norm, p.parts[2].body) {
				t.Fatalf("returned %q, not a prefix of the original %q", p.parts[2].body, norm)
			}
		}
	})
}
