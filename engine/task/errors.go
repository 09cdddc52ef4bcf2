package task

import "errors"

// ErrPanic reports a task that panicked (Recover): a bug, or a panic
// outside a registered function. The task fails with it, not the process.
var ErrPanic = errors.New("task: panic")
