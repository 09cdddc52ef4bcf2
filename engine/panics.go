package engine

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/gostream/gostream/operators"
)

// catch, deferred at the top of a task's goroutine (a map or reduce task,
// the sink's AddBatch), turns a panic in the task into the task's error:
// the batch fails, nothing of it is committed, and the query ends with the
// error, which names the query, the task and, for a UDF, the function
// (operators.FuncError). The process goes on. The stack is logged.
func (rt *queryRuntime) catch(task string, err *error) {
	p := recover()
	if p == nil {
		return
	}
	var fe *operators.FuncError
	if e, ok := p.(error); ok && errors.As(e, &fe) {
		if fe.Stack != nil {
			rt.log.Error("UDF panicked", "function", fe.Func, "task", task, "err", fe.Err, "stack", string(fe.Stack))
		}
		*err = fmt.Errorf("query %q, %s: %w", rt.query.Name, task, fe)
		return
	}
	rt.log.Error("task panicked", "task", task, "panic", p, "stack", string(debug.Stack()))
	*err = fmt.Errorf("query %q, %s: %w: %v", rt.query.Name, task, ErrPanic, p)
}

// report hands a batch's progress to a listener. A listener that panics
// is logged and the query goes on, as Spark's listener bus does: the batch
// has committed.
func (rt *queryRuntime) report(l func(Progress), p Progress) {
	defer func() {
		if r := recover(); r != nil {
			rt.log.Error("progress listener panicked", "batch", p.BatchID, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	l(p)
}
