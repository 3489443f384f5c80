package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/postern-mta/postern/engine"
)

func TestMessageSetVar(t *testing.T) {
	var m engine.Message
	for name, value := range map[string]string{"retry_num": "3", "last_error": "tls", "queue_name": "bulk",
		"size": "1200", "received_via_port": "587", "authenticated_as": "alice"} {
		if err := m.SetVar(name, value); err != nil {
			t.Fatalf("SetVar(%s, %s): %v", name, value, err)
		}
	}
	if m.RetryNum != 3 || m.LastError != "tls" || m.QueueName != "bulk" || m.Size != 1200 ||
		m.ReceivedViaPort != 587 || m.AuthenticatedAs != "alice" {
		t.Errorf("SetVar set %+v", m)
	}
	for _, c := range []struct{ name, value, why string }{
		{"retry_num", "three", `"three" is not an integer`},
		{"last_error", "timeout", `"timeout" is not one of none, dns`},
		{"mx", "a.example", "a host-phase variable"},
		{"sender", "a@b", "comes from the envelope sender"},
		{"rcpt_domain", "b", "comes from the envelope recipients"},
		{"meta", "x", "set its keys as meta"},
		{"retry_count", "1", "unknown variable (recipient-phase variables: "},
	} {
		err := m.SetVar(c.name, c.value)
		var ve *engine.VarError
		if !errors.As(err, &ve) || ve.Name != c.name || !strings.Contains(ve.Reason, c.why) {
			t.Errorf("SetVar(%s, %s) = %v, want a VarError saying %q", c.name, c.value, err, c.why)
		}
	}
	if m.RetryNum != 3 || m.LastError != "tls" {
		t.Errorf("a refused value changed the message: %+v", m)
	}
}
