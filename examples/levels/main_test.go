package main

import (
	"encoding/json"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gostream/gostream/examples/wordcount"
)

// TestUserBinary builds this program, a user's binary with a job of its
// own, and runs `submit levels` on the embedded broker over the built-in
// sample log, as the package doc says; the built-in jobs are there too.
func TestUserBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "levels")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "submit", "levels", "--sink", "jsonl:-", "--quiet").Output()
	if err != nil {
		t.Fatalf("levels submit levels: %v\n%s", err, stderrOf(err))
	}
	got := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var rec struct {
			Level string `json:"level"`
			Count int64  `json:"count"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		got[rec.Level] = rec.Count
	}
	want := map[string]int64{}
	for _, line := range strings.Split(string(wordcount.Sample), "\n") {
		if f := strings.Split(line, " "); len(f) > 1 && slices.Contains([]string{"DEBUG", "INFO", "WARN", "ERROR"}, f[1]) {
			want[f[1]]++
		}
	}
	if len(want) == 0 || !maps.Equal(got, want) {
		t.Fatalf("levels of the sample log: %v, want %v", got, want)
	}

	_, err = exec.Command(bin, "submit", "nosuch").Output()
	if msg := stderrOf(err); err == nil || !strings.HasPrefix(msg, "levels: ") || !strings.Contains(msg, "[levels, wordcount, wordcount-words]") {
		t.Fatalf("submit of an unknown job: %v, stderr %q; want an error listing levels and the built-in jobs", err, msg)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
