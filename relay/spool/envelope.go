package spool

import "time"

// Envelope is everything the relay knows about a message besides its
// body: the SMTP envelope (RFC 5321) with its DSN parameters (RFC 3461),
// and where the message came from. It is stored as one JSON object in the
// message file and never changes after the message is queued; what
// changes (attempts, results) lives in the message's [State].
type Envelope struct {
	// From is the reverse path without angle brackets; "" is the null
	// sender (a DSN), to which no DSN is ever sent.
	From       string      `json:"from"`
	Recipients []Recipient `json:"rcpt"`

	Ret        string `json:"ret,omitempty"`   // RFC 3461 RET: "FULL", "HDRS" or ""
	EnvID      string `json:"envid,omitempty"` // RFC 3461 ENVID, decoded from xtext
	RequireTLS bool   `json:"requiretls,omitempty"`
	SMTPUTF8   bool   `json:"smtputf8,omitempty"`
	Body       string `json:"body,omitempty"` // "7BIT", "8BITMIME", "BINARYMIME" or ""

	Arrival   time.Time `json:"arrival"`
	ClientIP  string    `json:"client_ip,omitempty"`
	ClientPTR string    `json:"client_ptr,omitempty"`
	HELO      string    `json:"helo,omitempty"`
	Listener  string    `json:"listener,omitempty"`
	TLS       string    `json:"tls,omitempty"`  // e.g. "TLSv1.3 TLS_AES_128_GCM_SHA256", "" for plaintext
	Auth      string    `json:"auth,omitempty"` // authenticated identity, never a secret
	Hops      int       `json:"hops"`           // Received header fields counted at intake
	MessageID string    `json:"message_id,omitempty"`

	// Source is "" for mail received from a client and "dsn" for a
	// delivery status notification the relay generated itself.
	Source string `json:"source,omitempty"`
}

// Recipient is one RCPT TO with its RFC 3461 parameters.
type Recipient struct {
	Addr   string   `json:"addr"`
	Notify []string `json:"notify,omitempty"` // "NEVER" or some of "SUCCESS", "FAILURE", "DELAY"; empty = not given
	ORcpt  string   `json:"orcpt,omitempty"`  // "rfc822;addr" or "utf-8;addr" as given, decoded from xtext
}
