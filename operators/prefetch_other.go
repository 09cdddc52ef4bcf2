//go:build !amd64

package operators

import "unsafe"

// prefetchSlots is a no-op where no prefetch instruction is wired in: the
// probes then load their slots as they go.
func prefetchSlots(unsafe.Pointer, *[probeBatch]uint64, int, uint64) {}
