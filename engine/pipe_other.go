//go:build !linux

package engine

// growPipe leaves pipes as they are outside Linux.
func growPipe(any) {}
