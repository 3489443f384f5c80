// Package dnsbed starts a real DNS test bed on loopback: Knot DNS serving
// a DNSSEC-signed zone, an unsigned zone and a second signed zone, and
// Unbound validating on top of it, with the real trust anchor for the
// signed zone and a wrong one for the other.
//
//	zone           Knot             Unbound answers
//	example.test   signed           AD=1 (secure)
//	insecure.test  unsigned         AD=0 (insecure)
//	bogus.test     signed           SERVFAIL (bogus: wrong trust anchor)
//
// Each zone holds the records of [DefaultRecords] plus any given in
// [Options]. Options.Zones adds further unsigned zones, such as a reverse
// zone for PTR records of loopback addresses. Everything listens on 127.0.0.1 on free ports and lives in a
// temporary directory; the servers stop when the test that started them
// ends. Unbound caps TTLs at 5 seconds (cache-max-ttl), so zone changes
// made with [Bed.SetRecord] show through it quickly.
package dnsbed

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/postern-mta/postern/internal/testbed"
)

// TLSAHash is the certificate association data of the default TLSA
// record (_25._tcp.mx1, usage 3 1 1): an arbitrary SHA-256 value.
const TLSAHash = "b9842515c5e33eae9b0e7944c4ec2d224919189ca82d8fd0560e2b8bcf6ed158"

// DefaultRecords are put in every zone, relative to its origin, with a
// default TTL of 300s.
var DefaultRecords = []string{
	"@        IN MX   10 mx1",
	"@        IN MX   20 mx2",
	"mx1      IN A    127.0.0.2",
	"mx1      IN AAAA ::1",
	"mx2      IN A    127.0.0.3",
	"_25._tcp.mx1 IN TLSA 3 1 1 " + TLSAHash,
	`_mta-sts IN TXT  "v=STSv1; id=20260101T000000;"`,
	"mta-sts  IN A    127.0.0.1",
	`_smtp._tls IN TXT "v=TLSRPTv1; " "rua=mailto:tlsrpt@example.test"`,
	"nullmx   IN MX   0 .",
	"v6only   IN MX   10 mx6",
	"mx6      IN AAAA 2001:db8:1::25",
}

// Zones served by the bed.
const (
	Signed   = "example.test"
	Insecure = "insecure.test"
	Bogus    = "bogus.test"
)

// Options adds records to the zones.
type Options struct {
	// Records maps a zone name (Signed, Insecure, Bogus) to extra zone
	// file lines, relative to the zone's origin.
	Records map[string][]string
	// Zones are further zones Knot serves, unsigned, each mapped to its
	// zone file lines (relative to its origin; the SOA and NS records are
	// added, DefaultRecords are not). Unbound resolves them too, in place
	// of its built-in answers for the same names: a reverse zone such as
	// "0.0.127.in-addr.arpa" gives the loopback addresses PTR records.
	Zones map[string][]string
}

// Bed is a running test bed.
type Bed struct {
	// Knot is the authoritative server's address, "127.0.0.1:PORT".
	Knot string
	// Unbound is the validating resolver's address, "127.0.0.1:PORT".
	Unbound string
	// Dir is the temporary directory holding configs, zones and keys.
	Dir string

	knotc, knotConf string
}

// Start starts Knot and Unbound and waits until Unbound answers for the
// signed zone with AD set. It skips the test when knotd, knotc, keymgr or
// unbound is missing (fails with POSTERN_REQUIRE_PEERS=1).
func Start(t testing.TB, opts Options) *Bed {
	t.Helper()
	knotd := testbed.Require(t, "knotd")
	knotc := testbed.Require(t, "knotc")
	keymgr := testbed.Require(t, "keymgr")
	unbound := testbed.Require(t, "unbound")
	checkconf := testbed.Require(t, "unbound-checkconf")

	dir := t.TempDir()
	knotDir, ubDir := filepath.Join(dir, "knot"), filepath.Join(dir, "unbound")
	for _, d := range []string{knotDir, ubDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := &Bed{Dir: dir, knotc: knotc, knotConf: filepath.Join(knotDir, "knot.conf")}
	knotPort := freePort(t)
	b.Knot = testbed.Addr("127.0.0.1", knotPort)

	extra := slices.Sorted(maps.Keys(opts.Zones))
	for _, zone := range append([]string{Signed, Insecure, Bogus}, extra...) {
		var z strings.Builder
		fmt.Fprintf(&z, "$ORIGIN %s.\n$TTL 300\n", zone)
		fmt.Fprintf(&z, "@ IN SOA ns1.%s. hostmaster.%s. 1 3600 600 86400 300\n", zone, zone)
		fmt.Fprintf(&z, "@ IN NS ns1.%s.\nns1 IN A 127.0.0.1\n", zone)
		records, ok := opts.Zones[zone]
		if !ok {
			records = append(append([]string(nil), DefaultRecords...), opts.Records[zone]...)
		}
		for _, rr := range records {
			z.WriteString(rr + "\n")
		}
		write(t, filepath.Join(knotDir, zone+".zone"), z.String())
	}
	var knotZones, ubZones strings.Builder
	for _, zone := range extra {
		fmt.Fprintf(&knotZones, "  - domain: %s\n", zone)
		// A local-zone of the same name replaces Unbound's built-in one
		// (such as its "localhost" PTR for 127.0.0.1); transparent with no
		// local data means: resolve as usual, here through the stub.
		fmt.Fprintf(&ubZones, "    local-zone: %q transparent\n", zone+".")
	}
	write(t, b.knotConf, fmt.Sprintf(`server:
    rundir: %[1]s
    listen: 127.0.0.1@%[2]d
database:
    storage: %[1]s
log:
  - target: stderr
    any: info
policy:
  - id: fast
    algorithm: ecdsap256sha256
    nsec3: off
    ksk-lifetime: 0
    zsk-lifetime: 0
template:
  - id: default
    storage: %[1]s
    file: "%%s.zone"
    zonefile-sync: -1
    zonefile-load: difference-no-serial
    journal-content: all
zone:
  - domain: %[3]s
    dnssec-signing: on
    dnssec-policy: fast
  - domain: %[4]s
  - domain: %[5]s
    dnssec-signing: on
    dnssec-policy: fast
%[6]s`, knotDir, knotPort, Signed, Insecure, Bogus, knotZones.String()))
	run(t, knotDir, knotc, "-c", b.knotConf, "conf-check")
	kp := testbed.Start(t, knotDir, knotd, "-c", b.knotConf)
	testbed.WaitFor(t, kp, 10*time.Second, func(ctx context.Context) error {
		for _, zone := range []string{Signed, Bogus} {
			m, err := ask(ctx, b.Knot, zone, mdns.TypeDNSKEY, false)
			if err != nil {
				return err
			}
			if len(m.Answer) == 0 {
				return fmt.Errorf("%s not signed yet", zone)
			}
		}
		return nil
	})

	// The real trust anchor for example.test, a wrong one for bogus.test.
	ds := strings.TrimSpace(run(t, knotDir, keymgr, "-c", b.knotConf, Signed, "ds"))
	var anchors strings.Builder
	for _, line := range strings.Split(ds, "\n") {
		fmt.Fprintf(&anchors, "    trust-anchor: %q\n", strings.TrimSpace(line))
	}
	fmt.Fprintf(&anchors, "    trust-anchor: \"%s. DS 11111 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n", Bogus)

	var ubStubs strings.Builder
	for _, zone := range extra {
		fmt.Fprintf(&ubStubs, "stub-zone:\n    name: %q\n    stub-addr: 127.0.0.1@%d\n", zone, knotPort)
	}
	ubPort := freePort(t)
	b.Unbound = testbed.Addr("127.0.0.1", ubPort)
	ubConf := filepath.Join(ubDir, "unbound.conf")
	write(t, ubConf, fmt.Sprintf(`server:
    interface: 127.0.0.1@%[1]d
    port: %[1]d
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "%[2]s"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    access-control: ::1 allow
    module-config: "validator iterator"
%[3]s    val-log-level: 2
    local-zone: "test." nodefault
%[8]s    cache-max-ttl: 5
stub-zone:
    name: "%[5]s"
    stub-addr: 127.0.0.1@%[4]d
stub-zone:
    name: "%[6]s"
    stub-addr: 127.0.0.1@%[4]d
stub-zone:
    name: "%[7]s"
    stub-addr: 127.0.0.1@%[4]d
%[9]sforward-zone:
    name: "."
    forward-addr: 127.0.0.1@%[4]d
remote-control:
    control-enable: no
`, ubPort, ubDir, anchors.String(), knotPort, Signed, Insecure, Bogus, ubZones.String(), ubStubs.String()))
	run(t, ubDir, checkconf, ubConf)
	up := testbed.Start(t, ubDir, unbound, "-d", "-c", ubConf)
	testbed.WaitFor(t, up, 15*time.Second, func(ctx context.Context) error {
		m, err := ask(ctx, b.Unbound, Signed, mdns.TypeSOA, true)
		if err != nil {
			return err
		}
		if m.Rcode != mdns.RcodeSuccess || !m.AuthenticatedData {
			return fmt.Errorf("unbound: %s SOA: %s, AD=%v", Signed, mdns.RcodeToString[m.Rcode], m.AuthenticatedData)
		}
		return nil
	})
	return b
}

// SetRecord replaces the RRset of owner (relative to zone, "@" for the
// apex) and type rtype with one record, in a Knot transaction; Knot
// re-signs the zone on commit.
func (b *Bed) SetRecord(t testing.TB, zone, owner string, ttl int, rtype, rdata string) {
	t.Helper()
	dir := filepath.Dir(b.knotConf)
	run(t, dir, b.knotc, "-c", b.knotConf, "zone-begin", zone)
	// Unsetting an RRset that does not exist fails; that is fine.
	_ = exec.Command(b.knotc, "-c", b.knotConf, "zone-unset", zone, owner, rtype).Run()
	args := []string{"-c", b.knotConf, "zone-set", zone, owner, fmt.Sprint(ttl), rtype}
	args = append(args, strings.Fields(rdata)...)
	if out, err := exec.Command(b.knotc, args...).CombinedOutput(); err != nil {
		_ = exec.Command(b.knotc, "-c", b.knotConf, "zone-abort", zone).Run()
		t.Fatalf("dnsbed: knotc zone-set %s %s %s %s: %v\n%s", zone, owner, rtype, rdata, err, out)
	}
	run(t, dir, b.knotc, "-c", b.knotConf, "zone-commit", zone)
}

// ask sends one UDP question with DO set.
func ask(ctx context.Context, addr, name string, qtype uint16, rd bool) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.RecursionDesired = rd
	m.SetEdns0(1232, true)
	c := &mdns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	return r, err
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		p := testbed.FreePort(t, "127.0.0.1")
		if c, err := net.ListenPacket("udp", testbed.Addr("127.0.0.1", p)); err == nil {
			c.Close()
			return p
		}
	}
	t.Fatal("dnsbed: no port free for both TCP and UDP")
	return 0
}

func run(t testing.TB, dir string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dnsbed: %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
