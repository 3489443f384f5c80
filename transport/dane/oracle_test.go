package dane_test

// An independent oracle: OpenSSL's DANE implementation (the one Postfix
// uses) judges the same chains and records as our Verifier, both over a
// real STARTTLS session with a real receiver on loopback.

import (
	"context"
	"crypto/x509"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/postern-mta/postern/internal/testbed"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/dane"
)

// oracleRow is one case: the server sends chain, the TLSA RRset is recs,
// the reference identifier is ref.
type oracleRow struct {
	name  string
	chain []*cert
	recs  []dane.Record
	ref   string // default mx.example.test
	pkix  bool   // the chain is PKIX-valid for the client too (its CA trusted)
	pass  bool   // the RFC 7672 verdict, ours
	typ   string // our RFC 8460 result type when it fails
	// diff, when set, explains why OpenSSL deliberately gives the
	// opposite verdict.
	diff string
}

func TestOracleOpenSSL(t *testing.T) {
	openssl := testbed.Require(t, "openssl")
	p := newPKI(t)
	const fail = "validation-failure"
	rows := []oracleRow{
		{name: "3 1 1, self-signed", chain: []*cert{p.self}, recs: []dane.Record{rec(3, 1, 1, p.self)}, pass: true},
		{name: "3 0 1, CA-issued", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 0, 1, p.leaf)}, pass: true},
		{name: "3 1 2", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 1, 2, p.leaf)}, pass: true},
		{name: "3 0 0", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 0, 0, p.leaf)}, pass: true},
		{name: "3 1 1, PKIX-valid but another key", chain: []*cert{p.leaf, p.root}, pkix: true, recs: []dane.Record{rec(3, 1, 1, p.self)}, typ: fail},
		{name: "3 1 1, PKIX-valid and matching", chain: []*cert{p.leaf, p.root}, pkix: true, recs: []dane.Record{rec(3, 1, 1, p.leaf)}, pass: true},
		{name: "3 1 1, expired and wrong name", chain: []*cert{p.expired, p.root}, ref: "other.example", recs: []dane.Record{rec(3, 1, 1, p.expired)}, pass: true},
		{name: "3 1 1 of the issuer is not DANE-EE", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 1, 1, p.root)}, typ: fail},
		{name: "2 0 1, anchor sent", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, pass: true},
		{name: "2 1 1, intermediate anchor", chain: []*cert{p.interLeaf, p.inter}, recs: []dane.Record{rec(2, 1, 1, p.inter)}, pass: true},
		{name: "2 1 2, root through an intermediate", chain: []*cert{p.interLeaf, p.inter, p.root}, recs: []dane.Record{rec(2, 1, 2, p.root)}, pass: true},
		{name: "2 0 1, wrong name", chain: []*cert{p.wrongName, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, typ: "certificate-host-mismatch"},
		{name: "2 0 1, wrong reference identifier", chain: []*cert{p.leaf, p.root}, ref: "mx2.example.test", recs: []dane.Record{rec(2, 0, 1, p.root)}, typ: "certificate-host-mismatch"},
		{name: "2 0 1, wildcard", chain: []*cert{p.wildcard, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, pass: true},
		{name: "2 0 1, common name without DNS name", chain: []*cert{p.cnOnly, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, pass: true},
		{name: "2 0 1, common name beside another DNS name", chain: []*cert{p.sanOverCN, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, typ: "certificate-host-mismatch"},
		{name: "2 0 1, anchor not sent", chain: []*cert{p.interLeaf, p.inter}, recs: []dane.Record{rec(2, 0, 1, p.root)}, typ: fail},
		{name: "2 0 1, expired server certificate", chain: []*cert{p.expired, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, typ: "certificate-expired"},
		{name: "2 0 1, expired intermediate", chain: []*cert{p.expiredInterLeaf, p.expiredInter, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, typ: "certificate-expired"},
		{name: "2 0 1, expired anchor", chain: []*cert{p.expiredRootLeaf, p.expiredRoot}, recs: []dane.Record{rec(2, 0, 1, p.expiredRoot)}, typ: "certificate-expired"},
		{name: "2 0 1, intermediate not a CA", chain: []*cert{p.notCALeaf, p.notCA, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, typ: fail},
		{name: "2 0 0, anchor not sent", chain: []*cert{p.interLeaf, p.inter}, recs: []dane.Record{rec(2, 0, 0, p.root)}, pass: true},
		{name: "2 1 0, anchor not sent", chain: []*cert{p.interLeaf, p.inter}, recs: []dane.Record{rec(2, 1, 0, p.root)}, pass: true},
		{name: "2 1 0, server certificate signed by the key", chain: []*cert{p.leaf}, recs: []dane.Record{rec(2, 1, 0, p.root)}, pass: true},
		{name: "2 0 1 of a self-signed server certificate", chain: []*cert{p.self}, recs: []dane.Record{rec(2, 0, 1, p.self)}, typ: fail},
		{name: "2 0 0 of a self-signed server certificate", chain: []*cert{p.self}, recs: []dane.Record{rec(2, 0, 0, p.self)}, typ: fail},
		// The key signed the top certificate sent, here the server's own
		// (RFC 7671 section 5.2.3); the name is still checked.
		{name: "2 1 0 of a self-signed server certificate", chain: []*cert{p.self}, recs: []dane.Record{rec(2, 1, 0, p.self)}, pass: true},
		{name: "2 1 0 of a self-signed server certificate, wrong name", chain: []*cert{p.self}, ref: "other.example", recs: []dane.Record{rec(2, 1, 0, p.self)}, typ: "certificate-host-mismatch"},
		{name: "two records, the DANE-EE one matches", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(2, 0, 1, p.other), rec(3, 1, 1, p.leaf)}, pass: true},
		{name: "two records, the DANE-TA one matches", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 1, 1, p.self), rec(2, 1, 1, p.root)}, pass: true},
		{name: "two records, none matches", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 1, 1, p.self), rec(2, 1, 1, p.other)}, typ: fail},
		// Known differences.
		{name: "2 0 1, server certificate for client auth only", chain: []*cert{p.clientOnly, p.root}, recs: []dane.Record{rec(2, 0, 1, p.root)}, pass: true,
			diff: "OpenSSL checks the TLS server purpose of a DANE-TA chain and refuses a server certificate whose extended key usage " +
				"lacks serverAuth; RFC 7672 asks for no key usage, and we accept any (SMTP servers often have odd certificates)"},
		// Digest algorithm agility (RFC 7671 section 9): with a SHA-512
		// record of the same usage and selector, the SHA-256 one is
		// ignored, by both.
		{name: "3 1 1 matches, 3 1 2 does not", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 1, 1, p.leaf), rec(3, 1, 2, p.self)}, typ: fail},
		{name: "3 1 1 matches, 3 0 2 does not (another selector)", chain: []*cert{p.leaf, p.root}, recs: []dane.Record{rec(3, 1, 1, p.leaf), rec(3, 0, 2, p.self)}, pass: true},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel() // each row has its own receiver
			if row.ref == "" {
				row.ref = mxName
			}
			dir := t.TempDir()
			certFile, keyFile := writeChain(t, dir, "server", row.chain...)
			caFile, _ := writeChain(t, dir, "ca", p.root)
			sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{Leaf: &smtpbed.Leaf{CertFile: certFile, KeyFile: keyFile}})

			theirs, out := opensslVerdict(t, openssl, sink.Addr.String(), row, caFile)
			ours := ourVerdict(t, sink.Addr, row, p)
			if ours != row.pass {
				t.Errorf("our verdict %v, want %v", ours, row.pass)
			}
			wantTheirs := row.pass != (row.diff != "")
			if theirs != wantTheirs {
				t.Errorf("openssl verdict %v, want %v (known difference: %q)\n%s", theirs, wantTheirs, row.diff, out)
			}
		})
	}
}

// opensslVerdict runs openssl s_client against addr with the row's
// records, and reports whether it verified the server.
func opensslVerdict(t *testing.T, openssl, addr string, row oracleRow, caFile string) (bool, string) {
	t.Helper()
	args := []string{"s_client", "-connect", addr, "-starttls", "smtp", "-dane_tlsa_domain", row.ref,
		// The SMTP profile of DANE-EE: no name checks (RFC 7672 section
		// 3.1.1); Postfix sets the same flag.
		"-dane_ee_no_namechecks",
		"-verify_return_error", "-brief"}
	for _, r := range row.recs {
		args = append(args, "-dane_tlsa_rrdata", r.String())
	}
	if row.pkix {
		args = append(args, "-CAfile", caFile, "-no-CApath", "-no-CAstore")
	} else {
		args = append(args, "-no-CAfile", "-no-CApath", "-no-CAstore")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, args...) // stdin is /dev/null: s_client ends after the handshake
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("openssl s_client did not finish: %v\n%s", ctx.Err(), out)
	}
	ok := err == nil && strings.Contains(string(out), "Verification: OK")
	if err == nil && !ok {
		t.Fatalf("openssl s_client succeeded without saying \"Verification: OK\":\n%s", out)
	}
	return ok, string(out)
}

// ourVerdict delivers a message to ap through the transport with our
// Verifier set, and reports whether it went through. A failure must be a
// DANE failure of the row's type.
func ourVerdict(t *testing.T, ap netip.AddrPort, row oracleRow, p *pkiSet) bool {
	t.Helper()
	v, err := dane.NewVerifier(row.recs, []string{row.ref}, nil)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	c := &transport.Client{TLSSessions: -1}
	if row.pkix {
		c.RootCAs = x509.NewCertPool()
		c.RootCAs.AddCert(p.root.Certificate)
	}
	defer c.Close()
	timeouts := transport.Timeouts{Connect: 10 * time.Second, Greeting: 10 * time.Second, EHLO: 10 * time.Second,
		MailFrom: 10 * time.Second, RcptTo: 10 * time.Second, Data: 10 * time.Second}
	plan := &transport.Plan{Hosts: []transport.Host{{
		Name:             row.ref,
		Targets:          []transport.Target{{Addr: ap.Addr(), EHLOName: "client.example.org", Timeouts: timeouts}},
		Port:             int(ap.Port()),
		StartTLS:         transport.StartTLSRequire,
		Verifier:         v,
		HandshakeTimeout: 10 * time.Second,
	}}}
	body := "From: a@example.org\r\nTo: b@example.test\r\nSubject: dane\r\n\r\nhello\r\n"
	msg := &transport.Message{From: "a@example.org", Recipients: []transport.Recipient{{Address: "b@example.test"}},
		Body: strings.NewReader(body), Size: int64(len(body))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := c.Deliver(ctx, plan, msg)
	if err := transport.CheckResults(msg.Recipients, res); err != nil {
		t.Fatalf("CheckResults: %v", err)
	}
	r := res[0]
	if r.Status == transport.StatusDelivered {
		if r.TLS.Verified != transport.VerifiedDANE {
			t.Errorf("delivered with verification %q, want %q", r.TLS.Verified, transport.VerifiedDANE)
		}
		return true
	}
	if r.Class != transport.ClassDANE || r.Err == nil || r.Err.TLSResult != row.typ {
		t.Errorf("failure class %q, TLS result %q, want %q, %q: %s", r.Class, tlsResult(r), transport.ClassDANE, row.typ, r.Text)
	}
	return false
}

func tlsResult(r transport.Result) string {
	if r.Err == nil {
		return ""
	}
	return r.Err.TLSResult
}
