//go:build !linux

package engine

import "io"

// growPipe leaves pipes as they are outside Linux.
func growPipe(io.Writer) {}
