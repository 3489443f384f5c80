package engine

import (
	"strings"
	"testing"
)

// TLS-Required: No (RFC 8689 section 5) is read from the header section
// only: any case, folded, among other fields; never from the body, and
// not when its value is anything but No.
func TestTLSRequiredNoHeader(t *testing.T) {
	tests := []struct {
		name, msg string
		want      bool
	}{
		{"present", "From: a@example.org\r\nTLS-Required: No\r\nSubject: x\r\n\r\nbody\r\n", true},
		{"case and spaces", "from: a@example.org\r\ntls-required:   no  \r\n\r\nbody\r\n", true},
		{"folded", "Subject: x\r\nTLS-Required:\r\n No\r\n\r\nbody\r\n", true},
		{"last field, LF only", "Subject: x\nTLS-Required: No\n", true},
		{"absent", "From: a@example.org\r\nSubject: x\r\n\r\nTLS-Required: No\r\n", false},
		{"other value", "TLS-Required: Yes\r\n\r\n", false},
		{"a longer name", "X-TLS-Required: No\r\n\r\n", false},
		{"value continues", "TLS-Required: No thanks\r\n\r\n", false},
		{"in a folded other field", "Subject: x\r\n TLS-Required: No\r\n\r\n", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tlsRequiredNo(strings.NewReader(tt.msg)); got != tt.want {
				t.Errorf("tlsRequiredNo = %v, want %v", got, tt.want)
			}
		})
	}
	// A header line longer than the reader's buffer ends the scan.
	long := "Subject: " + strings.Repeat("x", 8192) + "\r\nTLS-Required: No\r\n\r\n"
	if tlsRequiredNo(strings.NewReader(long)) {
		t.Error("read past a line longer than the buffer")
	}
}
