//go:build !amd64

package prefetch

import "unsafe"

// Line asks for the cache line holding p; it does nothing here.
func Line(p unsafe.Pointer) {}
