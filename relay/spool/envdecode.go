package spool

import (
	"encoding/json"

	segjson "github.com/segmentio/encoding/json"
)

// decodeEnvelope decodes the JSON envelope of a message file (RFC 8259).
//
// It decodes with github.com/segmentio/encoding/json, a drop-in
// replacement for encoding/json about three times as fast on an envelope
// (BenchmarkDecodeEnvelope), which matters when a start-up scan decodes
// a hundred thousand of them. When it refuses the input, encoding/json
// decides: its result, value or error, is the reference, and the tests
// (TestDecodeEnvelopeMarshalled, TestDecodeEnvelopeMutated,
// FuzzDecodeEnvelope) check that the two agree.
func decodeEnvelope(raw []byte) (*Envelope, error) {
	if env, ok := decodeEnvelopeFast(raw); ok {
		return env, nil
	}
	env := new(Envelope)
	if err := json.Unmarshal(raw, env); err != nil {
		return nil, err
	}
	return env, nil
}

// decodeEnvelopeFast is the fast decoder; ok is false when it refuses raw.
func decodeEnvelopeFast(raw []byte) (env *Envelope, ok bool) {
	env = new(Envelope)
	if err := segjson.Unmarshal(raw, env); err != nil {
		return nil, false
	}
	return env, true
}
