package engine_test

import (
	"slices"
	"testing"

	"github.com/postern-mta/postern/engine"
	"github.com/postern-mta/postern/internal/testbed/smtpbed"
	"github.com/postern-mta/postern/transport"
)

// TestSMTPUTF8Passed: a message received with SMTPUTF8 (its header may
// hold UTF-8) goes out with SMTPUTF8 even when its addresses are ASCII;
// without the flag, an ASCII envelope goes out without it. The receiver
// is a real aiosmtpd that offers SMTPUTF8 and records MAIL's parameters.
func TestSMTPUTF8Passed(t *testing.T) {
	sink := smtpbed.StartAIOSink(t, smtpbed.AIOOptions{})
	e := newDeliverEngine(t, oneRelayPolicy(sink.Addr, "tls:\n  starttls: disable\n"), engine.Options{})
	for i, flag := range []bool{true, false} {
		res := runDeliver(t, e, engine.Message{From: "s@sender.test", To: []string{"a@dest.test"}, SMTPUTF8: flag}, deliverBody)
		if res[0].Status != transport.StatusDelivered {
			t.Fatalf("SMTPUTF8 %v: %s", flag, formatResults(res))
		}
		got := sink.WaitMessages(t, i+1)[i]
		if has := slices.Contains(got.MailOptions, "SMTPUTF8"); has != flag {
			t.Errorf("Message.SMTPUTF8 %v: MAIL FROM options %v", flag, got.MailOptions)
		}
	}
}
