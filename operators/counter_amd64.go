package operators

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

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
