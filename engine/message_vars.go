package engine

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/postern-mta/postern/expr"
)

// SetVar sets the recipient-phase variable name (as policies write it:
// retry_num, last_error, queue_name, ...) from its text form, as
// `postern dry-run --var NAME=VALUE` and the corpus files of
// `postern diff` give it. Integers must parse; last_error must be one of
// [Classes]. The envelope (sender, rcpt, recipients), meta and the
// variables of later phases are not set this way: the error says where
// they come from.
func (m *Message) SetVar(name, value string) error {
	if why := m.setVar(name, value); why != "" {
		return &VarError{Name: name, Reason: why}
	}
	return nil
}

// VarError says why [Message.SetVar] refused a variable.
type VarError struct {
	Name   string // the variable
	Reason string // why, without the name
}

// Error returns "NAME: REASON".
func (e *VarError) Error() string { return e.Name + ": " + e.Reason }

// setVar sets the variable, or says why not.
func (m *Message) setVar(name, value string) string {
	if p := m.intVar(name); p != nil {
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Sprintf("%q is not an integer", value)
		}
		*p = n
		return ""
	}
	if p := m.stringVar(name); p != nil {
		if name == "last_error" && !validClass(value) {
			return fmt.Sprintf("%q is not one of %s", value, classList())
		}
		*p = value
		return ""
	}
	switch name {
	case "sender", "sender_domain":
		return "comes from the envelope sender"
	case "rcpt", "rcpt_domain", "recipients":
		return "comes from the envelope recipients"
	case "meta":
		return "set its keys as meta, not as a variable"
	}
	if v, ok := expr.LookupVariable(name); ok {
		if v.Phase == expr.Session {
			return "a session-phase variable: only relay.permit sees it, for each RCPT of an SMTP session"
		}
		return fmt.Sprintf("a %s-phase variable, computed for each host or address", v.Phase)
	}
	return "unknown variable (recipient-phase variables: " + strings.Join(expr.VariablesOf(expr.Recipient), ", ") + ")"
}

// intVar is the field of an integer recipient-phase variable, nil for
// any other name.
func (m *Message) intVar(name string) *int {
	switch name {
	case "size":
		return &m.Size
	case "priority":
		return &m.Priority
	case "retry_num":
		return &m.RetryNum
	case "notify_num":
		return &m.NotifyNum
	case "expires_in":
		return &m.ExpiresIn
	case "queue_age":
		return &m.QueueAge
	case "received_via_port":
		return &m.ReceivedViaPort
	}
	return nil
}

// stringVar is the field of a string recipient-phase variable, nil for
// any other name.
func (m *Message) stringVar(name string) *string {
	switch name {
	case "last_error":
		return &m.LastError
	case "last_status":
		return &m.LastStatus
	case "queue_name":
		return &m.QueueName
	case "source":
		return &m.Source
	case "received_from_ip":
		return &m.ReceivedFromIP
	case "authenticated_as":
		return &m.AuthenticatedAs
	}
	return nil
}

func validClass(s string) bool {
	for _, c := range Classes {
		if string(c) == s {
			return true
		}
	}
	return false
}

func classList() string {
	words := make([]string, len(Classes))
	for i, c := range Classes {
		words[i] = string(c)
	}
	return strings.Join(words, ", ")
}
