//go:build !amd64

package operators

import "unsafe"

// prefetchSlots is a no-op where no prefetch instruction is wired in: the
// probes then load their slots as they go.
func prefetchSlots(unsafe.Pointer, *[probeBatch]uint64, int, uint64) {}

// sepMasks returns, for the first 64 bytes of b (all of b if shorter; b is
// not empty), the bit i set where b[i] is sep and, in high, where b[i] is
// not ASCII.
func sepMasks(b []byte, sep byte) (seps, high uint64) { return sepMasksSWAR(b, sep) }
