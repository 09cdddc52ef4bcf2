package engine_test

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestIntegrationDiskFull runs `gostream submit` on real Kafka with its
// checkpoint on an 4 MiB tmpfs, which the query's state fills mid-run: the
// query stops with an error saying so and what to do, never a panic. Once
// space is freed (the tmpfs grown), a restart counts every word exactly
// once. It needs root, to mount the tmpfs.
func TestIntegrationDiskFull(t *testing.T) {
	c, topic := realKafka(t)
	if os.Geteuid() != 0 {
		t.Fatal("TestIntegrationDiskFull needs root: it mounts a small tmpfs to fill (run the integration tests as root, as the CI does)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -t tmpfs on %s: %v: %s", mnt, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	// Ten words of its own per line make a state larger than the tmpfs;
	// "a" and "b" on every line count how often a batch was applied.
	lines := make([]string, 60_000)
	for i := range lines {
		var b strings.Builder
		b.WriteString("a b")
		for j := range 10 {
			fmt.Fprintf(&b, " w%d_%d", i, j)
		}
		lines[i] = b.String()
	}
	produceTo(t, c.Addrs(), topic, bytesOf(lines)...)

	bin := buildGostream(t)
	out := filepath.Join(t.TempDir(), "counts.jsonl")
	state := filepath.Join(mnt, "cp", "state")
	args := []string{"submit", "wordcount", "--brokers", c.BootstrapServers(), "--topic", topic,
		"--checkpoint", filepath.Join(mnt, "cp"), "--starting-offsets", "earliest", "--max-offsets-per-trigger", "5000",
		"--output-mode", "update", "--sink", "jsonl:" + out, "--trigger", "available-now", "--quiet"}
	stderr, err := exec.Command(bin, args...).CombinedOutput()
	t.Logf("first run, %s full:\n%s", mnt, stderr)
	if err == nil {
		t.Fatal("the first run ended without an error on a full disk")
	}
	for _, want := range []string{"no space left on device writing state to " + state, "nothing was committed for batch"} {
		if !strings.Contains(string(stderr), want) {
			t.Errorf("the first run's error does not say %q", want)
		}
	}
	if strings.Contains(string(stderr), "panic") || strings.Contains(string(stderr), "goroutine ") {
		t.Error("the first run panicked")
	}

	if out, err := exec.Command("mount", "-o", "remount,size=256m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v: %s", err, out)
	}
	if stderr, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("restart after freeing space: %v\n%s", err, stderr)
	}
	sameCounts(t, latestCounts(t, out), expected(lines))
}

// latestCounts reads an update-mode jsonl output and returns each word's
// last count.
func latestCounts(t *testing.T, path string) map[string]int64 {
	t.Helper()
	batches, _ := readBatches(t, path)
	counts := map[string]int64{}
	for _, id := range slices.Sorted(maps.Keys(batches)) {
		maps.Copy(counts, batches[id])
	}
	return counts
}
