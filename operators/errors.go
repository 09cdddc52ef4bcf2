package operators

import "errors"

var (
	// ErrUnknownColumn is returned when an expression names a column the input lacks.
	ErrUnknownColumn = errors.New("operators: unknown column")
	// ErrUnknownFunction is returned for a function that is neither built in nor registered.
	ErrUnknownFunction = errors.New("operators: unknown function")
	// ErrType is returned when an expression is applied to a value of the wrong type.
	ErrType = errors.New("operators: type mismatch")
	// ErrCorrupt is returned when encoded exchange or state data cannot be decoded.
	ErrCorrupt = errors.New("operators: corrupt encoded data")
)
