package policies

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/postern-mta/postern/internal/safefile"
	"go.yaml.in/yaml/v3"
)

// Secret is a credential written in a policy as {env: NAME}, {file: PATH}
// or a literal string. Its String and GoString never reveal the value, so
// it can be logged and printed safely.
type Secret struct {
	kind  string // "env", "file" or "literal"
	ref   string // variable name or absolute path
	shown string // the path as written, for messages
	value string // literal only
	max   int64  // file only: largest file read; 0 means DefaultMaxFileSize
}

// EnvSecret returns a secret read from environment variable name.
func EnvSecret(name string) Secret { return Secret{kind: "env", ref: name, shown: name} }

// FileSecret returns a secret read from the file at path.
func FileSecret(path string) Secret { return Secret{kind: "file", ref: path, shown: path} }

// LiteralSecret returns a secret written in the policy itself.
func LiteralSecret(v string) Secret { return Secret{kind: "literal", value: v} }

// IsZero reports whether no secret was given.
func (s Secret) IsZero() bool { return s.kind == "" }

// Source describes where the secret comes from without revealing it:
// "<from env NAME>", "<from file PATH>" or "<literal in policy>".
func (s Secret) Source() string {
	switch s.kind {
	case "env":
		return "<from env " + s.ref + ">"
	case "file":
		return "<from file " + s.shown + ">"
	case "literal":
		return "<literal in policy>"
	}
	return "<none>"
}

// String is [Secret.Source]: a Secret printed by accident shows no value.
func (s Secret) String() string { return s.Source() }

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return "policies.Secret" + s.Source() }

// Format keeps every fmt verb from printing the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.Source())) }

// MarshalText keeps encoders (JSON, YAML, slog) from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.Source()), nil }

// ErrSecretUnavailable is wrapped by [Secret.Resolve] when the secret
// cannot be read.
var ErrSecretUnavailable = errors.New("secret unavailable")

// Resolve reads the secret's value: the environment variable (which must be
// set and non-empty), the file (trailing newlines removed; a regular file
// no larger than limits.max-file-size: a FIFO or a device is refused at
// once, never waited on), or the literal.
func (s Secret) Resolve() (string, error) {
	switch s.kind {
	case "env":
		v, ok := os.LookupEnv(s.ref)
		if !ok || v == "" {
			return "", fmt.Errorf("%w: environment variable %s is not set", ErrSecretUnavailable, s.ref)
		}
		return v, nil
	case "file":
		max := s.max
		if max <= 0 {
			max = DefaultMaxFileSize
		}
		b, err := safefile.Read(s.ref, max)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrSecretUnavailable, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case "literal":
		return s.value, nil
	}
	return "", fmt.Errorf("%w: no secret configured", ErrSecretUnavailable)
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) secret(n *yaml.Node, setting string) Secret {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "" {
			d.errorf(n, setting, "empty secret")
		}
		d.warnf(n, setting, "literal secret in the policy file: prefer {env: NAME} or {file: PATH}")
		return LiteralSecret(n.Value)
	}
	var sec Secret
	for _, p := range d.pairs(n, setting) {
		k, v := p[0], p[1]
		if !sec.IsZero() {
			d.errorf(k, setting, "a secret is {env: NAME} or {file: PATH}, not both")
			continue
		}
		switch k.Value {
		case "env":
			if v.Kind != yaml.ScalarNode || !envNameRE.MatchString(v.Value) {
				d.errorf(v, setting+".env", "%q is not an environment variable name", v.Value)
				continue
			}
			sec = EnvSecret(v.Value)
			if val, ok := os.LookupEnv(v.Value); !ok {
				d.warnf(v, setting+".env", "environment variable %s is not set here", v.Value)
			} else if val == "" {
				d.warnf(v, setting+".env", "environment variable %s is set but empty here", v.Value)
			}
		case "file":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				d.errorf(v, setting+".file", "expected a file path")
				continue
			}
			sec = Secret{kind: "file", ref: d.path(v.Value), shown: v.Value, max: d.maxFileSize}
			// Read it now, as delivery will (the value is dropped). A file
			// that is missing or unreadable here may exist where the
			// policy runs: a warning. One that can never be read as a
			// secret (a FIFO, a device, too large) is an error.
			if _, err := sec.Resolve(); errors.Is(err, safefile.ErrNotRegular) || errors.Is(err, safefile.ErrTooLarge) {
				d.errorf(v, setting+".file", "cannot use the secret file: %v", err)
			} else if err != nil {
				d.warnf(v, setting+".file", "cannot read the secret file here: %v", err)
			}
		default:
			d.unknownKey(k, setting, []string{"env", "file"})
		}
	}
	if sec.IsZero() {
		d.errorf(n, setting, "expected {env: NAME}, {file: PATH} or a string")
	}
	return sec
}
