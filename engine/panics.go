package engine

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/operators"
)

// catch, deferred at the top of a task's goroutine (a map or reduce task,
// the sink's AddBatch), turns a panic in the task into the task's error:
// the batch fails, nothing of it is committed, and the query ends with the
// error, which names the query, the task and, for a UDF, the function
// (task.PanicError). The process goes on. A panic's stack is logged.
func (rt *queryRuntime) catch(name string, err *error) {
	p := recover()
	if p == nil {
		return
	}
	e := task.PanicError(p)
	stack := debug.Stack()
	if fe := (*operators.FuncError)(nil); errors.As(e, &fe) {
		stack = fe.Stack // nil for an error the function returned
	}
	if stack != nil {
		rt.log.Error("task panicked", "task", name, "err", e, "stack", string(stack))
	}
	*err = fmt.Errorf("query %q, %s: %w", rt.query.Name, name, e)
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
