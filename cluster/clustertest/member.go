package clustertest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Join prepares worker name on the next free address (127.0.1.i for the
// i-th worker) and starts it with --join naming the workers running now;
// it does not wait for it to join (WaitLeader does).
func (c *Cluster) Join(t testing.TB, name string) *Worker {
	t.Helper()
	w := c.Joiner(t, name)
	w.Start(t)
	return w
}

// Joiner prepares worker name like Join, without starting it: set its
// Addr to try a taken one.
func (c *Cluster) Joiner(t testing.TB, name string) *Worker {
	t.Helper()
	addrs, err := workerAddrs(len(c.Workers)+1, 1)
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	var running []string
	for _, w := range c.Workers {
		if w.Running() {
			running = append(running, w.Addr)
		}
	}
	dir := t.TempDir()
	w := &Worker{Name: name, Addr: addrs[0], bin: c.Bin, join: strings.Join(running, ","),
		DataDir: filepath.Join(dir, name, "data"), LogPath: filepath.Join(dir, name+".log")}
	c.Workers = append(c.Workers, w)
	return w
}

// SetJoin replaces the --join the worker starts with the first time.
func (w *Worker) SetJoin(addrs ...string) { w.join = strings.Join(addrs, ",") }

// groupArgs are the worker's --peers, or its --join on its first start.
func (w *Worker) groupArgs() []string {
	if w.join == "" {
		return []string{"--peers", w.peers}
	}
	if _, err := os.Stat(filepath.Join(w.DataDir, "cluster.json")); err == nil {
		return nil // joined already: it rejoins with its log
	}
	return []string{"--join", w.join}
}

// Remove runs `gostream cluster remove name` against the cluster and
// returns its combined output and exit error.
func (c *Cluster) Remove(t testing.TB, name string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := c.Command(ctx, "cluster", "remove", name, "--master", c.Master()).CombinedOutput()
	t.Logf("gostream cluster remove %s:\n%s", name, out)
	return string(out), err
}

// WaitExit waits for the worker's process to exit by itself, within
// timeout, and returns its log and its exit error.
func (w *Worker) WaitExit(t testing.TB, timeout time.Duration) (string, error) {
	t.Helper()
	if w.cmd == nil {
		t.Fatalf("clustertest: %s was never started", w.Name)
	}
	select {
	case <-w.done:
	case <-time.After(timeout):
		t.Fatalf("clustertest: %s still running after %v", w.Name, timeout)
	}
	log, err := os.ReadFile(w.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(log), w.err
}
