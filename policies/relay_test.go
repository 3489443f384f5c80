package policies

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/expr"
)

// loadErr loads policy (as p.yaml) and returns the full error text, ""
// when it loads.
func loadErr(policy string) string {
	_, err := Parse("p.yaml", []byte(policy), Options{Hostname: "mta.test"})
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestRelayDefaults: without a relay block, and in Defaults, every relay
// setting has its documented default, and Relay is never nil.
func TestRelayDefaults(t *testing.T) {
	for name, s := range map[string]*Set{
		"no relay block": mustParse(t, "version: 1\n"),
		"empty block":    mustParse(t, "version: 1\nrelay:\n"),
		"Defaults":       Defaults(Options{Hostname: "mta.test"}),
	} {
		t.Run(name, func(t *testing.T) {
			r := s.Relay()
			if r == nil {
				t.Fatal("Relay() is nil")
			}
			want := []Listener{{Name: "mta", Address: netip.MustParseAddrPort("127.0.0.1:10025"), Mode: ModeSMTP, MaxConnections: 200, MaxConnectionsPerIP: 20}}
			if len(r.Listeners) != 1 || r.Listeners[0].Name != want[0].Name || r.Listeners[0].Address != want[0].Address ||
				r.Listeners[0].Mode != ModeSMTP || r.Listeners[0].TLS != nil || r.Listeners[0].ProxyProtocol != nil ||
				r.Listeners[0].MaxConnections != 200 || r.Listeners[0].MaxConnectionsPerIP != 20 || !r.Listeners[0].LoopbackOnly() {
				t.Errorf("listeners %+v, want %+v", r.Listeners, want)
			}
			if got := fmt.Sprint(r.Networks); got != "[127.0.0.0/8 ::1/128]" {
				t.Errorf("networks %s", got)
			}
			if r.Auth.Enabled() || r.Auth.UsersFile != "" || !slices.Equal(r.Auth.Mechanisms, []string{"plain", "login"}) || r.Auth.MaxFailures != 3 {
				t.Errorf("auth %+v", r.Auth)
			}
			if r.Permit == nil || r.Permit.Len() != 0 {
				t.Errorf("permit has rules")
			}
			if (r.Limits != RelayLimits{MessageSize: 10240000, Recipients: 1000, Hops: 100, BareNewline: BareNewlineNormalize, CommandTimeout: 5 * time.Minute}) {
				t.Errorf("limits %+v", r.Limits)
			}
			q := r.Queue
			if c, ok := q.DestinationConcurrency.Literal(); !ok || c != 20 {
				t.Errorf("destination-concurrency %d, %v", c, ok)
			}
			if q.MaxMessages != 100000 || q.MinFreeSpace != (FreeSpace{Percent: 5}) || q.Workers != 100 || q.StartupSpread != time.Minute ||
				q.ShutdownTimeout != 30*time.Second || q.StateSyncInterval != time.Second {
				t.Errorf("queue %+v", q)
			}
			if r.DSN != (RelayDSN{From: "MAILER-DAEMON@mta.test", FromTemplate: "MAILER-DAEMON@{hostname}", ReturnLimit: 50000}) {
				t.Errorf("dsn %+v", r.DSN)
			}
			if r.Hostname != "mta.test" {
				t.Errorf("hostname %q", r.Hostname)
			}
			if p := r.Position("relay.listeners[0].address"); p != (Pos{}) {
				t.Errorf("a default has a position: %v", p)
			}
		})
	}
}

// fullRelay writes every key of the relay block.
const fullRelay = `version: 1
hostname: relay1.example.net
lists:
  apps: [billing, crm]
relay:
  listeners:
    - name: mta
      address: 127.0.0.1:10025
    - name: submission
      address: "[::]:587"
      mode: submission
      tls: {cert: tls/relay.crt, key: /etc/postern/relay.key}
      max-connections: 50
      max-connections-per-ip: 5
    - name: lb
      address: 0.0.0.0:2525
      proxy-protocol: {trusted: [192.0.2.10/32, "2001:db8::10"]}
  networks: [127.0.0.0/8, "::1/128", 192.0.2.0/24, "::ffff:198.51.100.0/120", 203.0.113.7]
  auth:
    users-file: users.txt
    mechanisms: plain
    max-failures: 5
  permit:
    - if: authenticated_as == "" && !is_ip_in_cidr(received_from_ip, "192.0.2.0/24")
      then: false
    - if: in_list("apps", authenticated_as) && tls
      then: true
  limits:
    message-size: 25MiB
    recipients: 500
    hops: 50
    bare-newline: reject
    command-timeout: 10m
  queue:
    max-messages: 5000
    min-free-space: 2GiB
    workers: 10
    destination-concurrency:
      - if: route_type == "relay"
        then: 50
      - else: 10
    startup-spread: 0s
    shutdown-timeout: 1m
    state-sync-interval: 500ms
  dsn:
    from: Mail Delivery System <postmaster@{hostname}>
    return-limit: 0
`

// TestRelayEveryKey: each key of the block is read into its typed field,
// paths are resolved from the policy's directory, and each setting's
// position is known.
func TestRelayEveryKey(t *testing.T) {
	s, err := Parse("/etc/postern/policy.yaml", []byte(fullRelay), Options{Hostname: "ignored.test"})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Relay()
	if len(r.Listeners) != 3 {
		t.Fatalf("%d listeners", len(r.Listeners))
	}
	mta, sub, lb := r.Listeners[0], r.Listeners[1], r.Listeners[2]
	if mta.Name != "mta" || mta.Address.String() != "127.0.0.1:10025" || mta.Mode != ModeSMTP || mta.MaxConnections != 200 || !mta.LoopbackOnly() {
		t.Errorf("mta %+v", mta)
	}
	if sub.Address.String() != "[::]:587" || sub.Mode != ModeSubmission || sub.MaxConnections != 50 || sub.MaxConnectionsPerIP != 5 || sub.LoopbackOnly() ||
		sub.TLS == nil || *sub.TLS != (ListenerTLS{Cert: "/etc/postern/tls/relay.crt", Key: "/etc/postern/relay.key"}) {
		t.Errorf("submission %+v tls %+v", sub, sub.TLS)
	}
	if lb.ProxyProtocol == nil || fmt.Sprint(lb.ProxyProtocol.Trusted) != "[192.0.2.10/32 2001:db8::10/128]" || lb.LoopbackOnly() {
		t.Errorf("lb %+v", lb)
	}
	if got := fmt.Sprint(r.Networks); got != "[127.0.0.0/8 ::1/128 192.0.2.0/24 198.51.100.0/24 203.0.113.7/32]" {
		t.Errorf("networks %s (the mapped prefix must become IPv4)", got)
	}
	if !r.Auth.Enabled() || r.Auth.UsersFile != "/etc/postern/users.txt" || !slices.Equal(r.Auth.Mechanisms, []string{"plain"}) || r.Auth.MaxFailures != 5 {
		t.Errorf("auth %+v", r.Auth)
	}
	if r.Permit.Len() != 2 {
		t.Errorf("permit has %d rules", r.Permit.Len())
	}
	if (r.Limits != RelayLimits{MessageSize: 25 << 20, Recipients: 500, Hops: 50, BareNewline: BareNewlineReject, CommandTimeout: 10 * time.Minute}) {
		t.Errorf("limits %+v", r.Limits)
	}
	q := r.Queue
	if q.MaxMessages != 5000 || q.MinFreeSpace != (FreeSpace{Size: 2 << 30}) || q.Workers != 10 || q.StartupSpread != 0 ||
		q.ShutdownTimeout != time.Minute || q.StateSyncInterval != 500*time.Millisecond {
		t.Errorf("queue %+v", q)
	}
	if _, ok := q.DestinationConcurrency.Literal(); ok {
		t.Error("destination-concurrency rules read as a literal")
	}
	env := newEnv(s)
	env.RouteType = "relay"
	var m expr.VM
	if c, err := q.DestinationConcurrency.Eval(&m, env, nil); err != nil || c != 50 {
		t.Errorf("destination-concurrency for a relay route: %d, %v", c, err)
	}
	if r.DSN != (RelayDSN{From: "Mail Delivery System <postmaster@relay1.example.net>", FromTemplate: "Mail Delivery System <postmaster@{hostname}>", ReturnLimit: 0}) {
		t.Errorf("dsn %+v", r.DSN)
	}
	if r.Hostname != "relay1.example.net" {
		t.Errorf("hostname %q", r.Hostname)
	}
	for path, want := range map[string]string{
		"relay.listeners[1].tls.cert":                  "/etc/postern/policy.yaml:12:19",
		"relay.listeners[1].tls.key":                   "/etc/postern/policy.yaml:12:39",
		"relay.listeners[1].address":                   "/etc/postern/policy.yaml:10:16",
		"relay.listeners[2].proxy-protocol.trusted[1]": "/etc/postern/policy.yaml:17:49",
		"relay.listeners[0].tls.cert":                  "/etc/postern/policy.yaml:7:7", // not written: the listener
		"relay.networks[3]":                            "/etc/postern/policy.yaml:18:52",
		"relay.auth.users-file":                        "/etc/postern/policy.yaml:20:17",
		"relay.permit[1]":                              "/etc/postern/policy.yaml:26:7",
		"relay.queue.destination-concurrency":          "/etc/postern/policy.yaml:39:7",
		"relay.dsn.return-limit":                       "/etc/postern/policy.yaml:47:19",
		"auth.users-file":                              "/etc/postern/policy.yaml:20:17",
		"relay.limits.hops":                            "/etc/postern/policy.yaml:31:11",
		"relay.queue.max-messages":                     "/etc/postern/policy.yaml:35:19",
	} {
		if got := r.Position(path).String(); got != want {
			t.Errorf("Position(%s) = %s, want %s", path, got, want)
		}
	}
	e := r.Errorf("relay.listeners[1].tls.cert", "cannot read %s: %v", sub.TLS.Cert, os.ErrNotExist)
	if want := "/etc/postern/policy.yaml:12:19: relay.listeners[1].tls.cert: cannot read /etc/postern/tls/relay.crt: file does not exist"; e.Error() != want {
		t.Errorf("Errorf:\n%s\nwant\n%s", e, want)
	}
}

// TestRelayErrorfDefault: a problem with a setting at its default names
// the policy file.
func TestRelayErrorfDefault(t *testing.T) {
	s := mustParse(t, "version: 1\n")
	e := s.Relay().Errorf("relay.listeners[0].address", "listen tcp %s: address already in use", DefaultRelayAddress)
	if want := "p.yaml: relay.listeners[0].address: listen tcp 127.0.0.1:10025: address already in use"; e.Error() != want {
		t.Errorf("got  %s\nwant %s", e, want)
	}
}

// TestRelayBadPolicies compares the full text of the errors of the relay
// block: each bad value at its position, with what to write instead.
func TestRelayBadPolicies(t *testing.T) {
	const l = "version: 1\nrelay:\n  listeners:\n"
	tests := []struct{ name, policy, want string }{
		{"unknown key in relay", "version: 1\nrelay:\n  lmits: {}\n",
			`p.yaml:3:3: relay.lmits: unknown key "lmits" in relay: did you mean "limits"?`},
		{"unknown key in a listener", l + "    - name: mta\n      address: 127.0.0.1:10025\n      protocol: smtp\n",
			`p.yaml:6:7: relay.listeners[0].protocol: unknown key "protocol" in relay.listeners[0] (known keys: name, address, mode, tls, proxy-protocol, max-connections, max-connections-per-ip)`},
		{"unknown key in auth", "version: 1\nrelay:\n  auth: {users-file: u, max-failure: 3}\n",
			`p.yaml:3:25: relay.auth.max-failure: unknown key "max-failure" in relay.auth: did you mean "max-failures"?`},
		{"unknown key in tls", l + "    - {name: mta, address: \"127.0.0.1:25\", tls: {cert: c, key: k, ca: x}}\n",
			`p.yaml:4:67: relay.listeners[0].tls.ca: unknown key "ca" in relay.listeners[0].tls (known keys: cert, key)`},
		{"listeners not a list", "version: 1\nrelay:\n  listeners: {name: mta}\n",
			`p.yaml:3:14: relay.listeners: expected a list of listeners (- name: mta, address: 127.0.0.1:10025), found a mapping`},
		{"no listener", "version: 1\nrelay:\n  listeners: []\n",
			`p.yaml:3:14: relay.listeners: empty: the relay needs at least one listener`},
		{"listener without a name", l + "    - address: 127.0.0.1:10025\n",
			`p.yaml:4:7: relay.listeners[0].name: missing: every listener needs a name (it appears in logs and metrics, and in the listener variable)`},
		{"listener without an address", l + "    - name: mta\n",
			`p.yaml:4:7: relay.listeners[0].address: missing: the IP address and port to listen on (127.0.0.1:10025, "[::1]:10025")`},
		{"bad listener name", l + "    - {name: a b, address: \"127.0.0.1:25\"}\n",
			`p.yaml:4:14: relay.listeners[0].name: "a b" is not a valid listener name (letters, digits, _ . -)`},
		{"duplicate listener name", l + "    - {name: mta, address: \"127.0.0.1:25\"}\n    - {name: mta, address: \"127.0.0.1:26\"}\n",
			`p.yaml:5:14: relay.listeners[1].name: duplicate listener name "mta" (first at line 4)`},
		{"duplicate address", l + "    - {name: a, address: \"127.0.0.1:25\"}\n    - {name: b, address: \"127.0.0.1:25\"}\n",
			`p.yaml:5:26: relay.listeners[1].address: listener "a" listens on 127.0.0.1:25 already`},
		{"address without a port", l + "    - {name: mta, address: 127.0.0.1}\n",
			`p.yaml:4:28: relay.listeners[0].address: "127.0.0.1" has no port: write IP:PORT, like 127.0.0.1:10025 or "[::1]:10025"`},
		{"host name as address", l + "    - {name: mta, address: \"localhost:25\"}\n",
			`p.yaml:4:28: relay.listeners[0].address: "localhost:25": the address must be an IP address (a host name is not resolved): write 127.0.0.1:10025, or 0.0.0.0:25 for every IPv4 address`},
		{"IPv6 without brackets", l + "    - {name: mta, address: \"::1:25\"}\n",
			`p.yaml:4:28: relay.listeners[0].address: "::1:25": an IPv6 address goes in brackets: "[::1]:10025"`},
		{"port out of range", l + "    - {name: mta, address: \"127.0.0.1:70000\"}\n",
			`p.yaml:4:28: relay.listeners[0].address: "127.0.0.1:70000" is not IP:PORT (127.0.0.1:10025, "[::1]:10025")`},
		{"address with a zone", l + "    - {name: mta, address: \"[fe80::1%eth0]:25\"}\n",
			`p.yaml:4:28: relay.listeners[0].address: "[fe80::1%eth0]:25": an address with a zone (%eth0) is not supported`},
		{"bad mode", l + "    - {name: mta, address: \"127.0.0.1:25\", mode: smtps}\n",
			`p.yaml:4:50: relay.listeners[0].mode: "smtps" is not one of smtp, submission, submissions: did you mean "smtp"?`},
		{"tls without key", l + "    - {name: mta, address: \"127.0.0.1:25\", tls: {cert: c.pem}}\n",
			`p.yaml:4:49: relay.listeners[0].tls.key: missing: tls needs both cert and key (PEM files; the daemon reads them at start and on reload)`},
		{"tls with an empty cert", l + "    - {name: mta, address: \"127.0.0.1:25\", tls: {cert: \"\", key: k.pem}}\n",
			`p.yaml:4:56: relay.listeners[0].tls.cert: expected the path of a PEM file`},
		{"proxy-protocol without trusted", l + "    - {name: mta, address: \"127.0.0.1:25\", proxy-protocol: {}}\n",
			`p.yaml:4:60: relay.listeners[0].proxy-protocol.trusted: missing: the load balancers' addresses, whose PROXY header gives the client's address (trusted: [192.0.2.10/32])`},
		{"proxy-protocol trusting nobody", l + "    - {name: mta, address: \"127.0.0.1:25\", proxy-protocol: {trusted: []}}\n",
			`p.yaml:4:70: relay.listeners[0].proxy-protocol.trusted: empty: no peer could connect; list the load balancers' addresses`},
		{"bad connection limit", l + "    - {name: mta, address: \"127.0.0.1:25\", max-connections-per-ip: 0}\n",
			`p.yaml:4:68: relay.listeners[0].max-connections-per-ip: 0 is out of range: it must be between 1 and 100000`},
		{"bad CIDR", "version: 1\nrelay:\n  networks: [127.0.0.0/8, 10.0.0.0/33]\n",
			`p.yaml:3:27: relay.networks[1]: "10.0.0.0/33" is not an IP prefix: write it like 192.0.2.0/24 or 2001:db8::/32`},
		{"CIDR with host bits", "version: 1\nrelay:\n  networks: [10.1.0.0/8]\n",
			`p.yaml:3:14: relay.networks[0]: "10.1.0.0/8" has bits set past the prefix length: write 10.0.0.0/8`},
		{"host name in networks", "version: 1\nrelay:\n  networks: mail.example\n",
			`p.yaml:3:13: relay.networks: "mail.example" is not an IP prefix or address: write it like 192.0.2.0/24, 2001:db8::/32 or 192.0.2.1`},
		{"unknown mechanism", "version: 1\nrelay:\n  auth: {users-file: u, mechanisms: [plain, cram-md5]}\n",
			`p.yaml:3:45: relay.auth.mechanisms[1]: "cram-md5" is not a mechanism the relay offers (plain, login)`},
		{"misspelt mechanism", "version: 1\nrelay:\n  auth: {users-file: u, mechanisms: logn}\n",
			`p.yaml:3:37: relay.auth.mechanisms[0]: "logn" is not a mechanism the relay offers (plain, login): did you mean "login"?`},
		{"no mechanism", "version: 1\nrelay:\n  auth: {users-file: u, mechanisms: []}\n",
			`p.yaml:3:37: relay.auth.mechanisms: empty: list at least one of plain, login`},
		{"message size too small", "version: 1\nrelay:\n  limits: {message-size: 10}\n",
			`p.yaml:3:26: relay.limits.message-size: 10 is out of range: it must be between 1KiB and 2GiB`},
		{"negative message size", "version: 1\nrelay:\n  limits: {message-size: -1MB}\n",
			`p.yaml:3:26: relay.limits.message-size: "-1MB" is not a size: write it like 512, 16KiB, 10MB or 1GiB`},
		{"negative recipients", "version: 1\nrelay:\n  limits: {recipients: -1}\n",
			`p.yaml:3:24: relay.limits.recipients: -1 is out of range: it must be between 1 and 100000`},
		{"zero hops", "version: 1\nrelay:\n  limits: {hops: 0}\n",
			`p.yaml:3:18: relay.limits.hops: 0 is out of range: it must be between 1 and 1000`},
		{"bad bare-newline", "version: 1\nrelay:\n  limits: {bare-newline: normalise}\n",
			`p.yaml:3:26: relay.limits.bare-newline: "normalise" is not one of normalize, reject: did you mean "normalize"?`},
		{"zero command timeout", "version: 1\nrelay:\n  limits: {command-timeout: 0s}\n",
			`p.yaml:3:29: relay.limits.command-timeout: must be above zero`},
		{"bad duration", "version: 1\nrelay:\n  queue: {shutdown-timeout: forever}\n",
			`p.yaml:3:29: relay.queue.shutdown-timeout: "forever" is not a duration: write it like 90s, 5m, 1h30m or 2d`},
		{"negative duration", "version: 1\nrelay:\n  queue: {startup-spread: -1s}\n",
			`p.yaml:3:27: relay.queue.startup-spread: "-1s" is not a duration: write it like 90s, 5m, 1h30m or 2d`},
		{"zero sync interval", "version: 1\nrelay:\n  queue: {state-sync-interval: 0}\n",
			`p.yaml:3:32: relay.queue.state-sync-interval: must be above zero`},
		{"percentage of 100", "version: 1\nrelay:\n  queue: {min-free-space: 100%}\n",
			`p.yaml:3:27: relay.queue.min-free-space: "100%" is out of range: a percentage below 100%`},
		{"percentage in words", "version: 1\nrelay:\n  queue: {min-free-space: 5 percent}\n",
			`p.yaml:3:27: relay.queue.min-free-space: "5 percent" is not a percentage or a size: write it like 5%, 2GiB or 500MB`},
		{"negative percentage", "version: 1\nrelay:\n  queue: {min-free-space: \"-5%\"}\n",
			`p.yaml:3:27: relay.queue.min-free-space: "-5%" is not a percentage: write it like 5% or 2.5%`},
		{"zero workers", "version: 1\nrelay:\n  queue: {workers: 0}\n",
			`p.yaml:3:20: relay.queue.workers: 0 is out of range: it must be between 1 and 10000`},
		{"destination-concurrency of a later phase", "version: 1\nrelay:\n  queue:\n    destination-concurrency: {expr: 'mx == \"\" ? 1 : 2'}\n",
			`p.yaml:4:38: relay.queue.destination-concurrency: mx is not known when relay.queue.destination-concurrency is evaluated: it is decided per recipient, before any MX host is chosen (mx is a host-phase variable; relay.queue.destination-concurrency is a recipient-phase setting) (1:1)` +
				"\n | mx == \"\" ? 1 : 2\n | ^"},
		{"dsn from with another placeholder", "version: 1\nrelay:\n  dsn: {from: \"{host}@x\"}\n",
			`p.yaml:3:15: relay.dsn.from: "{host}@x": only {hostname} is replaced (write MAILER-DAEMON@{hostname} or an address)`},
		{"dsn from not an address", "version: 1\nrelay:\n  dsn: {from: nobody}\n",
			`p.yaml:3:15: relay.dsn.from: "nobody" is not an address: write it like MAILER-DAEMON@{hostname} or "Mail Delivery System <postmaster@example.org>"`},
		{"negative return limit", "version: 1\nrelay:\n  dsn: {return-limit: -5}\n",
			`p.yaml:3:23: relay.dsn.return-limit: "-5" is not a size: write it like 512, 16KiB, 10MB or 1GiB`},
		{"permit as a literal", "version: 1\nrelay:\n  permit: true\n",
			`p.yaml:3:11: relay.permit: expected rules (- if: CONDITION, then: true or false), found a value: relay.permit takes only the rule form`},
		{"permit then not a bool", "version: 1\nrelay:\n  permit:\n    - if: tls\n      then: yes\n",
			`p.yaml:5:13: relay.permit[0].then: "yes" is not a bool: write true or false`},
		{"permit with a string condition", "version: 1\nrelay:\n  permit:\n    - if: rcpt\n      then: false\n",
			`p.yaml:4:11: relay.permit[0].if: expected bool, but got string`},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			if got := loadErr(c.policy); got != c.want {
				t.Errorf("policy:\n%s\ngot:\n%s\nwant:\n%s", c.policy, got, c.want)
			}
		})
	}
}

// TestPermitPhase: a variable of a delivery phase in a permit rule is a
// load error at its position, saying what the session knows.
func TestPermitPhase(t *testing.T) {
	const why = "it is decided per RCPT command while the relay receives the message, before any delivery: only sender, sender_domain, rcpt, rcpt_domain, received_from_ip, authenticated_as, listener and tls are known then"
	got := loadErr("version: 1\nrelay:\n  permit:\n    - if: route == \"mx\"\n      then: false\n    - if: tls && mx endsWith \".example\"\n      then: false\n    - if: 'remote_ip == \"192.0.2.1\"'\n      then: false\n")
	want := `p.yaml:4:11: relay.permit[0].if: route is not known when relay.permit is evaluated: ` + why + ` (route is a host-phase variable; relay.permit is a session-phase setting) (1:1)` + "\n | route == \"mx\"\n | ^\n" +
		`p.yaml:6:18: relay.permit[1].if: mx is not known when relay.permit is evaluated: ` + why + ` (mx is a host-phase variable; relay.permit is a session-phase setting) (1:8)` + "\n | tls && mx endsWith \".example\"\n | .......^\n" +
		`p.yaml:8:12: relay.permit[2].if: remote_ip is not known when relay.permit is evaluated: ` + why + ` (remote_ip is a connection-phase variable; relay.permit is a session-phase setting) (1:1)` + "\n | remote_ip == \"192.0.2.1\"\n | ^"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	// And the session's own variables are unknown to delivery.
	got = loadErr("version: 1\nrouting:\n  route:\n    - if: listener == \"submission\"\n      then: local\n")
	if !strings.HasPrefix(got, `p.yaml:4:11: routing.route[0].if: listener is not known when routing.route is evaluated: it is known only while the relay receives a message over SMTP, in relay.permit, not when the message is delivered (listener is a session-phase variable; routing.route is a recipient-phase setting)`) {
		t.Errorf("listener in routing.route: %s", got)
	}
}

// TestOpenRelayGuard: a listener other machines reach and a permission
// that lets anyone relay without AUTH do not load, at the offending entry
// or rule; the same permission on loopback, or narrowed, loads.
func TestOpenRelayGuard(t *testing.T) {
	const (
		public   = "version: 1\nrelay:\n  listeners: [{name: mta, address: \"0.0.0.0:25\"}]\n"
		public6  = "version: 1\nrelay:\n  listeners: [{name: mta, address: \"[::]:25\"}]\n"
		loopback = "version: 1\nrelay:\n  listeners: [{name: mta, address: \"127.0.0.1:10025\"}]\n"
		anyone   = "anyone could relay through this server"
		narrow   = `make its condition require authenticated_as != "", or a client network with is_ip_in_cidr(received_from_ip, "192.0.2.0/24")`
	)
	tests := []struct{ name, policy, want string }{
		{"every IPv4 client on a public listener", public + "  networks: [0.0.0.0/0]\n",
			`p.yaml:4:14: relay.networks[0]: 0.0.0.0/0 is every IPv4 address, while listener "mta" listens on 0.0.0.0:25: ` + anyone + `; list your clients' networks, or require AUTH (relay.auth)`},
		{"every IPv4 client on loopback", loopback + "  networks: [0.0.0.0/0, \"::/0\"]\n", ""},
		{"every IPv6 client", public6 + "  networks: [\"::/0\"]\n",
			`p.yaml:4:14: relay.networks[0]: ::/0 is every IPv6 address, while listener "mta" listens on [::]:25: ` + anyone + `; list your clients' networks, or require AUTH (relay.auth)`},
		{"every IPv4 client as mapped IPv6", public6 + "  networks:\n    - 192.0.2.0/24\n    - \"::ffff:0:0/96\"\n",
			`p.yaml:6:7: relay.networks[1]: ::ffff:0:0/96 is every IPv4 address, while listener "mta" listens on [::]:25: ` + anyone + `; list your clients' networks, or require AUTH (relay.auth)`},
		{"an IPv6 prefix holding the mapped ones", public6 + "  networks: [\"::/80\"]\n",
			`p.yaml:4:14: relay.networks[0]: ::/80 holds ::ffff:0:0/96, every IPv4 address written as IPv6, while listener "mta" listens on [::]:25: ` + anyone + `; list your clients' networks, or require AUTH (relay.auth)`},
		{"half the IPv4 Internet", public + "  networks: [128.0.0.0/1]\n",
			`p.yaml:4:14: relay.networks[0]: 128.0.0.0/1 is more than a /8 of IPv4 addresses, while listener "mta" listens on 0.0.0.0:25: ` + anyone + `; list your clients' networks, or require AUTH (relay.auth)`},
		{"every global IPv6 address", public6 + "  networks: [\"2000::/3\"]\n",
			`p.yaml:4:14: relay.networks[0]: 2000::/3 is more than a /16 of public IPv6 addresses, while listener "mta" listens on [::]:25: ` + anyone + `; list your clients' networks, or require AUTH (relay.auth)`},
		{"private networks", public6 + "  networks: [10.0.0.0/8, 172.16.0.0/12, \"fc00::/7\", \"fe80::/10\", \"2001:db8::/32\"]\n", ""},
		{"constant true rule", public + "  networks: []\n  permit:\n    - if: tls\n      then: true\n",
			`p.yaml:6:7: relay.permit[0]: this rule can let a client that has not authenticated relay, while listener "mta" listens on 0.0.0.0:25: ` + anyone + "; " + narrow},
		{"else true", public + "  permit:\n    - if: rcpt_domain == \"blocked.example\"\n      then: false\n    - else: true\n",
			`p.yaml:7:7: relay.permit[1]: this rule can let a client that has not authenticated relay, while listener "mta" listens on 0.0.0.0:25: ` + anyone + "; " + narrow},
		{"a sender is no proof", public + "  permit:\n    - if: sender_domain == \"example.org\"\n      then: true\n",
			`p.yaml:5:7: relay.permit[0]: this rule can let a client that has not authenticated relay, while listener "mta" listens on 0.0.0.0:25: ` + anyone + "; " + narrow},
		{"a broad client prefix", public + "  permit:\n    - if: authenticated_as != \"\" || is_ip_in_cidr(received_from_ip, \"0.0.0.0/4\")\n      then: true\n",
			`p.yaml:5:7: relay.permit[0]: this rule can let a client that has not authenticated relay, while listener "mta" listens on 0.0.0.0:25: ` + anyone + "; " + narrow + ` (0.0.0.0/4 is more than a /8 of IPv4 addresses)`},
		{"a computed then", public + "  permit:\n    - if: tls\n      then: {expr: 'rcpt_domain != \"\"'}\n",
			`p.yaml:5:7: relay.permit[0]: this rule can let a client that has not authenticated relay, while listener "mta" listens on 0.0.0.0:25: ` + anyone + "; " + narrow},
		{"constant true rule on loopback", loopback + "  permit:\n    - else: true\n", ""},
		{"true guarded by authentication", public + "  permit:\n    - if: authenticated_as != \"\" && tls\n      then: true\n", ""},
		{"true guarded by a computed then", public + "  permit:\n    - if: tls\n      then: {expr: 'authenticated_as != \"\"'}\n", ""},
		{"true for a client network", public + "  permit:\n    - if: is_ip_in_cidr(received_from_ip, \"192.0.2.0/24\") || received_from_ip in [\"198.51.100.7\", \"2001:db8::7\"]\n      then: true\n", ""},
		{"true for listed users", public + "  permit:\n    - if: in_list(\"apps\", authenticated_as)\n      then: true\nlists:\n  apps: [billing, crm]\n", ""},
		{"true for a list with an empty name", public + "  permit:\n    - if: in_list(\"apps\", authenticated_as)\n      then: true\nlists:\n  apps: [billing, \".\"]\n",
			`p.yaml:5:7: relay.permit[0]: this rule can let a client that has not authenticated relay, while listener "mta" listens on 0.0.0.0:25: ` + anyone + "; " + narrow},
		{"deny the unauthenticated first", public + "  permit:\n    - if: authenticated_as == \"\" && !is_ip_in_cidr(received_from_ip, \"10.1.0.0/16\")\n      then: false\n    - else: true\n", ""},
		{"deny that leaves a hole", public + "  permit:\n    - if: authenticated_as == \"\" && tls\n      then: false\n    - else: true\n",
			`p.yaml:7:7: relay.permit[1]: this rule can let a client that has not authenticated relay, while listener "mta" listens on 0.0.0.0:25: ` + anyone + "; " + narrow},
		{"true on a loopback listener only", "version: 1\nrelay:\n  listeners: [{name: local, address: \"127.0.0.1:10025\"}, {name: pub, address: \"192.0.2.1:25\"}]\n  permit:\n    - if: listener == \"local\"\n      then: true\n", ""},
		{"true on the public listener", "version: 1\nrelay:\n  listeners: [{name: local, address: \"127.0.0.1:10025\"}, {name: pub, address: \"192.0.2.1:25\"}]\n  permit:\n    - if: listener in [\"local\", \"pub\"]\n      then: true\n",
			`p.yaml:5:7: relay.permit[0]: this rule can let a client that has not authenticated relay, while listener "pub" listens on 192.0.2.1:25: ` + anyone + "; " + narrow},
		{"loopback behind PROXY protocol", "version: 1\nrelay:\n  listeners: [{name: lb, address: \"127.0.0.1:2525\", proxy-protocol: {trusted: [127.0.0.1]}}]\n  networks: [0.0.0.0/0]\n",
			`p.yaml:4:14: relay.networks[0]: 0.0.0.0/0 is every IPv4 address, while listener "lb" listens on 127.0.0.1:2525 behind PROXY protocol: ` + anyone + `; list your clients' networks, or require AUTH (relay.auth)`},
		{"PROXY headers from anyone", "version: 1\nrelay:\n  listeners:\n    - {name: lb, address: \"0.0.0.0:25\", proxy-protocol: {trusted: [192.0.2.10, 0.0.0.0/0]}}\n",
			`p.yaml:4:80: relay.listeners[0].proxy-protocol.trusted[1]: 0.0.0.0/0 is every IPv4 address, while listener "lb" listens on 0.0.0.0:25: any client could send a PROXY header and claim an address of relay.networks; list only your load balancers' addresses`},
		{"submission without auth", "version: 1\nrelay:\n  listeners:\n    - {name: sub, address: \"0.0.0.0:587\", mode: submission, tls: {cert: c, key: k}}\n",
			`p.yaml:4:49: relay.listeners[0].mode: listener "sub" has mode submission, where every client must authenticate, but AUTH is off: set relay.auth.users-file (or make the listener mode smtp)`},
		{"submission without tls", "version: 1\nrelay:\n  auth: {users-file: users}\n  listeners:\n    - {name: sub, address: \"0.0.0.0:587\", mode: submission}\n",
			`p.yaml:5:49: relay.listeners[0].mode: listener "sub" has mode submission but no tls: STARTTLS is required before AUTH; add tls: {cert: PATH, key: PATH} to the listener`},
		{"submissions without tls", "version: 1\nrelay:\n  auth: {users-file: users}\n  listeners:\n    - {name: subs, address: \"0.0.0.0:465\", mode: submissions}\n",
			`p.yaml:5:50: relay.listeners[0].mode: listener "subs" has mode submissions but no tls: it speaks TLS from the first byte; add tls: {cert: PATH, key: PATH} to the listener`},
		{"submission done right", "version: 1\nrelay:\n  auth: {users-file: users}\n  listeners:\n    - {name: sub, address: \"0.0.0.0:587\", mode: submission, tls: {cert: c, key: k}}\n", ""},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			if got := loadErr(c.policy); got != c.want {
				t.Errorf("policy:\n%s\ngot:\n%s\nwant:\n%s", c.policy, got, c.want)
			}
		})
	}
}

// TestOpenRelayUnion: client prefixes none of which is too broad alone
// but which together hold every IPv4 address are refused, at the first;
// leave one /8 out and they load.
func TestOpenRelayUnion(t *testing.T) {
	var all []string
	for i := 0; i < 256; i++ {
		all = append(all, fmt.Sprintf("%d.0.0.0/8", i))
	}
	const head = "version: 1\nrelay:\n  listeners: [{name: mta, address: \"192.0.2.1:25\"}]\n"
	got := loadErr(head + "  networks: [" + strings.Join(all[:255], ", ") + "]\n" +
		"  permit:\n    - if: is_ip_in_cidr(received_from_ip, \"255.0.0.0/8\")\n      then: true\n")
	if !strings.HasPrefix(got, `p.yaml:4:14: relay.networks[0]: together, 0.0.0.0/8 (relay.networks[0]), 1.0.0.0/8 (relay.networks[1]),`) ||
		!strings.Contains(got, `254.0.0.0/8 (relay.networks[254]), 255.0.0.0/8 (relay.permit[0]) cover every IPv4 address, while listener "mta" listens on 192.0.2.1:25: anyone could relay through this server`) {
		t.Errorf("got %s", got)
	}
	if got := loadErr(head + "  networks: [" + strings.Join(all[:255], ", ") + "]\n"); got != "" {
		t.Errorf("255 of the 256 /8 prefixes: %s", got)
	}
	if got := loadErr(head + "  networks: [" + strings.Join(append(all[:100:100], all[101:]...), ", ") + "]\n"); got != "" {
		t.Errorf("a /8 missing in the middle: %s", got)
	}
}

// TestCoversAll checks the union test on its own.
func TestCoversAll(t *testing.T) {
	entries := func(ps ...string) []prefixEntry {
		var out []prefixEntry
		for _, p := range ps {
			out = append(out, prefixEntry{prefix: netip.MustParsePrefix(p)})
		}
		return out
	}
	v4, v6 := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	for _, c := range []struct {
		root netip.Prefix
		in   []prefixEntry
		want bool
	}{
		{v4, entries("0.0.0.0/1", "128.0.0.0/1"), true},
		{v4, entries("128.0.0.0/1", "0.0.0.0/2", "64.0.0.0/2"), true},
		{v4, entries("0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/3"), true},
		{v4, entries("0.0.0.0/1", "128.0.0.0/2", "224.0.0.0/3"), false},
		{v4, entries("0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8"), true},
		{v4, entries("0.0.0.0/1", "128.0.0.0/2"), false},
		{v6, entries("::/1", "8000::/1"), true},
		{v6, entries("::/1", "8000::/2"), false},
	} {
		if got := coversAll(c.root, c.in); got != c.want {
			t.Errorf("coversAll(%v, %v) = %v", c.root, c.in, got)
		}
	}
}

// TestCheckListeners: the guard runs again for the addresses a daemon is
// told to listen on instead of the policy's.
func TestCheckListeners(t *testing.T) {
	s := mustParse(t, "version: 1\nrelay:\n  networks: [10.0.0.0/8, 0.0.0.0/0]\n")
	r := s.Relay()
	ls := slices.Clone(r.Listeners)
	ls[0].Address = netip.MustParseAddrPort("127.0.0.2:25")
	if err := r.CheckListeners(ls); err != nil {
		t.Errorf("another loopback address: %v", err)
	}
	ls[0].Address = netip.MustParseAddrPort("0.0.0.0:25")
	err := r.CheckListeners(ls)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("got %v, want one error", err)
	}
	if want := `p.yaml:3:26: relay.networks[1]: 0.0.0.0/0 is every IPv4 address, while listener "mta" listens on 0.0.0.0:25: anyone could relay through this server; list your clients' networks, or require AUTH (relay.auth)`; err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
}

// permitPolicy has rules that deny, allow, and leave the rest undecided.
const permitPolicy = `version: 1
relay:
  listeners:
    - {name: mta, address: "127.0.0.1:10025"}
    - {name: local, address: "127.0.0.2:10025"}
  networks: [127.0.0.0/8]
  permit:
    - if: authenticated_as == "" && !is_ip_in_cidr(received_from_ip, "10.1.0.0/16") && !is_ip_in_cidr(received_from_ip, "127.0.0.0/8")
      then: false
    - if: rcpt_domain == "blocked.example"
      then: false
    - if: listener == "local" && sender_domain == "example.org" && tls
      then: true
`

// TestPermitEval: the rules allow, deny, or leave the decision to the
// networks and AUTH; MayRelay combines them.
func TestPermitEval(t *testing.T) {
	s := mustParse(t, permitPolicy)
	r := s.Relay()
	env := newEnv(s)
	var m expr.VM
	ip := netip.MustParseAddr
	tests := []struct {
		name              string
		sess              Session
		allowed, decided  bool
		mayRelay          bool
		matchedRule       int // in the trace; 0 for none
		traceLen          int
		wantSenderDomain  string
		wantReceivedFrom  string
		wantRcptDomainVar string
	}{
		{"unauthenticated stranger is denied", Session{Listener: "mta", ClientIP: ip("192.0.2.1"), Sender: "a@example.org", Rcpt: "b@example.com"},
			false, true, false, 1, 1, "example.org", "192.0.2.1", "example.com"},
		{"authenticated stranger: undecided, AUTH allows", Session{Listener: "mta", ClientIP: ip("192.0.2.1"), AuthenticatedAs: "app", Sender: "a@example.org", Rcpt: "b@example.com"},
			false, false, true, 0, 3, "example.org", "192.0.2.1", "example.com"},
		{"office network: undecided, not in networks", Session{Listener: "mta", ClientIP: ip("10.1.2.3"), Sender: "a@example.org", Rcpt: "b@example.com"},
			false, false, false, 0, 3, "example.org", "10.1.2.3", "example.com"},
		{"loopback: undecided, in networks", Session{Listener: "mta", ClientIP: ip("::ffff:127.0.0.1"), Sender: "", Rcpt: "b@example.com"},
			false, false, true, 0, 3, "", "127.0.0.1", "example.com"},
		{"blocked domain, any case", Session{Listener: "mta", ClientIP: ip("127.0.0.1"), AuthenticatedAs: "app", Sender: "a@example.org", Rcpt: "b@Blocked.Example."},
			false, true, false, 2, 2, "example.org", "127.0.0.1", "blocked.example"},
		{"allowed by a rule", Session{Listener: "local", ClientIP: ip("10.1.0.5"), TLS: true, Sender: "a@EXAMPLE.org", Rcpt: "b@example.com"},
			true, true, true, 3, 3, "example.org", "10.1.0.5", "example.com"},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			c.sess.Fill(env)
			if env.SenderDomain != c.wantSenderDomain || env.ReceivedFromIP != c.wantReceivedFrom || env.RcptDomain != c.wantRcptDomainVar ||
				env.Listener != c.sess.Listener || env.TLS != c.sess.TLS || env.AuthenticatedAs != c.sess.AuthenticatedAs {
				t.Errorf("env %+v", env)
			}
			var tr Trace
			allowed, decided, err := r.Permit.Eval(&m, env, &tr)
			if err != nil || allowed != c.allowed || decided != c.decided {
				t.Errorf("Eval = %v, %v, %v; want %v, %v", allowed, decided, err, c.allowed, c.decided)
			}
			if len(tr.Entries) != c.traceLen {
				t.Errorf("trace has %d entries, want %d: %+v", len(tr.Entries), c.traceLen, tr.Entries)
			}
			for i, e := range tr.Entries {
				if e.Setting != "relay.permit" || e.Phase != "session" || e.Rule != i+1 || e.Matched != (i+1 == c.matchedRule) {
					t.Errorf("trace entry %d: %+v", i, e)
				}
				if e.Matched && e.Value != fmt.Sprint(c.allowed) {
					t.Errorf("matched rule gave %q", e.Value)
				}
			}
			got, err := r.MayRelay(&m, env, c.sess, nil)
			if err != nil || got != c.mayRelay {
				t.Errorf("MayRelay = %v, %v; want %v", got, err, c.mayRelay)
			}
		})
	}
}

// TestPermitElse: an else decides every RCPT no rule matched.
func TestPermitElse(t *testing.T) {
	s := mustParse(t, "version: 1\nrelay:\n  permit:\n    - if: authenticated_as != \"\"\n      then: true\n    - else: false\n")
	env := newEnv(s)
	var m expr.VM
	var tr Trace
	ok, err := s.Relay().MayRelay(&m, env, Session{Listener: "mta", ClientIP: netip.MustParseAddr("127.0.0.1"), Rcpt: "b@example.com"}, &tr)
	if err != nil || ok {
		t.Errorf("loopback without AUTH under else: false: %v, %v", ok, err)
	}
	if last := tr.Entries[len(tr.Entries)-1]; last.Kind != KindElse || last.Value != "false" || last.At.String() != "p.yaml:6:7" {
		t.Errorf("trace ends with %+v", last)
	}
}

// TestPermitRuntimeError: a rule that fails at run time never allows: the
// error comes back, positioned, with decided true so that the networks
// and AUTH do not decide instead.
func TestPermitRuntimeError(t *testing.T) {
	s := mustParse(t, "version: 1\nrelay:\n  permit:\n    - if: split(rcpt, \"@\")[5] == \"x\"\n      then: false\n    - if: tls\n      then: {expr: 'split(rcpt, \"@\")[7] == \"\"'}\n")
	r := s.Relay()
	env := newEnv(s)
	var m expr.VM
	sess := Session{Listener: "mta", ClientIP: netip.MustParseAddr("127.0.0.1"), AuthenticatedAs: "app", Rcpt: "b@example.com"}
	sess.Fill(env)
	allowed, decided, err := r.Permit.Eval(&m, env, nil)
	var pe *Error
	if allowed || !decided || !errors.As(err, &pe) || pe.Line != 4 || pe.Column != 27 || pe.Setting != "relay.permit[0].if" || !strings.Contains(pe.Message, "run-time error") {
		t.Errorf("condition error: %v, %v, %v", allowed, decided, err)
	}
	ok, err := r.MayRelay(&m, env, sess, nil)
	if ok || err == nil {
		t.Errorf("MayRelay with a failing rule: %v, %v (an authenticated loopback client must still be refused)", ok, err)
	}
	// A then that fails.
	s = mustParse(t, "version: 1\nrelay:\n  permit:\n    - if: tls\n      then: {expr: 'split(rcpt, \"@\")[7] == \"\"'}\n")
	sess.TLS = true
	var tr Trace
	ok, err = s.Relay().MayRelay(&m, newEnv(s), sess, &tr)
	if ok || err == nil || !strings.HasPrefix(err.Error(), "p.yaml:5:37: relay.permit[0].then: run-time error") {
		t.Errorf("failing then: %v, %v", ok, err)
	}
	if len(tr.Entries) != 1 || tr.Entries[0].Error == "" || tr.Entries[0].Value != "false" {
		t.Errorf("trace %+v", tr.Entries)
	}
}

// TestRelayRoundTrip: a policy with every relay key printed by Marshal
// loads again with the same settings.
func TestRelayRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Parse(filepath.Join(dir, "policy.yaml"), []byte(fullRelay), Options{Hostname: "mta.test"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(filepath.Join(dir, "again.yaml"), out, Options{Hostname: "mta.test"})
	if err != nil {
		t.Fatalf("printed policy does not load: %v\n%s", err, out)
	}
	for _, f := range Fields() {
		if !strings.HasPrefix(f.Path, "relay.") {
			continue
		}
		if a, b := nodeText(t, f.node(s)), nodeText(t, f.node(again)); a != b {
			t.Errorf("%s: printed %q, reloaded %q", f.Path, a, b)
		}
	}
	if !strings.Contains(string(out), "      tls: {cert: "+filepath.Join(dir, "tls/relay.crt")+", key: /etc/postern/relay.key}\n") {
		t.Errorf("the listener's tls is not printed with its resolved paths:\n%s", out)
	}
}

// TestParseFreeSpace reads percentages and sizes.
func TestParseFreeSpace(t *testing.T) {
	for _, c := range []struct {
		in   string
		want FreeSpace
		err  bool
	}{
		{"5%", FreeSpace{Percent: 5}, false},
		{" 2.5 % ", FreeSpace{Percent: 2.5}, false},
		{"0%", FreeSpace{}, false},
		{"99.9%", FreeSpace{Percent: 99.9}, false},
		{"2GiB", FreeSpace{Size: 2 << 30}, false},
		{"500MB", FreeSpace{Size: 500e6}, false},
		{"0", FreeSpace{}, false},
		{"100%", FreeSpace{}, true},
		{"1e1%", FreeSpace{}, true},
		{"NaN%", FreeSpace{}, true},
		{"%", FreeSpace{}, true},
		{"five", FreeSpace{}, true},
	} {
		got, err := ParseFreeSpace(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseFreeSpace(%q) = %+v, %v", c.in, got, err)
		}
	}
	if got := (FreeSpace{Percent: 5}).Min(1000); got != 50 {
		t.Errorf("5%% of 1000 = %d", got)
	}
	if got := (FreeSpace{Size: 7}).Min(1000); got != 7 {
		t.Errorf("7 bytes of 1000 = %d", got)
	}
}

// TestInNetworks compares client addresses unmapped.
func TestInNetworks(t *testing.T) {
	r := mustParse(t, "version: 1\nrelay:\n  networks: [192.0.2.0/24, \"::ffff:198.51.100.0/120\", \"2001:db8::/32\"]\n").Relay()
	for addr, want := range map[string]bool{
		"192.0.2.9": true, "::ffff:192.0.2.9": true, "198.51.100.1": true, "2001:db8::1": true,
		"127.0.0.1": false, "203.0.113.1": false, "2001:db9::1": false,
	} {
		if got := r.InNetworks(netip.MustParseAddr(addr)); got != want {
			t.Errorf("InNetworks(%s) = %v", addr, got)
		}
	}
}
