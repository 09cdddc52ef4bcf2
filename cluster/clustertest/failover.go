package clustertest

import (
	"syscall"
	"testing"
)

// Pause stops the worker's process with SIGSTOP, as a hung machine or a
// long pause would: its connections stay open and nothing answers on them
// until Resume. A worker still paused when the test ends is resumed
// first, so that it can stop.
func (w *Worker) Pause(t testing.TB) {
	t.Helper()
	if !w.Running() {
		t.Fatalf("clustertest: %s is not running", w.Name)
	}
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("clustertest: pausing %s: %v", w.Name, err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Signal(syscall.SIGCONT) })
}

// Resume continues a paused worker with SIGCONT.
func (w *Worker) Resume(t testing.TB) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("clustertest: resuming %s: %v", w.Name, err)
	}
}
