package engine

import "github.com/postern-mta/postern/transport/mailbox"

// parsedRcpt is a recipient parsed.
type parsedRcpt struct {
	addr mailbox.Address
	err  error
}

// parseRecipients parses every recipient; texts are their canonical forms
// (the text as given for those that do not parse).
func parseRecipients(to []string) (parsed []parsedRcpt, texts []string) {
	parsed, texts = make([]parsedRcpt, len(to)), make([]string, len(to))
	for i, rcpt := range to {
		p := &parsed[i]
		p.addr, p.err = mailbox.Parse(rcpt)
		texts[i] = canonical(rcpt, p.addr)
	}
	return parsed, texts
}

// canonical is the canonical text of the address a parsed from s: s
// itself when it is already canonical (no allocation), s when it did not
// parse (a is zero).
func canonical(s string, a mailbox.Address) string {
	if a.IsZero() {
		return s
	}
	if len(s) == len(a.Local)+1+len(a.Domain) && s[:len(a.Local)] == a.Local && s[len(a.Local)] == '@' && s[len(a.Local)+1:] == a.Domain {
		return s
	}
	return a.String()
}
