// Package jsonout encodes JSON meant to be read by people (RFC 8259): like
// encoding/json's Marshal, but "<", ">" and "&" are written as they are,
// not as \u003c escapes. Dry-run and send output is full of them
// (conditions, SMTP replies quoting <addresses>).
//
// encoding/json's Encoder.SetEscapeHTML does not reach into what a
// MarshalJSON method returns, so the methods that shape output use this.
// It imports nothing of the module.
package jsonout

import (
	"bytes"
	"encoding/json"
)

// Marshal returns the JSON encoding of v, without HTML escaping and
// without a trailing newline.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
