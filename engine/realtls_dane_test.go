//go:build linux

package engine_test

import (
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/dns"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// daneRows are the DANE rows (RFC 7672) of the matrix: tls.dane optional
// unless a row says otherwise, MX hosts in the signed zone.
func (b *realTLSBed) daneRows(t *testing.T) {
	e := b.engine(t, tlsOptional, engine.Options{})
	requireE := b.engine(t, tlsDANERequire, engine.Options{})

	t.Run("01 DANE-EE matches a self-signed certificate: delivered, verified dane", func(t *testing.T) {
		rcpt := "r01@d01.example.test"
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedDANE)
		b.wantReceived(t, b.self, rcpt)
		wantReport(t, r, tlsrpt.TLSA, "")
	})

	t.Run("02 DANE-EE mismatch at a PKIX-valid server: deferred, class dane, nothing sent", func(t *testing.T) {
		rcpt := "r02@d02.example.test"
		r := send(t, e, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassDANE)
		b.wantNothing(t, rcpt)
		rec := wantReport(t, r, tlsrpt.TLSA, tlsrpt.ValidationFailure)
		if rec.MXHost != "mx02.example.test" || len(rec.PolicyStrings) != 1 {
			t.Errorf("TLS-RPT record: mx-host %q, policy strings %q; want mx02.example.test and its one TLSA record", rec.MXHost, rec.PolicyStrings)
		}
	})

	t.Run("03 DANE-TA of the CA, leaf for the MX name: delivered, verified dane", func(t *testing.T) {
		rcpt := "r03@d03.example.test"
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedDANE)
		b.wantReceived(t, b.pkix, rcpt)
	})

	t.Run("04 DANE-TA of the CA, leaf for another name: deferred, certificate-host-mismatch", func(t *testing.T) {
		rcpt := "r04@d04.example.test"
		r := send(t, e, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassDANE)
		b.wantNothing(t, rcpt)
		wantReport(t, r, tlsrpt.TLSA, tlsrpt.CertificateHostMismatch)
	})

	t.Run("05 only unusable TLSA records: TLS required without authentication", func(t *testing.T) {
		rcpt := "r05@d05.example.test"
		h := hostOf(t, decide(t, e, rcpt), "mx05.example.test")
		if !h.TLS.Required || h.TLS.Verify != "none" || h.TLS.DANEState.Active || len(h.TLS.DANEState.Records) != 2 {
			t.Errorf("decision: required %v verify %q, DANE %+v; want TLS required, verify none, two unusable records",
				h.TLS.Required, h.TLS.Verify, h.TLS.DANEState)
		}
		for _, rec := range h.TLS.DANEState.Records {
			if rec.Usable {
				t.Errorf("TLSA record %s marked usable", rec.Record)
			}
		}
		// The certificate is not valid for mx05: accepted unauthenticated.
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedNone)
		b.wantReceived(t, b.pkix, rcpt)

		plain := "r05p@d05p.example.test"
		r = send(t, e, plain, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassTLS)
		b.wantNothing(t, plain)
	})

	t.Run("06 DANE active, no STARTTLS: deferred, nothing sent in plaintext", func(t *testing.T) {
		rcpt := "r06@d06.example.test"
		r := send(t, e, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassTLS)
		b.wantNothing(t, rcpt)
		wantReport(t, r, tlsrpt.TLSA, tlsrpt.StartTLSNotSupported)
	})

	t.Run("07 TLSA in an insecure zone", func(t *testing.T) {
		rcpt := "r07@d07.insecure.test"
		h := hostOf(t, decide(t, e, rcpt), "mx07.insecure.test")
		if h.TLS.DANEState.Active || h.TLS.Verify != "opportunistic" {
			t.Errorf("decision: DANE %+v, verify %q; want no DANE, opportunistic TLS", h.TLS.DANEState, h.TLS.Verify)
		}
		// The TLSA record matches the certificate: verified dane would
		// mean the insecure answer was used.
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedNone)
		b.wantReceived(t, b.pkix, rcpt)

		required := "r07r@d07.insecure.test"
		r = send(t, requireE, required, false)
		wantStatus(t, r, transport.StatusPermanent, transport.ClassDANE)
		wantNoConnection(t, r)
		b.wantNothing(t, required)
		wantReport(t, r, tlsrpt.TLSA, tlsrpt.DANERequired)
	})

	t.Run("08 MX in a bogus zone: deferred, class dns, even with optional", func(t *testing.T) {
		rcpt := "r08@d08.bogus.test"
		r := send(t, e, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassDNS)
		wantNoConnection(t, r)
		b.wantNothing(t, rcpt)
	})

	t.Run("09 TLSA lookup fails validation: host skipped, deferred, no downgrade", func(t *testing.T) {
		rcpt := "r09@d09.example.test"
		g := decide(t, e, rcpt)
		h := hostOf(t, g, "mx09.example.test")
		if !h.Secure || len(h.Addresses) != 0 || h.Skipped == nil || !h.SkipTemporary || !strings.Contains(*h.Skipped, "TLSA lookup") {
			t.Errorf("decision: MX secure %v, addresses %v, skipped %v (temporary %v); want a secure MX skipped temporarily for its TLSA lookup",
				h.Secure, h.Addresses, hostNames(g), h.SkipTemporary)
		}
		r := send(t, e, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassDANE)
		wantNoConnection(t, r)
		b.wantNothing(t, rcpt)
		wantReport(t, r, tlsrpt.TLSA, tlsrpt.DNSSECInvalid)
	})

	t.Run("10 CNAME'd MX: the expanded name's TLSA records are used", func(t *testing.T) {
		rcpt := "r10@d10.example.test"
		h := hostOf(t, decide(t, e, rcpt), "mx10.example.test")
		if st := h.TLS.DANEState; !st.Active || st.Base != "mx10-real.example.test" {
			t.Errorf("decision: DANE %+v; want active with tlsa_base mx10-real.example.test", st)
		}
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedDANE)
		b.wantReceived(t, b.pkix, rcpt)
	})

	t.Run("11 implicit MX with TLSA at the domain: delivered, verified dane", func(t *testing.T) {
		rcpt := "r11@d11.example.test"
		h := hostOf(t, decide(t, e, rcpt), "d11.example.test")
		if !h.TLS.DANEState.Active || h.TLS.Verify != "dane" {
			t.Errorf("decision: DANE %+v, verify %q; want DANE active", h.TLS.DANEState, h.TLS.Verify)
		}
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedDANE)
		b.wantReceived(t, b.pkix, rcpt)
	})

	t.Run("12 relay on port 2525 with TLSA at _2525._tcp", func(t *testing.T) {
		rcpt := "r12@relay-ok.test"
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedDANE)
		if r.Route != "relay-ok" || r.Address.Port() != relayPort {
			t.Errorf("route %s address %v, want relay-ok on port %d", r.Route, r.Address, relayPort)
		}
		b.wantReceived(t, b.relay, rcpt)

		bad := "r12b@relay-bad.test"
		r = send(t, e, bad, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassDANE)
		b.wantNothing(t, bad)
	})

	t.Run("13 dane require with a resolver that does not validate: deferred, warned", func(t *testing.T) {
		res, err := dns.New(dns.Config{Kind: dns.KindCustom, Servers: []string{"udp://" + b.dns.Unbound},
			DNSSEC: false, EDNS: true, TCPOnError: true})
		if err != nil {
			t.Fatal(err)
		}
		ne := b.engine(t, tlsDANERequire, engine.Options{Resolver: res})
		warned := false
		for _, w := range ne.Warnings() {
			warned = warned || w.Setting == "tls.dane"
		}
		if !warned {
			t.Errorf("Engine.Warnings() has no tls.dane warning: %v", ne.Warnings())
		}
		// d01's TLSA record matches, but nothing proves it without
		// DNSSEC: never delivered, never bounced.
		rcpt := "r13@d01.example.test"
		r := send(t, ne, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassDANE)
		wantNoConnection(t, r)
		b.wantNothing(t, rcpt)
	})
}
