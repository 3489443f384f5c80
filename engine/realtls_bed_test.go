//go:build linux

package engine_test

// The real-server TLS matrix: Engine.Deliver with DANE (RFC 7672), MTA-STS
// (RFC 8461), REQUIRETLS and TLS-Required: No (RFC 8689), and the TLS-RPT
// records (RFC 8460) they produce, against real peers only:
//
//   - DNS: Knot serving example.test (signed), insecure.test (unsigned) and
//     bogus.test (signed, wrong trust anchor), Unbound validating on top,
//     all on loopback (internal/testbed/dnsbed), asked through the
//     engine's own network resolver;
//   - SMTP: aiosmtpd receivers on port 25 (and one relay on 2525) inside
//     the server side of a pair of network namespaces the test creates
//     (smtpbed.NewNetPair), the engine dialing from the client side;
//   - HTTPS: nginx serving the MTA-STS policy hosts on 443 in the same
//     server namespace (internal/testbed/httpbed).
//
// One receiver runs per (address, behaviour), and the rows vary the DNS:
// each row has domains and MX names of its own pointing at the receiver
// with the behaviour it needs, and its own recipient addresses, so what a
// receiver got is told apart per row. A receiver writes a message down
// before it answers the end of DATA, so once Deliver returns, a message
// that was accepted is on disk and one that is not there never reached it.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/dnsbed"
	"github.com/postern-mta/postern/internal/testbed/httpbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/policies"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/dane"
	"github.com/postern-mta/postern/transport/dns"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// The receivers' addresses in the server namespace (see smtpbed.NetPair),
// and what listens there on port 25.
const (
	addrPKIX  = "192.0.2.25"     // certificate from the test CA (PKIX-valid for its names), REQUIRETLS offered
	addrSelf  = "192.0.2.26"     // self-signed certificate (PKIX refuses it)
	addrPlain = "2001:db8:1::25" // no STARTTLS
	addrOther = "2001:db8:1::26" // certificate from the test CA for other.example.test only

	relayPort = 2525 // the relay receiver, on addrPKIX with addrPKIX's certificate
	// addrPolicyHost is where the policy hosts of the MTA-STS rows that
	// stop their nginx listen (addrPKIX:443 is the shared nginx).
	addrPolicyHost = addrSelf
)

// stsMaxAge is the max_age of every MTA-STS policy served.
const stsMaxAge = 24 * time.Hour

// realTLSBed is what the rows share: the DNS bed, the namespaces, the
// receivers, nginx, the CA and the certificates' TLSA data.
type realTLSBed struct {
	dns      *dnsbed.Bed
	res      dns.Resolver // validating: DNSSEC on, Unbound on loopback
	np       *smtpbed.NetPair
	ca       *smtpbed.CA
	web      *httpbed.Server // the shared policy hosts, addrPKIX:443
	webLeaf  *smtpbed.Leaf   // their certificate (also used by the rows' own nginx)
	pkix     *smtpbed.AIOSink
	self     *smtpbed.AIOSink
	plain    *smtpbed.AIOSink
	other    *smtpbed.AIOSink
	relay    *smtpbed.AIOSink
	pkixSPKI []byte // SHA-256 of the SubjectPublicKeyInfo of addrPKIX's certificate ("3 1 1")
	selfSPKI []byte // of the self-signed certificate
	caSPKI   []byte // of the test CA ("2 1 1")
}

// pkixNames are the names addrPKIX's certificate is valid for: every MX
// name pointing there except mx05 (row 5 shows TLS without
// authentication) and mx07.insecure.test (row 7: opportunistic TLS).
var pkixNames = []string{
	"mx02.example.test", "mx03.example.test", "mx10-real.example.test", "d11.example.test",
	"relay12.example.test", "relay12-bad.example.test", "mx14.example.test", "mx15-unlisted.example.test",
	"mx19.example.test", "mx20.example.test", "mx21.example.test", "mx22.example.test",
	"mx22-unlisted.example.test", "mx23.example.test", "mx24.example.test", "mx26.insecure.test",
	"mx27.example.test", "mx27d.example.test",
}

// selfNames are the names of the self-signed certificate: right for the
// MX names pointing at addrSelf, so that PKIX refuses it for its issuer
// only (certificate-not-trusted).
var selfNames = []string{"mx01.example.test", "mx16.example.test", "mx18.example.test", "mx25.example.test"}

// stsDomains are the MTA-STS rows' domains served by the shared nginx, and
// stsOwnDomains those whose policy host is started and stopped by the row.
var (
	stsDomains    = []string{"s14", "s15", "s15b", "s16", "s17", "s18", "s19", "s20a", "s20b", "s23", "s27"}
	stsOwnDomains = []string{"s21", "s22"}
)

// stsPolicy is an MTA-STS policy text (RFC 8461 section 3.2).
func stsPolicy(mode string, mx ...string) []byte {
	s := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		s += "mx: " + m + "\r\n"
	}
	return []byte(s + fmt.Sprintf("max_age: %d\r\n", int(stsMaxAge/time.Second)))
}

// policyPath is where a policy host serves the policy.
const policyPath = "/.well-known/mta-sts.txt"

// tlsa is the zone-file data of a TLSA record.
func tlsa(usage, selector, mtype uint8, data []byte) string {
	return dane.Record{Usage: usage, Selector: selector, MatchingType: mtype, Data: data}.String()
}

// noMatch is SHA-256 data that matches no certificate of the bed.
var noMatch = func() []byte { s := sha256.Sum256([]byte("no certificate has this key")); return s[:] }()

// newRealTLSBed starts everything the rows share.
func newRealTLSBed(t *testing.T) *realTLSBed {
	t.Helper()
	b := &realTLSBed{np: smtpbed.NewNetPair(t), ca: smtpbed.NewCA(t)}
	pkixLeaf := b.ca.Issue(t, pkixNames...)
	otherLeaf := b.ca.Issue(t, "other.example.test")
	selfLeaf, selfCert := selfSigned(t, selfNames...)
	var webNames []string
	for _, d := range append(slices.Clone(stsDomains), stsOwnDomains...) {
		webNames = append(webNames, "mta-sts."+d+".example.test")
	}
	b.webLeaf = b.ca.Issue(t, webNames...)
	b.pkixSPKI = spkiSum(t, pkixLeaf.Cert.Certificate[0])
	b.caSPKI = spkiSum(t, pkixLeaf.Cert.Certificate[1])
	b.selfSPKI = spkiSum(t, selfCert.Raw)

	b.dns = dnsbed.Start(t, dnsbed.Options{Records: b.records()})
	var err error
	b.res, err = dns.New(dns.Config{Kind: dns.KindCustom, Servers: []string{"udp://" + b.dns.Unbound},
		DNSSEC: true, EDNS: true, TCPOnError: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	srv := b.np.Server
	b.pkix = smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Host: addrPKIX, Netns: srv, Leaf: pkixLeaf, RequireTLS: true})
	b.self = smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Host: addrSelf, Netns: srv, Leaf: selfLeaf})
	b.plain = smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Host: addrPlain, Netns: srv})
	b.other = smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Host: addrOther, Netns: srv, Leaf: otherLeaf})
	b.relay = smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Host: addrPKIX, Port: relayPort, Netns: srv, Leaf: pkixLeaf})
	b.web = httpbed.Start(t, httpbed.Options{Host: addrPKIX, Netns: srv,
		Site: httpbed.Site{CertFile: b.webLeaf.CertFile, KeyFile: b.webLeaf.KeyFile}, Sites: stsSites()})
	return b
}

// records are the zone lines of every row (see the row comments for what
// each is for).
func (b *realTLSBed) records() map[string][]string {
	pkixEE := tlsa(3, 1, 1, b.pkixSPKI)
	signed := []string{
		// 1: DANE-EE for the self-signed certificate.
		"d01 MX 10 mx01", "mx01 A " + addrSelf, "_25._tcp.mx01 TLSA " + tlsa(3, 1, 1, b.selfSPKI),
		// 2: DANE-EE that matches nothing, at a PKIX-valid server.
		"d02 MX 10 mx02", "mx02 A " + addrPKIX, "_25._tcp.mx02 TLSA " + tlsa(3, 1, 1, noMatch),
		// 3, 4: DANE-TA of the test CA, leaf for the MX name or not.
		"d03 MX 10 mx03", "mx03 A " + addrPKIX, "_25._tcp.mx03 TLSA " + tlsa(2, 1, 1, b.caSPKI),
		"d04 MX 10 mx04", "mx04 AAAA " + addrOther, "_25._tcp.mx04 TLSA " + tlsa(2, 1, 1, b.caSPKI),
		// 5: unusable records only (PKIX-EE, an unknown selector), with
		// and without STARTTLS. The PKIX-EE one even matches.
		"d05 MX 10 mx05", "mx05 A " + addrPKIX,
		"_25._tcp.mx05 TLSA " + tlsa(1, 1, 1, b.pkixSPKI), "_25._tcp.mx05 TLSA " + tlsa(3, 7, 1, b.pkixSPKI),
		"d05p MX 10 mx05p", "mx05p AAAA " + addrPlain, "_25._tcp.mx05p TLSA " + tlsa(1, 1, 1, b.pkixSPKI),
		// 6: DANE active, no STARTTLS.
		"d06 MX 10 mx06", "mx06 AAAA " + addrPlain, "_25._tcp.mx06 TLSA " + pkixEE,
		// 9: secure MX and address, TLSA lookup bogus (a CNAME into bogus.test).
		"d09 MX 10 mx09", "mx09 A " + addrPKIX, "_25._tcp.mx09 CNAME tlsa09.bogus.test.",
		// 10: the MX is a CNAME; the TLSA records at the alias do not
		// match, those at the expanded name do.
		"d10 MX 10 mx10", "mx10 CNAME mx10-real", "mx10-real A " + addrPKIX,
		"_25._tcp.mx10 TLSA " + tlsa(3, 1, 1, noMatch), "_25._tcp.mx10-real TLSA " + pkixEE,
		// 11: no MX: the domain is its own implicit MX.
		"d11 A " + addrPKIX, "_25._tcp.d11 TLSA " + pkixEE,
		// 12: relays on port 2525, matching TLSA or not.
		"relay12 A " + addrPKIX, fmt.Sprintf("_%d._tcp.relay12 TLSA %s", relayPort, pkixEE),
		"relay12-bad A " + addrPKIX, fmt.Sprintf("_%d._tcp.relay12-bad TLSA %s", relayPort, tlsa(3, 1, 1, noMatch)),
		// 14-23, 27: MTA-STS domains (policies in stsSites).
		"s14 MX 10 mx14", "mx14 A " + addrPKIX,
		"s15 MX 10 mx15-unlisted", "s15 MX 20 mx15", "mx15-unlisted A " + addrPKIX, "mx15 AAAA " + addrPlain,
		"s15b MX 10 mx15-unlisted",
		"s16 MX 10 mx16", "mx16 A " + addrSelf,
		"s17 MX 10 mx17", "mx17 AAAA " + addrPlain,
		"s18 MX 10 mx18", "mx18 A " + addrSelf,
		"s19 MX 10 mx19", "mx19 A " + addrPKIX,
		"s20a MX 10 mx20", "s20b MX 10 mx20", "mx20 A " + addrPKIX,
		"s21 MX 10 mx21", "mx21 A " + addrPKIX,
		"s22 MX 5 mx22-unlisted", "s22 MX 10 mx22", "mx22-unlisted A " + addrPKIX, "mx22 A " + addrPKIX,
		"s23 MX 10 mx23", "mx23 A " + addrPKIX, "_25._tcp.mx23 TLSA " + pkixEE,
		"s27 MX 10 mx27", "mx27 A " + addrPKIX,
		// 24, 25: REQUIRETLS to a secure MX, offered or not.
		"rt24 MX 10 mx24", "mx24 A " + addrPKIX,
		"rt25 MX 10 mx25", "mx25 A " + addrSelf, "_25._tcp.mx25 TLSA " + tlsa(3, 1, 1, b.selfSPKI),
		// 27: DANE that would fail.
		"d27 MX 10 mx27d", "mx27d A " + addrPKIX, "_25._tcp.mx27d TLSA " + tlsa(3, 1, 1, noMatch),
	}
	for i, d := range stsDomains {
		signed = append(signed, fmt.Sprintf(`_mta-sts.%s TXT "v=STSv1; id=%d;"`, d, i+1), "mta-sts."+d+" A "+addrPKIX)
	}
	for i, d := range stsOwnDomains {
		signed = append(signed, fmt.Sprintf(`_mta-sts.%s TXT "v=STSv1; id=%d;"`, d, 100+i), "mta-sts."+d+" A "+addrPolicyHost)
	}
	return map[string][]string{
		dnsbed.Signed: signed,
		dnsbed.Insecure: {
			// 7: TLSA records (matching) in an unsigned zone.
			"d07 MX 10 mx07", "mx07 A " + addrPKIX, "_25._tcp.mx07 TLSA " + pkixEE,
			// 26: an insecure MX without an MTA-STS policy.
			"rt26 MX 10 mx26", "mx26 A " + addrPKIX,
		},
		dnsbed.Bogus: {
			// 8: an MX in the bogus zone; 9: the target of mx09's TLSA CNAME.
			"d08 MX 10 mx08", "mx08 A " + addrPKIX, "tlsa09 TLSA " + pkixEE,
		},
	}
}

// stsSites are the policy hosts of the shared nginx.
func stsSites() []httpbed.Site {
	site := func(d string, policy []byte) httpbed.Site {
		return httpbed.Site{Names: []string{"mta-sts." + d + ".example.test"}, Files: map[string][]byte{policyPath: policy}}
	}
	// A policy that lists no host of the bed: if it were applied under
	// enforce, every MX would be skipped.
	listsNothing := stsPolicy("enforce", "nomatch.example.test")
	oversized := stsPolicy("enforce", "nomatch.example.test")
	oversized = append(oversized, "x: "+strings.Repeat("a", 64<<10+1-len(oversized)-len("x: \r\n"))+"\r\n"...)
	html := site("s20b", listsNothing)
	html.ContentTypes = map[string]string{policyPath: "text/html"}
	redirect := httpbed.Site{Names: []string{"mta-sts.s19.example.test"},
		Redirects: map[string]string{policyPath: "https://mta-sts.s14.example.test" + policyPath}}
	return []httpbed.Site{
		site("s14", stsPolicy("enforce", "mx14.example.test")),
		site("s15", stsPolicy("enforce", "mx15.example.test")),
		site("s15b", stsPolicy("enforce", "mx15.example.test")),
		site("s16", stsPolicy("enforce", "mx16.example.test")),
		site("s17", stsPolicy("enforce", "mx17.example.test")),
		site("s18", stsPolicy("testing", "mx18.example.test")),
		redirect,
		site("s20a", oversized),
		html,
		site("s23", stsPolicy("enforce", "other.example.test")),
		site("s27", listsNothing),
	}
}

// startPolicyHost starts an nginx of the row's own on addrPolicyHost:443
// serving site; it stops when t ends.
func (b *realTLSBed) startPolicyHost(t *testing.T, site httpbed.Site) *httpbed.Server {
	t.Helper()
	site.CertFile, site.KeyFile = b.webLeaf.CertFile, b.webLeaf.KeyFile
	return httpbed.Start(t, httpbed.Options{Host: addrPolicyHost, Netns: b.np.Server, Site: site})
}

// realTLSPolicy is the policy of the rows, with tls as the lines of its
// tls: block. Relay routes serve row 12; every other domain goes to mx.
// One message per connection: every row's delivery makes its own TLS
// handshake.
func realTLSPolicy(tls string) string {
	return `version: 1
hostname: mta.sender.test
tls:
  timeouts:
    handshake: 5s
    mta-sts: 5s
` + tls + `limits:
  messages-per-connection: 1
  timeouts:
    connect: 3s
    greeting: 5s
    ehlo: 5s
    mail-from: 5s
    rcpt-to: 5s
    data: 10s
routing:
  route:
    - if: rcpt_domain == "relay-ok.test"
      then: relay-ok
    - if: rcpt_domain == "relay-bad.test"
      then: relay-bad
    - else: mx
  routes:
    relay-ok:
      type: relay
      address: relay12.example.test
      port: 2525
    relay-bad:
      type: relay
      address: relay12-bad.example.test
      port: 2525
`
}

// engine returns an engine for realTLSPolicy(tls) that resolves through
// the bed's validating resolver (unless opts has one), dials from the
// client namespace and trusts the test CA. It is closed when t ends.
func (b *realTLSBed) engine(t *testing.T, tls string, opts engine.Options) *engine.Engine {
	t.Helper()
	policy := realTLSPolicy(tls)
	set, err := policies.Parse("policy.yaml", []byte(policy), policies.Options{Hostname: "mta.sender.test"})
	if err != nil {
		t.Fatalf("policy does not load:\n%s\n%v", policy, err)
	}
	if opts.Resolver == nil {
		opts.Resolver = b.res
	}
	opts.Dialer, opts.RootCAs = b.np.Client, b.ca.Pool
	e, err := engine.New(set, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// The tls: blocks of the rows.
const (
	tlsOptional    = "  dane: optional\n  mta-sts: optional\n"
	tlsDANERequire = "  dane: require\n  mta-sts: optional\n"
	tlsSTSRequire  = "  dane: optional\n  mta-sts: require\n"
)

// realTLSBody is the message; withHeader adds header fields.
func realTLSBody(rcpt string, withHeader ...string) string {
	h := "From: <sender@sender.test>\r\nTo: <" + rcpt + ">\r\nSubject: real TLS matrix\r\n"
	for _, f := range withHeader {
		h += f + "\r\n"
	}
	return h + "Message-ID: <realtls@sender.test>\r\n\r\nhello\r\n"
}

// send delivers one message to rcpt and returns its result.
func send(t *testing.T, e *engine.Engine, rcpt string, requireTLS bool, header ...string) engine.Result {
	t.Helper()
	msg := engine.Message{From: "sender@sender.test", To: []string{rcpt}, RequireTLS: requireTLS}
	return runDeliver(t, e, msg, realTLSBody(rcpt, header...))[0]
}

// decide evaluates a message to rcpt and returns its group.
func decide(t *testing.T, e *engine.Engine, rcpt string) *engine.Group {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := e.Evaluate(ctx, engine.Message{From: "sender@sender.test", To: []string{rcpt}})
	if err != nil {
		t.Fatal(err)
	}
	return groupOf(t, d, rcpt)
}

// hostOf returns the decision's host named name.
func hostOf(t *testing.T, g *engine.Group, name string) *engine.Host {
	t.Helper()
	for _, h := range g.Hosts {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("group %s has no host %s: %s", g.Domain, name, hostNames(g))
	return nil
}

func hostNames(g *engine.Group) string {
	var s []string
	for _, h := range g.Hosts {
		state := "tried"
		if h.Skipped != nil {
			state = "skipped: " + *h.Skipped
		}
		s = append(s, h.Name+" ("+state+")")
	}
	return strings.Join(s, "; ")
}

// sinks names the receivers, for messages.
func (b *realTLSBed) sinks() map[string]*smtpbed.AIOSink {
	return map[string]*smtpbed.AIOSink{"pkix": b.pkix, "self-signed": b.self, "plaintext": b.plain, "other": b.other, "relay": b.relay}
}

// got returns the messages sink received for rcpt.
func got(t *testing.T, sink *smtpbed.AIOSink, rcpt string) []smtpbed.AIOMessage {
	t.Helper()
	var out []smtpbed.AIOMessage
	for _, m := range sink.Messages(t) {
		if slices.Contains(m.Rcpts, rcpt) {
			out = append(out, m)
		}
	}
	return out
}

// wantReceived checks that sink, and no other receiver, got exactly one
// message for rcpt, over TLS, and returns it.
func (b *realTLSBed) wantReceived(t *testing.T, sink *smtpbed.AIOSink, rcpt string) smtpbed.AIOMessage {
	t.Helper()
	want := ""
	for name, s := range b.sinks() {
		if s == sink {
			want = name
		} else if m := got(t, s, rcpt); len(m) > 0 {
			t.Errorf("receiver %s got %d messages for %s, want none", name, len(m), rcpt)
		}
	}
	m := got(t, sink, rcpt)
	if len(m) != 1 {
		t.Fatalf("receiver %s got %d messages for %s, want 1", want, len(m), rcpt)
	}
	if !m[0].TLS {
		t.Errorf("receiver %s got the message for %s without TLS", want, rcpt)
	}
	return m[0]
}

// wantNothing checks that no receiver got a message for rcpt.
func (b *realTLSBed) wantNothing(t *testing.T, rcpt string) {
	t.Helper()
	for name, s := range b.sinks() {
		if m := got(t, s, rcpt); len(m) > 0 {
			t.Errorf("receiver %s got %d messages for %s (TLS %v), want none", name, len(m), rcpt, m[0].TLS)
		}
	}
}

// wantStatus checks a result's status and class.
func wantStatus(t *testing.T, r engine.Result, status transport.Status, class transport.Class) {
	t.Helper()
	if r.Status != status || r.Class != class {
		t.Errorf("%s: %s class %s, want %s class %s\n%s", r.Recipient, r.StatusText(), r.Class, status, class, formatResults([]engine.Result{r}))
	}
}

// wantDelivered checks a delivered result and how the certificate was
// verified.
func wantDelivered(t *testing.T, r engine.Result, verified transport.Verification) {
	t.Helper()
	wantStatus(t, r, transport.StatusDelivered, transport.ClassNone)
	if !r.TLS.Enabled() || r.TLS.Verified != verified {
		t.Errorf("%s: TLS %v, want TLS verified %s", r.Recipient, r.TLS, verified)
	}
}

// wantReport checks that the result carries a TLS-RPT record of the
// policy type and result type ("" is a success), and returns it.
func wantReport(t *testing.T, r engine.Result, policy tlsrpt.PolicyType, result string) tlsrpt.Result {
	t.Helper()
	for _, rec := range r.TLSRPT {
		if rec.PolicyType == policy && rec.ResultType == result {
			return rec
		}
	}
	t.Errorf("%s: no TLS-RPT record of policy type %s, result %q; got %+v", r.Recipient, policy, result, r.TLSRPT)
	return tlsrpt.Result{}
}

// wantNoConnection checks that r comes from no connection: the engine
// decided it before dialing.
func wantNoConnection(t *testing.T, r engine.Result) {
	t.Helper()
	if r.Address.IsValid() || len(r.Attempts) > 0 {
		t.Errorf("%s: connected (%v, %d attempts), want a decision made before connecting", r.Recipient, r.Address, len(r.Attempts))
	}
}

// selfSigned makes a self-signed server certificate for names, valid from
// an hour ago for a day, and writes it and its key as PEM files.
func selfSigned(t *testing.T, names ...string) (*smtpbed.Leaf, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leaf := &smtpbed.Leaf{CertFile: filepath.Join(dir, "self.crt"), KeyFile: filepath.Join(dir, "self.key")}
	for path, blk := range map[string]*pem.Block{leaf.CertFile: {Type: "CERTIFICATE", Bytes: der}, leaf.KeyFile: {Type: "PRIVATE KEY", Bytes: kder}} {
		// World-readable, as smtpbed's: a server may read it as another user.
		if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return leaf, cert
}

// spkiSum is the SHA-256 of a certificate's SubjectPublicKeyInfo: the
// data of a "x 1 1" TLSA record.
func spkiSum(t *testing.T, der []byte) []byte {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return s[:]
}

// TestRealTLS runs the matrix: every row a subtest, sharing one bed.
func TestRealTLS(t *testing.T) {
	b := newRealTLSBed(t)
	t.Run("DANE", b.daneRows)
	t.Run("MTA-STS", b.mtaSTSRows)
	t.Run("REQUIRETLS", b.requireTLSRows)
	t.Run("TLS-Required-No", b.tlsRequiredNoRows)
	t.Run("metrics", b.metricsRows)
}
