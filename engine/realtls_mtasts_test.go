//go:build linux

package engine_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/httpbed"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// mtaSTSRows are the MTA-STS rows (RFC 8461) of the matrix: tls.mta-sts
// optional unless a row says otherwise; the policy hosts are real HTTPS
// servers with certificates from the test CA.
func (b *realTLSBed) mtaSTSRows(t *testing.T) {
	e := b.engine(t, tlsOptional, engine.Options{})
	requireE := b.engine(t, tlsSTSRequire, engine.Options{})

	t.Run("14 enforce, MX listed, PKIX-valid: delivered, verified mta-sts", func(t *testing.T) {
		rcpt := "r14@s14.example.test"
		g := decide(t, e, rcpt)
		if p := g.MTASTS.Policy; p == nil || p.Mode != "enforce" || p.ID != "1" {
			t.Errorf("decision: MTA-STS %+v, want the enforce policy of id 1", g.MTASTS)
		}
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedMTASTS)
		b.wantReceived(t, b.pkix, rcpt)
		rec := wantReport(t, r, tlsrpt.STS, "")
		if rec.MXHost != "mx14.example.test" {
			t.Errorf("TLS-RPT record mx-host %q, want mx14.example.test", rec.MXHost)
		}
	})

	t.Run("15 enforce, MX not listed: the host is skipped for good", func(t *testing.T) {
		// s15: the unlisted MX is tried first and would accept (a
		// PKIX-valid certificate); the listed one has no STARTTLS.
		rcpt := "r15@s15.example.test"
		h := hostOf(t, decide(t, e, rcpt), "mx15-unlisted.example.test")
		if h.Skipped == nil || h.SkipTemporary {
			t.Errorf("decision: unlisted host skipped %v (temporary %v), want skipped permanently", h.Skipped, h.SkipTemporary)
		}
		r := send(t, e, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassTLS)
		if r.Host != "mx15.example.test" {
			t.Errorf("last host tried %q, want mx15.example.test", r.Host)
		}
		for _, a := range r.Attempts {
			if a.Address.Addr().String() == addrPKIX {
				t.Errorf("the unlisted host's address %v was connected to", a.Address)
			}
		}
		b.wantNothing(t, rcpt)
		wantReport(t, r, tlsrpt.STS, tlsrpt.ValidationFailure)

		// s15b: the unlisted MX is the only one: nothing can be tried.
		only := "r15b@s15b.example.test"
		r = send(t, e, only, false)
		wantStatus(t, r, transport.StatusPermanent, transport.ClassMTASTS)
		wantNoConnection(t, r)
		b.wantNothing(t, only)
	})

	t.Run("16 enforce overrides allow-invalid-certs: unknown CA not delivered", func(t *testing.T) {
		ie := b.engine(t, tlsOptional+"  allow-invalid-certs: true\n", engine.Options{})
		rcpt := "r16@s16.example.test"
		r := send(t, ie, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassMTASTS)
		b.wantNothing(t, rcpt)
		wantReport(t, r, tlsrpt.STS, tlsrpt.CertificateNotTrusted)
	})

	t.Run("17 enforce, listed MX without STARTTLS: deferred, nothing sent", func(t *testing.T) {
		rcpt := "r17@s17.example.test"
		r := send(t, e, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassTLS)
		b.wantNothing(t, rcpt)
		wantReport(t, r, tlsrpt.STS, tlsrpt.StartTLSNotSupported)
	})

	t.Run("18 testing, bad certificate: delivered, reported", func(t *testing.T) {
		rcpt := "r18@s18.example.test"
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedNone)
		b.wantReceived(t, b.self, rcpt)
		wantReport(t, r, tlsrpt.STS, tlsrpt.CertificateNotTrusted)
	})

	t.Run("19 mta-sts require, policy URL redirects: deferred, fetch error reported", func(t *testing.T) {
		rcpt := "r19@s19.example.test"
		r := send(t, requireE, rcpt, false)
		wantStatus(t, r, transport.StatusTemporary, transport.ClassMTASTS)
		wantNoConnection(t, r)
		b.wantNothing(t, rcpt)
		wantReport(t, r, tlsrpt.STS, tlsrpt.STSPolicyFetchError)
		// The redirect's target serves a valid policy: it was not followed.
		if g := decide(t, requireE, rcpt); g.MTASTS.Policy != nil || !strings.Contains(g.MTASTS.Error, "redirects are not followed") {
			t.Errorf("decision: MTA-STS %+v, want no policy and the refused redirect", g.MTASTS)
		}
	})

	t.Run("20 oversized policy, wrong Content-Type: no policy", func(t *testing.T) {
		for _, c := range []struct{ domain, why string }{{"s20a", "over the limit"}, {"s20b", "Content-Type"}} {
			// Both policies list no host of the bed: applied, they would
			// stop delivery; ignored, mx20 takes the message.
			rcpt := "r20@" + c.domain + ".example.test"
			g := decide(t, e, rcpt)
			if g.MTASTS.Policy != nil || !strings.Contains(g.MTASTS.Error, c.why) {
				t.Errorf("%s: decision MTA-STS %+v, want no policy and an error saying %q", c.domain, g.MTASTS, c.why)
			}
			r := send(t, e, rcpt, false)
			wantDelivered(t, r, transport.VerifiedPKIX)
			b.wantReceived(t, b.pkix, rcpt)

			required := "r20r@" + c.domain + ".example.test"
			r = send(t, requireE, required, false)
			wantStatus(t, r, transport.StatusTemporary, transport.ClassMTASTS)
			wantNoConnection(t, r)
			b.wantNothing(t, required)
		}
	})

	t.Run("21 the policy host fails: the cached policy still applies", func(t *testing.T) {
		var offset atomic.Int64 // the engine's clock runs ahead by this much
		clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		ce := b.engine(t, tlsOptional, engine.Options{Clock: clock})
		site := httpbed.Site{Names: []string{"mta-sts.s21.example.test"},
			Files: map[string][]byte{policyPath: stsPolicy("enforce", "mx21.example.test")}}
		t.Run("policy host up", func(t *testing.T) {
			b.startPolicyHost(t, site) // stopped when this subtest ends
			if p := decide(t, ce, "r21@s21.example.test").MTASTS.Policy; p == nil || p.Source != "network" || p.Mode != "enforce" {
				t.Fatalf("decision: policy %+v, want the enforce policy fetched from the network", p)
			}
		})
		// The policy host is down, the TXT id unchanged: the cached copy
		// applies, without a fetch while it is young...
		rcpt := "r21@s21.example.test"
		g := decide(t, ce, rcpt)
		if p := g.MTASTS.Policy; p == nil || p.Source != "cache" || p.Mode != "enforce" || g.MTASTS.Error != "" {
			t.Errorf("decision: MTA-STS %+v (policy %+v), want the enforce policy from the cache", g.MTASTS, p)
		}
		wantDelivered(t, send(t, ce, rcpt, false), transport.VerifiedMTASTS)
		b.wantReceived(t, b.pkix, rcpt)

		// ... and when, in the last quarter of its max_age, the refresh
		// fails.
		offset.Store(int64(stsMaxAge * 5 / 6))
		late := "r21late@s21.example.test"
		g = decide(t, ce, late)
		if p := g.MTASTS.Policy; p == nil || p.Source != "cache" || p.Mode != "enforce" || !strings.Contains(g.MTASTS.Error, "could not be refreshed") {
			t.Errorf("decision: MTA-STS %+v (policy %+v), want the enforce policy from the cache and the failed refresh", g.MTASTS, p)
		}
		wantDelivered(t, send(t, ce, late, false), transport.VerifiedMTASTS)
		b.wantReceived(t, b.pkix, late)
	})

	t.Run("22 the cache survives a restart", func(t *testing.T) {
		dir := t.TempDir()
		site := httpbed.Site{Names: []string{"mta-sts.s22.example.test"},
			Files: map[string][]byte{policyPath: stsPolicy("enforce", "mx22.example.test")}}
		t.Run("first engine fetches", func(t *testing.T) {
			b.startPolicyHost(t, site) // stopped when this subtest ends
			first := b.engine(t, tlsOptional, engine.Options{MTASTSCache: dir})
			if p := decide(t, first, "r22@s22.example.test").MTASTS.Policy; p == nil || p.Source != "network" {
				t.Fatalf("decision: policy %+v, want the policy fetched from the network", p)
			}
		})
		// A new engine, the policy host gone: the policy comes from the
		// directory, and is enforced (mx22-unlisted, tried first
		// otherwise and able to take the message, is skipped).
		second := b.engine(t, tlsOptional, engine.Options{MTASTSCache: dir})
		rcpt := "r22@s22.example.test"
		g := decide(t, second, rcpt)
		if p := g.MTASTS.Policy; p == nil || p.Source != "cache" || p.Mode != "enforce" {
			t.Errorf("decision: MTA-STS %+v (policy %+v), want the enforce policy from the cache", g.MTASTS, p)
		}
		if h := hostOf(t, g, "mx22-unlisted.example.test"); h.Skipped == nil {
			t.Errorf("the unlisted host is not skipped: %s", hostNames(g))
		}
		r := send(t, second, rcpt, false)
		wantDelivered(t, r, transport.VerifiedMTASTS)
		if r.Host != "mx22.example.test" {
			t.Errorf("delivered by %s, want mx22.example.test", r.Host)
		}
		b.wantReceived(t, b.pkix, rcpt)
	})

	t.Run("23 DANE over an enforce policy that does not list the MX: delivered via dane", func(t *testing.T) {
		rcpt := "r23@s23.example.test"
		g := decide(t, e, rcpt)
		if g.MTASTS.Policy == nil || g.MTASTS.Policy.Mode != "enforce" {
			t.Errorf("decision: MTA-STS %+v, want the enforce policy", g.MTASTS)
		}
		r := send(t, e, rcpt, false)
		wantDelivered(t, r, transport.VerifiedDANE)
		b.wantReceived(t, b.pkix, rcpt)
		wantReport(t, r, tlsrpt.TLSA, "")
	})
}
