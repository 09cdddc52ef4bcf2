// Package prefetch asks the CPU to start loading memory into its caches
// before it is read, so that the latency of several cache misses overlaps
// instead of adding up. It changes no memory and never faults; where no
// prefetch instruction is wired in (not amd64), its functions do nothing.
package prefetch
