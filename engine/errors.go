package engine

import (
	"errors"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/internal/registry"
)

var (
	// ErrAnalysis is returned by Start for a query that cannot run as built:
	// an unknown column, a bad option, an output mode the query does not allow.
	ErrAnalysis = errors.New("engine: invalid query")
	// ErrCheckpoint is returned when a checkpoint directory is damaged or
	// belongs to a different query. Nothing in it is changed.
	ErrCheckpoint = errors.New("engine: checkpoint")
	// ErrStopped is returned by calls on a query that has stopped.
	ErrStopped = errors.New("engine: query stopped")
	// ErrUnknownJob is returned for a job name nobody registered, or two
	// jobs registered.
	ErrUnknownJob = errors.New("engine: unknown job")
	// ErrInvalidUDF is returned by RegisterUDF for a function it cannot
	// call: a type it does not support, a second result that is not an
	// error.
	ErrInvalidUDF = errors.New("engine: invalid UDF")
	// ErrPanic is wrapped by the error of a batch whose task panicked (a
	// UDF's panic is an operators.FuncError instead).
	ErrPanic = task.ErrPanic
	// ErrNoColumn, ErrNull and ErrColumnType are returned by Row's typed
	// getters for a column the row lacks, a null value and a value of
	// another type.
	ErrNoColumn   = errors.New("engine: no column")
	ErrNull       = errors.New("engine: null value")
	ErrColumnType = errors.New("engine: column of another type")
	// ErrDuplicate is wrapped by the error of a second registration of a
	// job or function name.
	ErrDuplicate = registry.ErrDuplicate
)
