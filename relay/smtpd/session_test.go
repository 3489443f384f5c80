package smtpd

import (
	"fmt"
	"net/mail"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/relay/spool"
)

func TestEHLOAdvertisesExtensions(t *testing.T) {
	p := newPKI(t)
	cfg := baseConfig()
	cfg.Listeners[0].TLS = p.server
	_, users := usersFile(t, "alice", "secret")
	cfg.Users = users
	te := start(t, cfg)
	c := dial(t, te.addr())
	kws := c.ehlo()
	for _, want := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SIZE 10240000", "DSN", "SMTPUTF8", "STARTTLS"} {
		if !slices.Contains(kws, want) {
			t.Errorf("plaintext EHLO lacks %s: %q", want, kws)
		}
	}
	for _, kw := range kws {
		if strings.HasPrefix(kw, "AUTH") || kw == "REQUIRETLS" {
			t.Errorf("plaintext EHLO offers %s", kw)
		}
	}
	c.startTLS(p.client)
	kws = c.ehlo()
	for _, want := range []string{"AUTH PLAIN LOGIN", "REQUIRETLS", "CHUNKING", "DSN"} {
		if !slices.Contains(kws, want) {
			t.Errorf("EHLO over TLS lacks %s: %q", want, kws)
		}
	}
	if slices.Contains(kws, "STARTTLS") {
		t.Errorf("EHLO over TLS offers STARTTLS again")
	}
}

func TestQueuedReplyAndEnvelope(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	r := c.transaction("a@example.test", "b@example.org", simpleBody)
	if !regexp.MustCompile(`^250 2\.0\.0 Ok: queued as TESTID\d+$`).MatchString(r) {
		t.Fatalf("end of data reply %q", r)
	}
	msgs := te.store.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages stored, want 1", len(msgs))
	}
	env := msgs[0].env
	if env.From != "a@example.test" || len(env.Recipients) != 1 || env.Recipients[0].Addr != "b@example.org" {
		t.Errorf("envelope %+v", env)
	}
	if env.HELO != "client.test" || env.ClientIP != "127.0.0.1" || env.Listener != "mta" || env.TLS != "" || env.Auth != "" {
		t.Errorf("envelope client fields %+v", env)
	}
	if env.MessageID != "<m1@example.test>" || env.Hops != 0 {
		t.Errorf("MessageID %q hops %d", env.MessageID, env.Hops)
	}
	if !strings.HasSuffix(string(msgs[0].body), simpleBody) {
		t.Errorf("stored body does not end with the message:\n%q", msgs[0].body)
	}
	log := te.log.String()
	if !regexp.MustCompile(`msg=queued id=TESTID\d+ from=<a@example.test> size=\d+ nrcpt=1 client=unknown\[127.0.0.1\] listener=mta tls=none auth="" message_id=<m1@example.test>`).MatchString(log) {
		t.Errorf("no queued line in the log:\n%s", log)
	}
	if got := te.counter(t, "postern_relay_messages_received_total", map[string]string{"listener": "mta", "result": "queued"}); got != 1 {
		t.Errorf("messages_received_total{queued} = %v, want 1", got)
	}
}

func TestReceivedHeaderFirstAndWellFormed(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	c.transaction("a@example.test", "b@example.org", "Received: from older.example (older [192.0.2.1])\r\n\tby mx.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"+simpleBody)
	msgs := te.store.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	body := string(msgs[0].body)
	if !strings.HasPrefix(body, "Received: from client.test (unknown [127.0.0.1])\r\n\tby relay.test (Postern) with ESMTP\r\n\tfor <b@example.org>;\r\n\t") {
		t.Fatalf("body does not start with our Received header:\n%s", body)
	}
	m, err := mail.ReadMessage(strings.NewReader(body))
	if err != nil {
		t.Fatalf("stored message does not parse: %v", err)
	}
	rcv := m.Header["Received"]
	if len(rcv) != 2 {
		t.Fatalf("Received fields %q, want ours and the older one", rcv)
	}
	// RFC 5321 4.4: the date after the last ";" must parse.
	date := strings.TrimSpace(rcv[0][strings.LastIndexByte(rcv[0], ';')+1:])
	if _, err := mail.ParseDate(date); err != nil {
		t.Errorf("Received date %q: %v", date, err)
	}
	if !strings.HasPrefix(rcv[1], "from older.example") {
		t.Errorf("the older Received field should come second: %q", rcv[1])
	}
	if msgs[0].env.Hops != 1 {
		t.Errorf("hops %d, want 1 (ours is not counted)", msgs[0].env.Hops)
	}
	for _, line := range strings.SplitAfter(body, "\r\n") {
		if len(line) > 998 || (strings.Contains(line, "\n") && !strings.HasSuffix(line, "\r\n")) {
			t.Errorf("bad line %q", line)
		}
	}
}

func TestReceivedHeaderSanitizesHELO(t *testing.T) {
	got := string(receivedHeader(receivedInfo{helo: "evil) (x\\;y", ip: netip.MustParseAddr("2001:db8::1"), by: "relay.test", rcpts: []string{"a@b", "c@d"}}))
	if !strings.HasPrefix(got, "Received: from evil___x__y (unknown [IPv6:2001:db8::1])\r\n\tby relay.test (Postern) with ESMTP;\r\n") {
		t.Errorf("Received header %q", got)
	}
}

func TestPipelining(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	// RFC 2920: the whole group in one write, then the replies in order.
	c.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send(simpleBody + ".\r\nMAIL FROM:<d@example.test>\r\nRCPT TO:<e@example.org>\r\nRSET\r\nQUIT\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("221")
	msgs := te.store.messages()
	if len(msgs) != 1 || len(msgs[0].env.Recipients) != 2 {
		t.Fatalf("stored %+v, want one message to 2 recipients", msgs)
	}
}

func TestBDATChunks(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b@example.org>", "250")
	// Chunk boundaries inside a header line and between a CR and its LF.
	msg := "Subject: chunked\r\nMessage-ID: <b1@x>\r\n\r\nline one\r\nline two\r\n"
	cut1, cut2 := 5, strings.Index(msg, "line one\r")+len("line one\r")
	chunks := []string{msg[:cut1], msg[cut1:cut2], msg[cut2:]}
	for i, ch := range chunks {
		last := ""
		if i == len(chunks)-1 {
			last = " LAST"
		}
		c.send(fmt.Sprintf("BDAT %d%s\r\n%s", len(ch), last, ch))
		if last == "" {
			c.expect("250")
		}
	}
	c.expect("250 2.0.0 Ok: queued as")
	msgs := te.store.messages()
	if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].body), msg) || msgs[0].env.MessageID != "<b1@x>" {
		t.Fatalf("stored %+v", msgs)
	}
}

func TestBDATPipelinedWithBareLFNormalized(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	a, b := "Subject: x\n\nbody\nmore", "\n"
	c.send(fmt.Sprintf("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.org>\r\nBDAT %d\r\n%sBDAT %d LAST\r\n%s", len(a), a, len(b), b))
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("250 2.0.0 Ok: queued as")
	msgs := te.store.messages()
	if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].body), "\r\nSubject: x\r\n\r\nbody\r\nmore\r\n") {
		t.Fatalf("stored %+v", msgs)
	}
}

func TestBareNewlineNormalize(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	r := c.transaction("a@example.test", "b@example.org", "Subject: x\n\nbare LF\nbare CR\rend\r\n")
	if !strings.HasPrefix(r, "250 ") {
		t.Fatalf("reply %q", r)
	}
	body := string(te.store.messages()[0].body)
	if !strings.HasSuffix(body, "\r\nSubject: x\r\n\r\nbare LF\r\nbare CR\r\nend\r\n") {
		t.Errorf("not normalised: %q", body)
	}
	if strings.Count(body, "\n") != strings.Count(body, "\r\n") || strings.Count(body, "\r") != strings.Count(body, "\r\n") {
		t.Errorf("bare newline left in %q", body)
	}
}

func TestBareNewlineRejectClosesConnection(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"LF in DATA", "Subject: x\r\n\r\nbare\nLF\r\n"},
		{"CR in DATA", "Subject: x\r\n\r\nbare\rCR\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.BareNewline = BareNewlineReject
			te := start(t, cfg)
			c := dial(t, te.addr())
			c.ehlo()
			r := c.transaction("a@example.test", "b@example.org", tc.body)
			if !strings.HasPrefix(r, "550 5.5.2 ") {
				t.Fatalf("reply %q, want 550 5.5.2", r)
			}
			if !c.closed() {
				t.Errorf("connection still open after 550 5.5.2")
			}
			if n := len(te.store.messages()); n != 0 {
				t.Errorf("%d messages stored", n)
			}
			if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "bare_newline"}); got != 1 {
				t.Errorf("rejects_total{bare_newline} = %v", got)
			}
		})
	}
	t.Run("LF in BDAT", func(t *testing.T) {
		cfg := baseConfig()
		cfg.BareNewline = BareNewlineReject
		te := start(t, cfg)
		c := dial(t, te.addr())
		c.ehlo()
		c.cmd("MAIL FROM:<a@example.test>", "250")
		c.cmd("RCPT TO:<b@example.org>", "250")
		a, b := "Subject: x\r\n\r\nbare\nLF\r\n", "more\r\n"
		c.send(fmt.Sprintf("BDAT %d\r\n%s", len(a), a))
		c.expect("250") // the chunk is taken; the verdict comes at LAST
		c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(b), b))
		c.expect("550 5.5.2 ")
		if !c.closed() {
			t.Errorf("connection still open after 550 5.5.2")
		}
		if te.store.abortCount()+len(te.store.messages()) > 1 || len(te.store.messages()) != 0 {
			t.Errorf("stored %d", len(te.store.messages()))
		}
	})
}

func TestLFDotCRLFDoesNotEndData(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b@example.org>", "250")
	c.cmd("DATA", "354")
	// The smuggling attempt: <LF>.<CR><LF> then a second transaction.
	c.send("Subject: x\r\n\r\nfirst\n.\r\nMAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	c.cmd("QUIT", "221")
	msgs := te.store.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1 (the smuggled one must stay content)", len(msgs))
	}
	if !strings.Contains(string(msgs[0].body), "MAIL FROM:<evil@example.test>\r\n") || msgs[0].env.From != "a@example.test" {
		t.Errorf("stored %q", msgs[0].body)
	}
}

func TestHopsLimit(t *testing.T) {
	cfg := baseConfig()
	cfg.Hops = 3
	te := start(t, cfg)
	c := dial(t, te.addr())
	c.ehlo()
	rcv := "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	if r := c.transaction("a@example.test", "b@example.org", strings.Repeat(rcv, 2)+simpleBody); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("2 hops: %q", r)
	}
	if r := c.transaction("a@example.test", "b@example.org", strings.Repeat(rcv, 3)+simpleBody); !strings.HasPrefix(r, "554 5.4.6 Too many hops") {
		t.Fatalf("3 hops: %q", r)
	}
	// Received in the body is not a hop.
	if r := c.transaction("a@example.test", "b@example.org", simpleBody+strings.Repeat(rcv, 5)); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("Received lines in the body: %q", r)
	}
	msgs := te.store.messages()
	if len(msgs) != 2 || msgs[0].env.Hops != 2 || msgs[1].env.Hops != 0 {
		t.Fatalf("stored %d messages, hops %v", len(msgs), msgs)
	}
	if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "hops"}); got != 1 {
		t.Errorf("rejects_total{hops} = %v", got)
	}
	if got := te.counter(t, "postern_relay_messages_received_total", map[string]string{"result": "rejected"}); got != 1 {
		t.Errorf("messages_received_total{rejected} = %v", got)
	}
}

func TestSizeLimit(t *testing.T) {
	cfg := baseConfig()
	cfg.MessageSize = 1000
	te := start(t, cfg)
	c := dial(t, te.addr())
	if kws := c.ehlo(); !slices.Contains(kws, "SIZE 1000") {
		t.Errorf("EHLO %q lacks SIZE 1000", kws)
	}
	c.cmd("MAIL FROM:<a@example.test> SIZE=2000", "552 5.3.4")
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 30)
	if r := c.transaction("a@example.test", "b@example.org", big); !strings.HasPrefix(r, "552 5.3.4") {
		t.Fatalf("2000-octet DATA: %q", r)
	}
	if r := c.transaction("a@example.test", "b@example.org", simpleBody); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("small message after: %q", r)
	}
	// BDAT: go-smtp refuses the chunk that would cross the limit.
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b@example.org>", "250")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	c.expect("552 5.3.4")
	if n := len(te.store.messages()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
	if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "size"}); got != 1 {
		t.Errorf("rejects_total{size} = %v, want 1 (DATA overrun)", got)
	}
}

func TestHeaderSectionLimit(t *testing.T) {
	cfg := baseConfig()
	cfg.HeaderSectionLimit = 200
	te := start(t, cfg)
	c := dial(t, te.addr())
	c.ehlo()
	hdr := strings.Repeat("X-Filler: "+strings.Repeat("y", 50)+"\r\n", 5)
	if r := c.transaction("a@example.test", "b@example.org", hdr+"\r\nbody\r\n"); !strings.HasPrefix(r, "552 5.3.4") {
		t.Fatalf("reply %q", r)
	}
	// The same bytes in the body are fine.
	if r := c.transaction("a@example.test", "b@example.org", "Subject: x\r\n\r\n"+hdr); !strings.HasPrefix(r, "250") {
		t.Fatalf("reply %q", r)
	}
}

func TestLineTooLong(t *testing.T) {
	long := "Subject: x\r\n\r\n" + strings.Repeat("z", MaxLineLength+10) + "\r\n"
	for _, bdat := range []bool{false, true} {
		t.Run(fmt.Sprint("bdat=", bdat), func(t *testing.T) {
			te := start(t, baseConfig())
			c := dial(t, te.addr())
			c.ehlo()
			c.cmd("MAIL FROM:<a@example.test>", "250")
			c.cmd("RCPT TO:<b@example.org>", "250")
			if bdat {
				c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(long), long))
			} else {
				c.cmd("DATA", "354")
				c.send(long + ".\r\n")
			}
			// go-smtp's line cap (which also counts what it reads ahead of
			// a BDAT command) answers 500 5.4.0 and closes; ours, 554 5.6.0.
			r := c.reply()
			if !strings.HasPrefix(r, "500 5.4.0") && !strings.HasPrefix(r, "554 5.6.0") {
				t.Fatalf("reply %q, want a refusal of the long line", r)
			}
			if n := len(te.store.messages()); n != 0 {
				t.Errorf("%d stored", n)
			}
		})
	}
}

func TestRecipientsCap(t *testing.T) {
	cfg := baseConfig()
	cfg.Recipients = 2
	te := start(t, cfg)
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("RCPT TO:<b1@example.org>", "250")
	c.cmd("RCPT TO:<b2@example.org>", "250")
	c.cmd("RCPT TO:<b3@example.org>", "452 4.5.3")
	c.cmd("DATA", "354")
	c.send(simpleBody + ".\r\n")
	c.expect("250")
	if m := te.store.messages(); len(m) != 1 || len(m[0].env.Recipients) != 2 {
		t.Fatalf("stored %+v", m)
	}
	if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "recipients"}); got != 1 {
		t.Errorf("rejects_total{recipients} = %v", got)
	}
}

func TestAddressSyntax(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@exa_mple.test>", "501 5.1.7")
	c.cmd("MAIL FROM:<a@example.test>", "250")
	for _, bad := range []string{"b@example..org", "b@-example.org", "b@[300.1.1.1]", "b@example.org.", "b@ex!ample.org", "ü@example.org"} {
		c.cmd("RCPT TO:<"+bad+">", "501 5.1.3")
	}
	for _, good := range []string{"b@example.org", "b.c+tag@sub.example.org", "b@[192.0.2.1]", "b@[IPv6:2001:db8::1]", "o'hara@example.org"} {
		c.cmd("RCPT TO:<"+good+">", "250")
	}
	if got := te.counter(t, "postern_relay_rejects_total", map[string]string{"reason": "syntax"}); got != 7 {
		t.Errorf("rejects_total{syntax} = %v, want 7", got)
	}
}

func TestSMTPUTF8(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<用户@例子.广告> SMTPUTF8", "250")
	c.cmd("RCPT TO:<josé@exämple.org>", "250")
	c.cmd("DATA", "354")
	c.send("Subject: héllo\r\n\r\nbody\r\n.\r\n")
	c.expect("250")
	msgs := te.store.messages()
	if len(msgs) != 1 || !msgs[0].env.SMTPUTF8 || msgs[0].env.From != "用户@例子.广告" || msgs[0].env.Recipients[0].Addr != "josé@exämple.org" {
		t.Fatalf("stored %+v", msgs)
	}
	if !strings.Contains(string(msgs[0].body), "with UTF8SMTP\r\n\tfor <josé@exämple.org>;") {
		t.Errorf("Received header %q", msgs[0].body)
	}
	// Without SMTPUTF8, a UTF-8 address is a syntax error.
	c.cmd("MAIL FROM:<用户@例子.广告>", "501 5.1.7")
}

func TestDSNParametersInEnvelope(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test> RET=HDRS ENVID=QQ+2B314 BODY=8BITMIME", "250")
	c.cmd("RCPT TO:<b@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+2Bx@example.org", "250")
	c.cmd("RCPT TO:<c@example.org> NOTIFY=NEVER", "250")
	c.cmd("RCPT TO:<d@example.org>", "250")
	c.cmd("DATA", "354")
	c.send(simpleBody + ".\r\n")
	c.expect("250")
	msgs := te.store.messages()
	if len(msgs) != 1 {
		t.Fatal("not stored")
	}
	env := msgs[0].env
	if env.Ret != "HDRS" || env.EnvID != "QQ+314" || env.Body != "8BITMIME" {
		t.Errorf("RET %q ENVID %q BODY %q", env.Ret, env.EnvID, env.Body)
	}
	want := []spool.Recipient{
		{Addr: "b@example.org", Notify: []string{"SUCCESS", "DELAY"}, ORcpt: "rfc822;b+x@example.org"},
		{Addr: "c@example.org", Notify: []string{"NEVER"}},
		{Addr: "d@example.org"},
	}
	if fmt.Sprint(env.Recipients) != fmt.Sprint(want) {
		t.Errorf("recipients %+v\nwant %+v", env.Recipients, want)
	}
}

func TestRequireTLSOnlyOverTLS(t *testing.T) {
	p := newPKI(t)
	cfg := baseConfig()
	cfg.Listeners[0].TLS = p.server
	te := start(t, cfg)
	c := dial(t, te.addr())
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test> REQUIRETLS", "530 5.7.10")
	c.startTLS(p.client)
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.test> REQUIRETLS", "250")
	c.cmd("RCPT TO:<b@example.org>", "250")
	c.cmd("DATA", "354")
	c.send(simpleBody + ".\r\n")
	c.expect("250")
	env := te.store.messages()[0].env
	if !env.RequireTLS || !strings.HasPrefix(env.TLS, "TLSv1.3 ") {
		t.Errorf("RequireTLS %v TLS %q", env.RequireTLS, env.TLS)
	}
	if !strings.Contains(string(te.store.messages()[0].body), "with ESMTPS\r\n") {
		t.Errorf("Received header does not say ESMTPS: %q", te.store.messages()[0].body)
	}
}

func TestCommandTimeout(t *testing.T) {
	cfg := baseConfig()
	cfg.CommandTimeout = 50 * time.Millisecond
	te := start(t, cfg)
	c := dial(t, te.addr())
	c.ehlo()
	// The client says nothing more: the server gives up (RFC 5321 4.5.3.2).
	c.expect("421 4.4.2")
	if !c.closed() {
		t.Errorf("idle connection left open")
	}
}

func TestEHLOAgainResetsTransactionAndName(t *testing.T) {
	te := start(t, baseConfig())
	c := dial(t, te.addr())
	c.cmd("EHLO first.test", "250")
	c.cmd("MAIL FROM:<a@example.test>", "250")
	c.cmd("EHLO second.test", "250")
	c.cmd("RCPT TO:<b@example.org>", "502") // the EHLO reset the transaction
	c.transaction("a@example.test", "b@example.org", simpleBody)
	if m := te.store.messages(); len(m) != 1 || m[0].env.HELO != "second.test" {
		t.Fatalf("stored %+v", m)
	}
}
