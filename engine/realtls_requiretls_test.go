//go:build linux

package engine_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/transport"
)

// requireTLSRows are the REQUIRETLS rows (RFC 8689 section 4) of the
// matrix: messages with engine.Message.RequireTLS.
func (b *realTLSBed) requireTLSRows(t *testing.T) {
	e := b.engine(t, tlsOptional, engine.Options{})

	t.Run("24 secure MX offering REQUIRETLS, PKIX-valid: delivered with REQUIRETLS", func(t *testing.T) {
		rcpt := "r24@rt24.example.test"
		r := send(t, e, rcpt, true)
		wantDelivered(t, r, transport.VerifiedPKIX)
		m := b.wantReceived(t, b.pkix, rcpt)
		if !slices.Contains(m.MailOptions, "REQUIRETLS") {
			t.Errorf("MAIL FROM options %q, want REQUIRETLS", m.MailOptions)
		}
	})

	t.Run("25 secure MX, DANE-valid, REQUIRETLS not offered: bounced 5.7.30, nothing sent", func(t *testing.T) {
		rcpt := "r25@rt25.example.test"
		r := send(t, e, rcpt, true)
		wantStatus(t, r, transport.StatusPermanent, transport.ClassTLS)
		// The refusal comes after a DANE-verified handshake: the session
		// that ended with it is the last attempt, and the result says so.
		if n := len(r.Attempts); r.Enhanced.String() != "5.7.30" || n == 0 || r.Attempts[n-1].TLS.Verified != transport.VerifiedDANE ||
			r.TLS.Verified != transport.VerifiedDANE {
			t.Errorf("%s %s with TLS %+v after %+v, want 5.7.30 after a DANE-verified handshake", r.Enhanced, r.Text, r.TLS, r.Attempts)
		}
		b.wantNothing(t, rcpt)
	})

	t.Run("26 insecure MX without MTA-STS: bounced before connecting", func(t *testing.T) {
		rcpt := "r26@rt26.insecure.test"
		r := send(t, e, rcpt, true)
		if r.Status != transport.StatusPermanent || !strings.Contains(r.Text, "REQUIRETLS") {
			t.Errorf("%s %q, want a permanent failure about REQUIRETLS", r.StatusText(), r.Text)
		}
		wantNoConnection(t, r)
		b.wantNothing(t, rcpt)
	})
}

// tlsRequiredNoRows is the TLS-Required: No row (RFC 8689 section 5):
// the recipient domain's TLS policies do not stop delivery.
func (b *realTLSBed) tlsRequiredNoRows(t *testing.T) {
	e := b.engine(t, tlsOptional, engine.Options{})

	t.Run("27 TLS-Required: No beats an enforce policy and failing DANE", func(t *testing.T) {
		for _, c := range []struct{ rcpt, why string }{
			{"r27@s27.example.test", "an enforce policy that does not list the MX"},
			{"r27@d27.example.test", "TLSA records that do not match"},
		} {
			// Control: without the header, the policy stops delivery.
			ctl := strings.Replace(c.rcpt, "r27@", "r27c@", 1)
			if r := send(t, e, ctl, false); r.Status == transport.StatusDelivered {
				t.Errorf("%s (%s) delivered without TLS-Required: No", ctl, c.why)
			}
			b.wantNothing(t, ctl)

			r := send(t, e, c.rcpt, false, "TLS-Required: No")
			wantStatus(t, r, transport.StatusDelivered, transport.ClassNone)
			if !r.TLS.Enabled() || r.TLS.Verified == transport.VerifiedDANE || r.TLS.Verified == transport.VerifiedMTASTS {
				t.Errorf("%s (%s): TLS %v, want TLS still used, no policy applied", c.rcpt, c.why, r.TLS)
			}
			b.wantReceived(t, b.pkix, c.rcpt)
		}
	})
}
