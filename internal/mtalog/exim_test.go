package mtalog

import (
	"slices"
	"testing"
)

// TestEximRecipient takes the original address of every delivery-line
// form deliver.c writes (string_log_address), and the address itself
// when there is no other.
func TestEximRecipient(t *testing.T) {
	for _, tc := range []struct{ rest, want string }{
		{"bob@example.com R=dnslookup T=remote_smtp H=mx.example.com [198.51.100.5]", "bob@example.com"},
		{"bob@example.com F=<a@example.org> R=dnslookup T=remote_smtp", "bob@example.com"},
		{"bob@example.com Q=slow R=dnslookup T=remote_smtp", "bob@example.com"},
		{"bob@example.com P=<a@example.org> R=dnslookup T=remote_smtp", "bob@example.com"},
		{"marv <marv@hitch.example> R=localuser T=local_delivery", "marv@hitch.example"},
		{"save mbox (jay@hitch.example) <list@hitch.example> R=aliases T=address_file", "list@hitch.example"},
		{"final@remote.example (mid@hitch.example, mid2@hitch.example) <list@hitch.example> R=dnslookup T=remote_smtp", "list@hitch.example"}, // +all_parents
		{"discarded <low.club@bridge.example> R=userforward", "low.club@bridge.example"},
		{"jim@trek99.example <jim@trek99.example>: unknown mail domain", "jim@trek99.example"},
		{"quinn@example.net : Unrouteable address", "quinn@example.net"},
		{"pat@nowhere.example: Unrouteable address", "pat@nowhere.example"},
		{"yuri@example.net routing defer (-51): retry time not reached", "yuri@example.net"},
		{"marvin@endrest.example R=dnslookup T=smtp defer (146): Connection refused", "marvin@endrest.example"},
		{"bob@example.com", "bob@example.com"},
		{"|/usr/bin/prog -x R=pipe T=address_pipe", ""}, // no original: not an address
		{":blackhole: <hole@example.org> R=blackhole_router", "hole@example.org"},
		{"", ""},
	} {
		if got := eximRecipient(tc.rest); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.rest, got, tc.want)
		}
	}
}

// TestEximForList reads the +received_recipients list after the last
// "for" and nothing else.
func TestEximForList(t *testing.T) {
	for _, tc := range []struct {
		line     string
		list     []string
		complete bool
	}{
		{`a@example.org S=1 for b@example.com c@example.net`, []string{"b@example.com", "c@example.net"}, true},
		{`a@example.org S=1 T="x for y@example.com" for b@example.com`, []string{"b@example.com"}, true},
		{`a@example.org S=1 T="thanks for lunch"`, nil, false},
		{`a@example.org A=plain:for x@example.com S=1`, nil, false},
		{`a@example.org S=1 for "a b"@example.com c@exa<trunc>`, []string{`"a b"@example.com`}, false},
		{`a@example.org S=1 from <a@example.org> for b@example.com`, []string{"b@example.com"}, true},
		{`a@example.org S=1 for`, nil, false},
	} {
		list, complete, _ := eximForList(eximTokens(tc.line))
		if !slices.Equal(list, tc.list) || complete != tc.complete {
			t.Errorf("%q: %q complete=%v, want %q complete=%v", tc.line, list, complete, tc.list, tc.complete)
		}
	}
}

// TestEximID knows both message-ID forms and nothing else.
func TestEximID(t *testing.T) {
	for _, id := range []string{"1qXyZa-000Abc-4F", "16VDhn-000000001bo-D342", "000000-000000-00"} {
		if !isEximID(id) {
			t.Errorf("%q: not an ID", id)
		}
	}
	for _, id := range []string{"", "SMTP", "1qXyZa-000Abc-4", "1qXyZa_000Abc-4F", "1qXyZa-000Abc-4!", "16VDhn-00000001bo-D3422", "1rAbCd-00000001Ab-2C"} {
		if isEximID(id) {
			t.Errorf("%q: an ID", id)
		}
	}
}

// TestEximTimestamp cuts every timestamp form of the main log.
func TestEximTimestamp(t *testing.T) {
	for _, line := range []string{
		"2026-11-24 10:00:01 X",
		"2026-11-24 10:00:01.123 X",
		"2026-11-24 10:00:01 +0100 X",
		"2026-11-24 10:00:01.123 -0530 X",
		"2026-11-24 10:00:01 [4242] X",
		"2026-11-24 10:00:01.123 +0100 [4242] X",
	} {
		if rest, ok := cutEximTimestamp(line); !ok || rest != "X" {
			t.Errorf("%q: %q %v", line, rest, ok)
		}
	}
	if _, ok := cutEximTimestamp("2026-11-24T10:00:01 X"); ok {
		t.Error("an ISO 8601 syslog timestamp taken for Exim's")
	}
}
