package relay_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/relay"
)

// TestRelayClientName: the relay names its client by forward-confirmed
// reverse DNS through the policy's dns: resolver (here a static zone). The
// clients come through a listener taking PROXY headers from loopback, sent
// by swaks: 192.0.2.10, whose PTR name resolves back to it, is logged
// client=client.example.test[192.0.2.10] and written so in the Received
// header; 192.0.2.11, whose PTR name points elsewhere, is
// client=unknown[192.0.2.11], with a warning naming the PTR name. A plain
// client on 127.0.0.1 (a second listener) is localhost, without a
// question: the zone's PTR record for 127.0.0.1, which resolves back,
// would name it otherwise.
func TestRelayClientName(t *testing.T) {
	zone := filepath.Join(t.TempDir(), "zone.txt")
	if err := os.WriteFile(zone, []byte(`$ORIGIN 2.0.192.in-addr.arpa.
$TTL 300
@  IN SOA ns.example.test. host.example.test. 1 3600 600 86400 60
10 IN PTR Client.Example.TEST.
11 IN PTR liar.example.test.
$ORIGIN 0.0.127.in-addr.arpa.
1  IN PTR trap.example.test.
$ORIGIN example.test.
client IN A 192.0.2.10
liar   IN A 192.0.2.99
trap   IN A 127.0.0.1
`), 0o644); err != nil {
		t.Fatal(err)
	}
	sink := smtpbed.StartSink(t, smtpbed.SinkOptions{})
	policy := "version: 1\nhostname: relay.test\ndns:\n  resolver: static\n  zone-file: " + zone + `
relay:
  listeners:
    - {name: lb, address: 127.0.0.1:10025, proxy-protocol: {trusted: [127.0.0.0/8]}}
    - {name: direct, address: 127.0.0.1:10026}
  networks: [127.0.0.0/8, 192.0.2.0/24]
  queue:
    startup-spread: 0s
routing:
  route: sink
  routes:
` + relayRoute("sink", sink.Addr) + "tls:\n  starttls: disable\n"
	r := startRelayWith(t, policy, "", func(o *relay.Options) { o.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"} })
	lb, direct := r.addr, r.d.ListenAddrs()[1].String()

	proxied := func(src string) []string {
		return []string{"--proxy-version", "1", "--proxy-family", "TCP4", "--proxy-source", src, "--proxy-source-port", "40000",
			"--proxy-dest", "127.0.0.1", "--proxy-dest-port", "25"}
	}
	for _, c := range []struct {
		addr, subject string
		args          []string
	}{
		{lb, "named", proxied("192.0.2.10")},
		{lb, "unnamed", proxied("192.0.2.11")},
		{direct, "loopback", nil},
	} {
		args := append([]string{"--from", "alice@sender.test", "--to", "bob@dest.test", "--header", "Subject: " + c.subject}, c.args...)
		out := swaks(t, c.addr, args...)
		if !strings.Contains(out, "250 2.0.0 Ok: queued as ") {
			t.Fatalf("%s: no 250 queued-as reply:\n%s", c.subject, out)
		}
	}
	waitFor(t, "three messages queued", func() bool { return strings.Count(r.log.String(), "msg=queued") == 3 })
	log := r.log.String()
	for _, want := range []string{
		"client=client.example.test[192.0.2.10] listener=lb",
		"client=unknown[192.0.2.11] listener=lb",
		"client=localhost[127.0.0.1] listener=direct",
		`level=WARN msg="hostname liar.example.test does not resolve to address 192.0.2.11"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	if strings.Contains(log, "trap.example.test") {
		t.Errorf("the loopback client was looked up in DNS:\n%s", log)
	}

	// The first line of each message is the start of our Received field.
	// The sink's capture of a message is complete once the relay had its
	// 250 for it (smtp-sink writes the file as the data arrives): wait
	// for the three deliveries, not only for the files.
	waitFor(t, "three messages delivered", func() bool { return strings.Count(r.log.String(), "msg=removed") == 3 })
	received := map[string]string{}
	for _, m := range sink.WaitMessages(t, 3) {
		for _, subject := range []string{"named", "unnamed", "loopback"} {
			if strings.Contains(m.Data, "Subject: "+subject+"\n") {
				first, _, _ := strings.Cut(m.Data, "\n")
				received[subject] = strings.TrimSuffix(first, "\r")
			}
		}
	}
	for subject, want := range map[string]string{
		"named":    " (client.example.test [192.0.2.10])",
		"unnamed":  " (unknown [192.0.2.11])",
		"loopback": " (localhost [127.0.0.1])",
	} {
		if !strings.HasPrefix(received[subject], "Received: from ") || !strings.HasSuffix(received[subject], want) {
			t.Errorf("%s: the Received header begins %q, want it to end %q", subject, received[subject], want)
		}
	}
}
