package policies

import (
	"errors"
	"fmt"
	"strings"

	"github.com/postern-mta/postern/expr"
	"go.yaml.in/yaml/v3"
)

// literalField declares a literal-only setting of type T, kept at get(s)
// and read, checked and printed by kind k: its type text is k's name, its
// default def as k writes it. A setting that needs more than its value
// stored gives store (at most one), which replaces *get(s) = v.
func literalField[T any](path string, k *kind[T], get func(*Set) *T, def T, doc string, store ...storeFunc[T]) Field {
	return Field{
		Path: path, Type: k.name, Phase: "literal", Doc: doc,
		Default: defaultText(k, constant(def)),
		init:    func(s *Set, _ string) { *get(s) = def },
		decode: func(d *decoder, s *Set, n *yaml.Node) {
			v, ok := decodeLiteral(d, path, k, n)
			switch {
			case !ok:
			case len(store) == 0:
				*get(s) = v
			default:
				if err := store[0](d, s, n, v); err != nil {
					d.errorf(n, path, "%v", err)
				}
			}
		},
		node: func(s *Set) *yaml.Node { return k.format(*get(s)) },
	}
}

// storeFunc stores v, read from n, in s; its error is reported at the
// setting.
type storeFunc[T any] func(d *decoder, s *Set, n *yaml.Node, v T) error

// earlyField marks f as read in pass 0, before any expression is compiled
// or any file read (the bounds they obey).
func earlyField(f Field) Field {
	f.early = true
	return f
}

// decodeLiteral reads literal n of the setting at path with kind k,
// reporting what is wrong; ok says whether there is a value to store.
func decodeLiteral[T any](d *decoder, path string, k *kind[T], n *yaml.Node) (v T, ok bool) {
	if d.literalAt == nil {
		d.literalAt = map[string]*yaml.Node{}
	}
	d.literalAt[path] = n
	if k.list && n.Kind == yaml.SequenceNode {
		// A kind reads the YAML, not the decoder: charge the items that
		// are aliases to the alias budget here, before it follows them.
		for _, it := range n.Content {
			d.resolve(it)
		}
	}
	v, err := k.parse(n)
	var items itemErrors
	switch {
	case errors.As(err, &items):
		for _, it := range items {
			d.errorf(it.at, fmt.Sprintf("%s[%d]", path, it.index), "%v", it.err)
		}
		// The good items are kept, so that the checks across settings
		// see them (resolver: custom with one good server has a server).
		return v, true
	case err != nil:
		d.errorf(n, path, "%v", err)
		return v, false
	}
	return v, true
}

// stringListKind is a list of strings, each validated by check. A single
// string may be written without the list; an empty value is no strings.
// The problems of a literal's items are returned as itemErrors, along
// with the good items.
func stringListKind(name string, check func(string) error) *kind[[]string] {
	return &kind[[]string]{
		name: name,
		typ:  expr.StringList,
		list: true,
		parse: func(n *yaml.Node) ([]string, error) {
			var items []*yaml.Node
			switch n.Kind {
			case yaml.ScalarNode:
				if n.Tag == "!!null" {
					return nil, nil
				}
				items = []*yaml.Node{n}
			case yaml.SequenceNode:
				items = n.Content
			default:
				return nil, fmt.Errorf("expected a list of strings, found a %s", nodeKind(n))
			}
			var errs itemErrors
			out := make([]string, 0, len(items))
			for i, it := range items {
				if it = follow(it); it.Kind != yaml.ScalarNode {
					errs = append(errs, itemError{at: it, index: i, err: fmt.Errorf("expected a string, found a %s", nodeKind(it))})
					continue
				}
				if err := check(it.Value); err != nil {
					errs = append(errs, itemError{at: it, index: i, err: err})
					continue
				}
				out = append(out, it.Value)
			}
			if len(errs) > 0 {
				return out, errs
			}
			return out, nil
		},
		fromExpr: func(a any) ([]string, error) {
			for _, s := range a.([]string) {
				if err := check(s); err != nil {
					return nil, err
				}
			}
			return a.([]string), nil
		},
		format: flowList,
		text:   func(l []string) string { return "[" + strings.Join(l, ", ") + "]" },
	}
}

// itemErrors are the problems of the items of a list literal, each
// reported at its item (setting[index]).
type itemErrors []itemError

type itemError struct {
	at    *yaml.Node
	index int
	err   error
}

// Error joins the items' messages, one per line.
func (e itemErrors) Error() string {
	msgs := make([]string, len(e))
	for i, it := range e {
		msgs[i] = fmt.Sprintf("[%d]: %v", it.index, it.err)
	}
	return strings.Join(msgs, "\n")
}
