package expr

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Program is a compiled expression. It is immutable and safe for concurrent
// use; run it with a [VM] owned by the calling goroutine.
type Program struct {
	prog    *vm.Program
	tree    ast.Node // as parsed, before expr-lang's optimiser rewrote it (for Implies)
	steps   int      // evaluation budget of one run
	typ     Type
	source  string
	setting string
	pos     Position
	lists   []string
	vars    []string
	notes   []string
}

// ForSetting returns a copy of p that names setting in its run-time
// errors: the same compiled expression serving another setting (a YAML
// node reached through an alias is compiled once).
func (p *Program) ForSetting(setting string) *Program {
	if p.setting == setting {
		return p
	}
	c := *p
	c.setting = setting
	return &c
}

// ListsUsed returns the names of the lists the expression passes to
// in_list.
func (p *Program) ListsUsed() []string { return p.lists }

// Notes are warnings about the expression: what loads but cannot be what
// was meant (a lower-cased variable compared with upper-case letters).
func (p *Program) Notes() []string { return p.notes }

// Uses reports whether the expression reads the variable name.
func (p *Program) Uses(name string) bool { return slices.Contains(p.vars, name) }

// Source returns the expression as written.
func (p *Program) Source() string { return p.source }

// Type returns the program's result type.
func (p *Program) Type() Type { return p.typ }

// Position returns where the expression starts in its file.
func (p *Program) Position() Position { return p.pos }

// VM evaluates programs. It keeps its stack between runs, so reusing one
// per goroutine avoids allocations. A VM is not safe for concurrent use.
type VM struct {
	m     vm.VM
	meter Meter
	ctx   context.Context
}

// SetContext ties the programs the VM runs to ctx: a run stops with an
// error once ctx is done (checked as its loops go round). Nil means no
// context.
func (m *VM) SetContext(ctx context.Context) { m.ctx = ctx }

// run executes p and converts any failure into a positioned *Error. The
// run is bounded by p's evaluation budget and by the VM's context.
func (p *Program) run(m *VM, env *Env) (any, error) {
	m.meter.reset(p.steps, m.ctx)
	env.Meter = &m.meter
	out, err := m.m.Run(p.prog, env)
	env.Meter = nil
	if err != nil {
		return nil, p.runtimeError(err)
	}
	return out, nil
}

func (p *Program) runtimeError(err error) *Error {
	var fe *file.Error
	if errors.As(err, &fe) {
		e := fromExprError(fe, Spec{Setting: p.setting}, p.pos)
		e.Message = "run-time error: " + e.Message
		return e
	}
	return &Error{File: p.pos.File, Line: p.pos.Line, Column: p.pos.Column, Setting: p.setting,
		Message: "run-time error: " + err.Error(), Err: err}
}

func (p *Program) typeError(got any) *Error {
	return &Error{File: p.pos.File, Line: p.pos.Line, Column: p.pos.Column, Setting: p.setting,
		Message: fmt.Sprintf("run-time error: expected %s, got %T", p.typ, got)}
}

// Bool runs a program of type [Bool].
func (p *Program) Bool(m *VM, env *Env) (bool, error) {
	out, err := p.run(m, env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, p.typeError(out)
	}
	return b, nil
}

// String runs a program of type [String].
func (p *Program) String(m *VM, env *Env) (string, error) {
	out, err := p.run(m, env)
	if err != nil {
		return "", err
	}
	s, ok := out.(string)
	if !ok {
		return "", p.typeError(out)
	}
	return s, nil
}

// Int runs a program of type [Int].
func (p *Program) Int(m *VM, env *Env) (int, error) {
	out, err := p.run(m, env)
	if err != nil {
		return 0, err
	}
	i, ok := out.(int)
	if !ok {
		return 0, p.typeError(out)
	}
	return i, nil
}

// Strings runs a program of type [StringList]. The result is a new slice.
func (p *Program) Strings(m *VM, env *Env) ([]string, error) {
	out, err := p.run(m, env)
	if err != nil {
		return nil, err
	}
	switch v := out.(type) {
	case []string:
		return slices.Clone(v), nil
	case []any:
		s := make([]string, len(v))
		for i, x := range v {
			str, ok := x.(string)
			if !ok {
				return nil, &Error{File: p.pos.File, Line: p.pos.Line, Column: p.pos.Column, Setting: p.setting,
					Message: fmt.Sprintf("run-time error: element %d is %T, not a string", i, x)}
			}
			s[i] = str
		}
		return s, nil
	}
	return nil, p.typeError(out)
}

// AlwaysTrue reports whether the program is the constant true after
// expr-lang's constant folding (`true`, `1 == 1`): a rule whose condition
// always holds makes every rule after it unreachable.
func (p *Program) AlwaysTrue() bool {
	b, ok := p.prog.Node().(*ast.BoolNode)
	return ok && b.Value
}
