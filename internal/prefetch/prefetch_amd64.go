package prefetch

import "unsafe"

// Line asks for the cache line holding p (PREFETCHT0).
//
//go:noescape
func Line(p unsafe.Pointer)

// Slots asks for the slots of a hash table at base, 1<<shift bytes each,
// that hashes pick: slot h&mask for each h in hashes.
//
//go:noescape
func Slots(base unsafe.Pointer, hashes []uint64, mask uint64, shift uint)
