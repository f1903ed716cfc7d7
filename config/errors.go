package config

import (
	"errors"
	"strings"
)

// Errors from Load. Each is wrapped with where it happened (file and line,
// environment variable or override key), so test with [errors.Is].
var (
	// ErrSyntax means the YAML file does not parse.
	ErrSyntax = errors.New("invalid YAML")
	// ErrUnknownField means a YAML key or override names no option.
	// Unknown CASCADE_ environment variables are ignored instead.
	ErrUnknownField = errors.New("unknown field")
	// ErrBadValue means a value does not fit its option's type, such as
	// "abc" for a port.
	ErrBadValue = errors.New("invalid value")
)

// FieldError is one problem Validate found with one option.
type FieldError struct {
	// Field is the option's dotted path, with list indexes:
	// media.ice_servers[0].urls[1].
	Field string
	// Problem says what is wrong and why, such as "70000 is not a port".
	Problem string
}

// Error renders the problem as "field: problem".
func (e FieldError) Error() string {
	return e.Field + ": " + e.Problem
}

// ValidationError lists every problem Validate found, in field order.
type ValidationError []FieldError

// Error joins the problems with "; ".
func (v ValidationError) Error() string {
	msgs := make([]string, len(v))
	for i, fe := range v {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}
