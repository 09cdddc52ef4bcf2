package task

import "sync"

// freeList keeps values for reuse. It holds as many as were in use at once.
// Not a sync.Pool, which drops them at every garbage collection: reused
// aggregators keep their tables' size instead of growing them again (and
// feeding the GC) every batch.
type freeList[T any] struct {
	mu   sync.Mutex
	free []T
}

// get takes a value put before, if any.
func (l *freeList[T]) get() (v T, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free); n > 0 {
		v, l.free = l.free[n-1], l.free[:n-1]
		return v, true
	}
	return v, false
}

// put keeps v for a later get.
func (l *freeList[T]) put(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free = append(l.free, v)
}
