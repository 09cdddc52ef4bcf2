//go:build !race

package engine_test

// raceEnabled reports whether the tests run under the race detector; the
// gostream binary they run is then built with it too.
const raceEnabled = false
