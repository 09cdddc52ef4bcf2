package engine

import "errors"

var (
	// ErrAnalysis is returned by Start for a query that cannot run as built:
	// an unknown column, a bad option, an output mode the query does not allow.
	ErrAnalysis = errors.New("engine: invalid query")
	// ErrCheckpoint is returned when a checkpoint directory is damaged or
	// belongs to a different query. Nothing in it is changed.
	ErrCheckpoint = errors.New("engine: checkpoint")
	// ErrStopped is returned by calls on a query that has stopped.
	ErrStopped = errors.New("engine: query stopped")
	// ErrUnknownJob is returned for a job name nobody registered.
	ErrUnknownJob = errors.New("engine: unknown job")
)
