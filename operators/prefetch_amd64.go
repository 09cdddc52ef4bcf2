package operators

import "unsafe"

// prefetchSlots asks the CPU to start loading the slots of the first n
// hashes in hs (slot i at slots + 32*(hs[i]&mask)) into its caches, without
// waiting for them.
//
//go:noescape
func prefetchSlots(slots unsafe.Pointer, hs *[probeBatch]uint64, n int, mask uint64)

// The assembly scales slot indices by 32.
const _ = -uint(unsafe.Sizeof(counterSlot{}) ^ 32)
