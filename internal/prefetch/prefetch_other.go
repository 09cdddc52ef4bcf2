//go:build !amd64

package prefetch

import "unsafe"

// Line asks for the cache line holding p; it does nothing here.
func Line(p unsafe.Pointer) {}

// Slots asks for the slots of a hash table at base, 1<<shift bytes each,
// that hashes pick; it does nothing here.
func Slots(base unsafe.Pointer, hashes []uint64, mask uint64, shift uint) {}
