package policies

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// kind describes the type of a setting: how to read a literal, which
// expression type computes it, and how to turn an expression's result into a
// value. A kind only literal-only settings use (pathKind) may leave typ,
// fromExpr and text unset: they serve the computed forms and the trace.
type kind[T any] struct {
	name  string    // for messages and docs: `one of disable, optional, require`
	typ   expr.Type // result type of computed forms
	list  bool      // literal may be a YAML sequence of scalars
	parse func(n *yaml.Node) (T, error)
	// fromExpr converts a program's result (string, int, bool or []string)
	// into a value, validating it as a literal would be.
	fromExpr func(any) (T, error)
	format   func(T) *yaml.Node
	text     func(T) string
}

// named returns a copy of k whose type text is name.
func (k *kind[T]) named(name string) *kind[T] {
	c := *k
	c.name = name
	return &c
}

func scalarText(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", errors.New("expected a single value, not a " + nodeKind(n))
	}
	return n.Value, nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "value"
	}
	return "YAML node"
}

func enumKind[T ~string](values ...T) *kind[T] {
	words := make([]string, len(values))
	for i, v := range values {
		words[i] = string(v)
	}
	list := strings.Join(words, ", ")
	return scalarKind("one of "+list, func(s string) (T, error) {
		if slices.Contains(values, T(s)) {
			return T(s), nil
		}
		// A misspelt word gets a suggestion; a number ("1.4" for a
		// version) is no typo of another.
		if near := suggest(strings.ToLower(s), words); near != "" && strings.ContainsFunc(s, unicode.IsLetter) {
			return "", fmt.Errorf("%q is not one of %s: did you mean %q?", s, list, near)
		}
		return "", fmt.Errorf("%q is not one of %s", s, list)
	}, func(v T) *yaml.Node { return strNode(string(v)) })
}

var boolKind = &kind[bool]{
	name: "bool (true or false)",
	typ:  expr.Bool,
	parse: func(n *yaml.Node) (bool, error) {
		s, err := scalarText(n)
		if err != nil {
			return false, err
		}
		switch s {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return false, fmt.Errorf("%q is not a bool: write true or false", s)
	},
	fromExpr: func(a any) (bool, error) { return a.(bool), nil },
	format: func(b bool) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
	},
	text: strconv.FormatBool,
}

func intKind(min, max int) *kind[int] {
	check := func(i int) (int, error) {
		if i < min || i > max {
			return 0, fmt.Errorf("%d is out of range: it must be between %d and %d", i, min, max)
		}
		return i, nil
	}
	return &kind[int]{
		name: fmt.Sprintf("integer, %d to %d", min, max),
		typ:  expr.Int,
		parse: func(n *yaml.Node) (int, error) {
			s, err := scalarText(n)
			if err != nil {
				return 0, err
			}
			i, err := strconv.Atoi(s)
			if err != nil {
				return 0, fmt.Errorf("%q is not an integer", s)
			}
			return check(i)
		},
		fromExpr: func(a any) (int, error) { return check(a.(int)) },
		format:   itoaNode,
		text:     strconv.Itoa,
	}
}

var durationKind = &kind[time.Duration]{
	name: "duration (90s, 5m, 1h30m, 2d)",
	typ:  expr.String,
	parse: func(n *yaml.Node) (time.Duration, error) {
		s, err := scalarText(n)
		if err != nil {
			return 0, err
		}
		return ParseDuration(s)
	},
	fromExpr: func(a any) (time.Duration, error) { return ParseDuration(a.(string)) },
	format:   func(d time.Duration) *yaml.Node { return strNode(FormatDuration(d)) },
	text:     FormatDuration,
}

// sizeKind is a size in bytes, lo to hi, written as [ParseSize] reads it
// and [FormatSize] writes it.
func sizeKind[T int | int64](lo, hi T) *kind[T] {
	check := func(s string) (T, error) {
		v, err := ParseSize(s)
		if err != nil {
			return 0, err
		}
		if v < int64(lo) || v > int64(hi) {
			return 0, fmt.Errorf("%s is out of range: it must be between %s and %s", s, FormatSize(int64(lo)), FormatSize(int64(hi)))
		}
		return T(v), nil
	}
	name := "size, at most " + FormatSize(int64(hi))
	if lo != 1 {
		name = "size, " + FormatSize(int64(lo)) + " to " + FormatSize(int64(hi))
	}
	return &kind[T]{
		name: name,
		typ:  expr.String,
		parse: func(n *yaml.Node) (T, error) {
			s, err := scalarText(n)
			if err != nil {
				return 0, err
			}
			return check(s)
		},
		fromExpr: func(a any) (T, error) { return check(a.(string)) },
		format:   func(v T) *yaml.Node { return strNode(FormatSize(int64(v))) },
		text:     func(v T) string { return FormatSize(int64(v)) },
	}
}

// scalarKind is a kind read from one scalar (literal) or a string
// (expression), both validated by check, which may also normalise.
func scalarKind[T ~string](name string, check func(string) (T, error), format func(T) *yaml.Node) *kind[T] {
	return &kind[T]{
		name: name,
		typ:  expr.String,
		parse: func(n *yaml.Node) (T, error) {
			s, err := scalarText(n)
			if err != nil {
				return "", err
			}
			return check(s)
		},
		fromExpr: func(a any) (T, error) { return check(a.(string)) },
		format:   format,
		text:     func(v T) string { return string(v) },
	}
}

// hostnameKind accepts a DNS host name; empty means "not set" when
// allowEmpty.
func hostnameKind(allowEmpty bool) *kind[string] {
	return scalarKind("host name", func(s string) (string, error) {
		s = strings.TrimSuffix(strings.ToLower(s), ".")
		if s == "" && allowEmpty {
			return "", nil
		}
		if !expr.IsHostname(s) {
			return "", fmt.Errorf("%q is not a host name", s)
		}
		return s, nil
	}, strNode)
}

// routeKind names a route; exists answers from the policy's routes.
func routeKind(exists func(string) bool) *kind[string] {
	return scalarKind("route name (mx, local, or one of routing.routes)", func(s string) (string, error) {
		if !exists(s) {
			// Stalwart's rules quote route names ('mx'): here a literal
			// is the name itself.
			if len(s) > 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] && exists(s[1:len(s)-1]) {
				return "", fmt.Errorf("route %q is not defined: the quotes are part of the name here, write %s", s, s[1:len(s)-1])
			}
			return "", fmt.Errorf("route %q is not defined (define it under routing.routes, or use mx or local)", s)
		}
		return s, nil
	}, strNode)
}

var ipListKind = &kind[[]netip.Addr]{
	name: "list of IP addresses",
	typ:  expr.StringList,
	list: true,
	parse: func(n *yaml.Node) ([]netip.Addr, error) {
		var items []*yaml.Node
		switch n.Kind {
		case yaml.ScalarNode:
			items = []*yaml.Node{n}
		case yaml.SequenceNode:
			items = n.Content
		default:
			return nil, errors.New("expected a list of IP addresses")
		}
		out := make([]netip.Addr, 0, len(items))
		for _, it := range items {
			s, err := scalarText(it)
			if err != nil {
				return nil, err
			}
			a, err := parseIP(s)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
		return out, nil
	},
	fromExpr: func(a any) ([]netip.Addr, error) {
		ss := a.([]string)
		out := make([]netip.Addr, 0, len(ss))
		for _, s := range ss {
			ip, err := parseIP(s)
			if err != nil {
				return nil, err
			}
			out = append(out, ip)
		}
		return out, nil
	},
	format: func(l []netip.Addr) *yaml.Node {
		seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, a := range l {
			seq.Content = append(seq.Content, strNode(a.String()))
		}
		return seq
	},
	text: func(l []netip.Addr) string {
		s := make([]string, len(l))
		for i, a := range l {
			s[i] = a.String()
		}
		return "[" + strings.Join(s, ", ") + "]"
	},
}

// positiveDurationKind is a duration above zero (queue.expire: zero would
// expire every message before its first attempt).
var positiveDurationKind = func() *kind[time.Duration] {
	k := *durationKind
	k.name = "duration above zero (90s, 5m, 1h30m, 2d)"
	check := func(d time.Duration, err error) (time.Duration, error) {
		if err == nil && d <= 0 {
			return 0, errors.New("must be above zero")
		}
		return d, err
	}
	k.parse = func(n *yaml.Node) (time.Duration, error) { return check(durationKind.parse(n)) }
	k.fromExpr = func(a any) (time.Duration, error) { return check(durationKind.fromExpr(a)) }
	return &k
}()

// durationListKind is a list of durations, at least min of them, each
// positive (queue.retry, queue.notify).
func durationListKind(min int) *kind[[]time.Duration] {
	check := func(l []time.Duration) ([]time.Duration, error) {
		if len(l) < min {
			return nil, fmt.Errorf("needs at least %d duration", min)
		}
		for _, d := range l {
			if d <= 0 {
				return nil, fmt.Errorf("%s: each duration must be positive", FormatDuration(d))
			}
		}
		return l, nil
	}
	name := "list of durations (" + durationKind.name[len("duration ("):]
	if min > 0 {
		name = "non-empty " + name
	}
	return &kind[[]time.Duration]{
		name: name,
		typ:  expr.StringList,
		list: true,
		parse: func(n *yaml.Node) ([]time.Duration, error) {
			items := []*yaml.Node{n}
			switch n.Kind {
			case yaml.ScalarNode:
			case yaml.SequenceNode:
				items = n.Content
			default:
				return nil, errors.New("expected a list of durations")
			}
			out := make([]time.Duration, 0, len(items))
			for _, it := range items {
				s, err := scalarText(it)
				if err != nil {
					return nil, err
				}
				d, err := ParseDuration(s)
				if err != nil {
					return nil, err
				}
				out = append(out, d)
			}
			return check(out)
		},
		fromExpr: func(a any) ([]time.Duration, error) {
			out := make([]time.Duration, 0, len(a.([]string)))
			for _, s := range a.([]string) {
				d, err := ParseDuration(s)
				if err != nil {
					return nil, err
				}
				out = append(out, d)
			}
			return check(out)
		},
		format: func(l []time.Duration) *yaml.Node {
			seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, d := range l {
				seq.Content = append(seq.Content, strNode(FormatDuration(d)))
			}
			return seq
		},
		text: func(l []time.Duration) string {
			s := make([]string, len(l))
			for i, d := range l {
				s[i] = FormatDuration(d)
			}
			return "[" + strings.Join(s, ", ") + "]"
		},
	}
}

var (
	tlsModeKind    = enumKind(TLSDisable, TLSOptional, TLSRequire)
	lookupKind     = enumKind(IPv4Only, IPv6Only, IPv4ThenIPv6, IPv6ThenIPv4)
	tlsVersionKind = enumKind[TLSVersion]("1.0", "1.1", "1.2", "1.3")
)
