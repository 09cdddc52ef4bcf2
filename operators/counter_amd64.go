package operators

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// prefetchSlots asks the CPU to start loading the slots of the first n
// hashes in hs (slot i at slots + 32*(hs[i]&mask)) into its caches, without
// waiting for them.
//
//go:noescape
func prefetchSlots(slots unsafe.Pointer, hs *[probeBatch]uint64, n int, mask uint64)

// The assembly scales slot indices by 32.
const _ = -uint(unsafe.Sizeof(counterSlot{}) ^ 32)

// sepMasksAVX2 is sepMasks with AVX2 for the n >= 1 bytes at p. For n < 64
// it loads the 64 bytes from p, or those ending at p+n when those would
// cross into the next page: bytes past the slice but in a page it occupies,
// which a load cannot fault on; their bits are cleared.
//
//go:noescape
func sepMasksAVX2(p *byte, n int, sep byte) (seps, high uint64)

var hasAVX2 = cpu.X86.HasAVX2

// sepMasks returns, for the first 64 bytes of b (all of b if shorter; b is
// not empty), the bit i set where b[i] is sep and, in high, where b[i] is
// not ASCII.
func sepMasks(b []byte, sep byte) (seps, high uint64) {
	if hasAVX2 {
		return sepMasksAVX2(unsafe.SliceData(b), len(b), sep)
	}
	return sepMasksSWAR(b, sep)
}
