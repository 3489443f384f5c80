package engine

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"time"

	"github.com/postern-mta/postern/internal/jsonout"
	"github.com/postern-mta/postern/transport"
	"github.com/postern-mta/postern/transport/tlsrpt"
)

// resultJSON is the JSON object of one [Result], the contract of
// `postern send --format json`. The field order is the output's.
type resultJSON struct {
	Recipient string          `json:"recipient"`
	Status    string          `json:"status"`
	Route     string          `json:"route"`
	Code      int             `json:"code,omitempty"`
	Enhanced  string          `json:"enhanced_code,omitempty"`
	Text      string          `json:"text,omitempty"`
	Class     string          `json:"class,omitempty"`
	Host      string          `json:"host,omitempty"`
	Address   string          `json:"address,omitempty"`
	Source    string          `json:"source,omitempty"`
	Protocol  string          `json:"protocol,omitempty"`
	TLS       *resultTLSJSON  `json:"tls,omitempty"`
	Warnings  []string        `json:"warnings,omitempty"`
	Duration  string          `json:"duration"`
	RetryAt   string          `json:"retry_after,omitempty"`
	RetryFrom string          `json:"retry_from,omitempty"`
	Notify    bool            `json:"notify_delay,omitempty"`
	TLSRPT    []tlsrpt.Result `json:"tlsrpt,omitempty"`
}

// resultTLSJSON is the "tls" object of a result, present when the
// connection used TLS.
type resultTLSJSON struct {
	Version  string `json:"version"`
	Cipher   string `json:"cipher"`
	Verified string `json:"verified"`
}

// MarshalJSON renders r as one object of the send JSON contract:
// recipient, status ([Result.StatusText]) and route always; code,
// enhanced_code, text, class (left out when "none"), host, address, source,
// protocol (with host), tls (version and cipher by name, and how the
// certificate was verified) and warnings when set; duration rounded to the
// millisecond ("1.235s"); retry_after in RFC 3339, UTC, when set, with
// retry_from (schedule, throttle or reply); notify_delay when a delay
// notification is due; tlsrpt,
// the TLS-RPT result records (tlsrpt.Result's JSON), when there are any.
func (r Result) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		Recipient: r.Recipient,
		Status:    r.StatusText(),
		Route:     r.Route,
		Code:      r.Code,
		Enhanced:  r.Enhanced.String(),
		Text:      r.Text,
		Host:      r.Host,
		Duration:  r.Duration.Round(time.Millisecond).String(),
	}
	if r.Class != "" && r.Class != transport.ClassNone {
		j.Class = string(r.Class)
	}
	if r.Address.IsValid() {
		j.Address = r.Address.String()
	}
	if r.Source.IsValid() {
		j.Source = r.Source.String()
	}
	if r.Host != "" {
		j.Protocol = r.Protocol.String()
	}
	if r.TLS.Enabled() {
		j.TLS = &resultTLSJSON{
			Version:  tls.VersionName(r.TLS.Version),
			Cipher:   tls.CipherSuiteName(r.TLS.CipherSuite),
			Verified: string(r.TLS.Verified),
		}
	}
	for _, w := range r.Warnings {
		j.Warnings = append(j.Warnings, w.String())
	}
	if !r.RetryAfter.IsZero() {
		j.RetryAt = r.RetryAfter.UTC().Format(time.RFC3339)
		j.RetryFrom = r.RetryFrom
	}
	j.Notify = r.NotifyDelay
	j.TLSRPT = r.TLSRPT
	return jsonout.Marshal(j)
}

// WriteResultsJSON writes results as the send JSON contract: one indented
// array of [Result.MarshalJSON] objects, in order ("[]" for none), and a
// final newline.
func WriteResultsJSON(w io.Writer, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // SMTP replies quote <addresses>
	return enc.Encode(results)
}
