package spool

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// checkDecode asserts the contract of decodeEnvelopeFast on raw: when it
// takes the input, encoding/json decodes it without error to the same
// Envelope; and decodeEnvelope agrees with encoding/json either way.
// It reports whether the fast path took raw.
func checkDecode(t *testing.T, raw []byte) bool {
	t.Helper()
	ref := new(Envelope)
	refErr := json.Unmarshal(raw, ref)
	fast, ok := decodeEnvelopeFast(raw)
	if ok {
		if refErr != nil {
			t.Fatalf("fast path took %q, which encoding/json refuses: %v", raw, refErr)
		}
		if !reflect.DeepEqual(fast, ref) {
			t.Fatalf("fast path decoded %q as\n%#v\nencoding/json as\n%#v", raw, fast, ref)
		}
	}
	env, err := decodeEnvelope(raw)
	if (err != nil) != (refErr != nil) || (err == nil && !reflect.DeepEqual(env, ref)) {
		t.Fatalf("decodeEnvelope(%q) = %#v, %v; encoding/json %#v, %v", raw, env, err, ref, refErr)
	}
	return ok
}

// randomString returns a string of up to n characters drawn from ASCII,
// the characters json.Marshal escapes (quotes, backslashes, controls, <,
// >, &, U+2028), other Unicode (two to four UTF-8 bytes) and, rarely,
// invalid UTF-8.
func randomString(r *rand.Rand, n int) string {
	pieces := []string{"a", "Z", "0", " ", "@", ".", "\"", "\\", "/", "\n", "\t", "\x00", "\x1f", "<", ">", "&",
		"\u2028", "\u2029", "é", "ß", "€", "😀", "\ufffd", "\x7f"}
	var b strings.Builder
	for range r.IntN(n + 1) {
		if r.IntN(200) == 0 {
			b.WriteByte(byte(0x80 + r.IntN(0x80))) // invalid UTF-8: Marshal makes it U+FFFD
			continue
		}
		if r.IntN(3) == 0 {
			b.WriteString(pieces[r.IntN(len(pieces))])
		} else {
			b.WriteByte(byte('a' + r.IntN(26)))
		}
	}
	return b.String()
}

// randomEnvelope returns an envelope with every field drawn at random,
// empty ones included (which omitempty leaves out).
func randomEnvelope(r *rand.Rand) *Envelope {
	s := func() string {
		if r.IntN(4) == 0 {
			return ""
		}
		return randomString(r, 30)
	}
	env := &Envelope{
		From: s(), Ret: s(), EnvID: s(), RequireTLS: r.IntN(2) == 0, SMTPUTF8: r.IntN(2) == 0, Body: s(),
		Arrival:  time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(time.FixedZone("", 60*(r.IntN(1440)-720))),
		ClientIP: s(), ClientPTR: s(), HELO: s(), Listener: s(), TLS: s(), Auth: s(),
		Hops: r.IntN(1<<20) - 1<<19, MessageID: s(), Source: s(),
	}
	if r.IntN(8) == 0 {
		env.Arrival = env.Arrival.UTC()
	}
	if r.IntN(10) != 0 { // else nil: "rcpt":null, which only encoding/json takes
		env.Recipients = []Recipient{}
	}
	for range r.IntN(5) {
		rc := Recipient{Addr: s(), ORcpt: s()}
		for range r.IntN(4) {
			rc.Notify = append(rc.Notify, s())
		}
		env.Recipients = append(env.Recipients, rc)
	}
	return env
}

// TestDecodeEnvelopeMarshalled: the fast path takes what json.Marshal
// writes for an Envelope (what Create stores), with every kind of
// character and empty field, and decodes it as encoding/json does.
func TestDecodeEnvelopeMarshalled(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	envs := []*Envelope{testEnvelope(), {Recipients: []Recipient{}}, {Recipients: []Recipient{{Notify: []string{}}}}}
	for range 3000 {
		envs = append(envs, randomEnvelope(r))
	}
	for _, env := range envs {
		raw, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecode(t, raw) && env.Recipients != nil {
			t.Fatalf("the fast path refused what json.Marshal wrote: %s", raw)
		}
	}
}

// TestDecodeEnvelopeMutated: on marshalled envelopes with bytes changed,
// inserted or removed at random, the fast path never decodes anything
// differently from encoding/json, nor takes what it refuses.
func TestDecodeEnvelopeMutated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("{}[]:,\" \\/ubfnrt0123456789.-+eE aZ\x00\x80\xff\xe2tfn")
	took, mutants := 0, 0
	for range 3000 {
		raw, err := json.Marshal(randomEnvelope(r))
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			m := append([]byte(nil), raw...)
			for range 1 + r.IntN(3) {
				i := r.IntN(len(m) + 1)
				c := alphabet[r.IntN(len(alphabet))]
				switch r.IntN(3) {
				case 0:
					if i < len(m) {
						m[i] = c
					}
				case 1:
					m = append(m[:i], append([]byte{c}, m[i:]...)...)
				case 2:
					if i < len(m) {
						m = append(m[:i], m[i+1:]...)
					}
				}
			}
			mutants++
			if checkDecode(t, m) {
				took++
			}
		}
	}
	t.Logf("fast path took %d of %d mutants", took, mutants)
}

// TestDecodeEnvelopeEdges: odd inputs (keys in another case, repeated
// or unknown keys, null, numbers that are not plain integers, invalid
// UTF-8, lone surrogates, invalid JSON) decode as encoding/json decodes
// them, errors included.
func TestDecodeEnvelopeEdges(t *testing.T) {
	for _, raw := range []string{
		`{}`,
		` { "from" : "a" , "rcpt" : [ { "addr" : "b" , "notify" : [ "NEVER" ] } ] } `,
		`{"from":"\u003cx\u003e \"q\" \\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00"}`,
		`{"hops":-0}`,
		`{"hops":123456789012345678}`,
		`{"arrival":"2026-12-02T10:00:00.5+01:00"}`,
		`{"From":"a"}`,            // encoding/json matches keys in any case
		`{"from":"a","from":"b"}`, // the last one wins
		`{"rcpt":[{"addr":"a","addr":"b"}]}`,
		`{"other":1}`,   // unknown keys are skipped
		`{"from":null}`, // null leaves the field alone
		`{"rcpt":null}`,
		`{"hops":1.0}`, // an error: 1.0 is not an int
		`{"hops":1e2}`,
		`{"hops":01}`,                  // invalid JSON
		`{"hops":1234567890123456789}`, // 19 digits: encoding/json decides
		`{"hops":99999999999999999999}`,
		`{"hops":"1"}`,
		`{"from":"\ud83d"}`, // a lone surrogate becomes U+FFFD
		`{"from":"\udc00\ud83d"}`,
		"{\"from\":\"\xff\"}",  // invalid UTF-8 becomes U+FFFD
		"{\"from\":\"a\x01\"}", // a control character: invalid
		`{"from":"a\x"}`,
		`{"from":"a\u12"}`,
		`{"arrival":"yesterday"}`,
		`{"arrival":"2026-12-02T10:00:00\u005a"}`,
		`{"requiretls":1}`,
		`{"requiretls":truex}`,
		`{"from":"a"} x`,
		`{"from":"a"}{}`,
		`{"from":"a",}`,
		`{"rcpt":[{"addr":"a"},]}`,
		"\ufeff{}",
		``,
		`[]`,
		`{"from":"a"`,
	} {
		checkDecode(t, []byte(raw))
	}
}

// FuzzDecodeEnvelope: for any input, the fast path decodes as
// encoding/json does or leaves the input to it. The seed corpus runs in
// every go test.
func FuzzDecodeEnvelope(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, env := range []*Envelope{testEnvelope(), randomEnvelope(r), randomEnvelope(r), {}} {
		raw, err := json.Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"from":"\ud83d\ude00","rcpt":[{"addr":"a","notify":[]}],"hops":-12}`))
	f.Add([]byte(`{"From":"a","x":[1,{"y":null}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkDecode(t, raw)
	})
}

// BenchmarkDecodeEnvelope compares the envelope decoder of the scan with
// encoding/json on the envelope of the scan benchmark.
func BenchmarkDecodeEnvelope(b *testing.B) {
	env := *testEnvelope()
	env.Arrival = time.Now().UTC()
	raw, err := json.Marshal(&env)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeEnvelopeFast(raw); !ok {
				b.Fatal("fast path refused")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e Envelope
			if err := json.Unmarshal(raw, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
