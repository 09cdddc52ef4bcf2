//go:build !amd64

package operators

// sepMasks returns, for the first 64 bytes of b (all of b if shorter; b is
// not empty), the bit i set where b[i] is sep and, in high, where b[i] is
// not ASCII.
func sepMasks(b []byte, sep byte) (seps, high uint64) { return sepMasksSWAR(b, sep) }
