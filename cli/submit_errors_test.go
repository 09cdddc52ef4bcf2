package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/internal/dirsnap"
)

// submitNoPanic runs `gostream submit` in this process and turns a panic
// into a test failure naming the arguments.
func submitNoPanic(t *testing.T, args ...string) (err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("submit %v panicked: %v", args, p)
		}
	}()
	_, _, err = runCLI(t, "", append([]string{"submit", "wordcount", "--quiet"}, args...)...)
	return err
}

// TestSubmitStartErrors runs submit into each error a user can meet as it
// starts: bad --brokers, a checkpoint of another query, in use, or
// damaged in its metadata, batch log or state. Each is an error naming the
// cause and what to do, never a panic (newRuntime's deferred close used
// to dereference a nil runtime on every such error), and a refused
// checkpoint is left exactly as it was.
func TestSubmitStartErrors(t *testing.T) {
	dir := t.TempDir()
	base, other := filepath.Join(dir, "base"), filepath.Join(dir, "other")
	if err := submitNoPanic(t, "--checkpoint", base, "--sink", "jsonl:-"); err != nil {
		t.Fatal(err)
	}
	if err := submitNoPanic(t, "--checkpoint", other, "--topic", "other", "--sink", "jsonl:-"); err != nil {
		t.Fatal(err)
	}
	swap := func(part string) func(cp string) error {
		return func(cp string) error {
			if err := os.RemoveAll(filepath.Join(cp, part)); err != nil {
				return err
			}
			return exec.Command("cp", "-a", filepath.Join(other, part), filepath.Join(cp, part)).Run()
		}
	}
	cases := []struct {
		name   string
		damage func(cp string) error
		args   []string
		want   string // a regular expression
	}{
		{"brokers without a port", nil, []string{"--brokers", "127.0.0.1", "--trigger", "once"}, `kafka: broker "127.0.0.1" is not host:port`},
		{"brokers x:y:z", nil, []string{"--brokers", "x:y:z", "--trigger", "once"}, `kafka: broker "x:y:z" is not host:port`},
		{"checkpoint of another topic", nil, []string{"--topic", "other"},
			`belongs to a different query: its plan has "read topic logs" where this query has "read topic other"; nothing was changed: start this query with a new checkpoint directory`},
		{"metadata damaged", func(cp string) error { return os.WriteFile(filepath.Join(cp, "metadata"), []byte("{"), 0o644) }, nil,
			`checkpoint .* is damaged: metadata: unexpected end of JSON input \(nothing was changed; restore it from a backup or start the query with a new checkpoint directory\)`},
		{"metadata with 3 shuffle partitions", func(cp string) error {
			b, err := os.ReadFile(filepath.Join(cp, "metadata"))
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(cp, "metadata"), bytes.Replace(b, []byte(`"shufflePartitions": 4`), []byte(`"shufflePartitions": 3`), 1), 0o644)
		}, nil, `batches was written for checkpoint .* 4 shuffle partitions\), its metadata is of checkpoint .* 3 shuffle partitions\) \(they differ in shuffle partitions\)`},
		{"batch log cut in its first batch", func(cp string) error {
			b, err := os.ReadFile(filepath.Join(cp, "batches"))
			if err != nil {
				return err
			}
			return os.Truncate(filepath.Join(cp, "batches"), int64(bytes.IndexByte(b, '\n')+20)) // the header, and part of "offsets 0"
		}, nil, `is damaged: state/: partition \d is at batch 0 but batch -1 is the last committed`},
		{"batch log of the query on topic other", swap("batches"), nil, `batches was written for checkpoint .* \(read topic other`},
		{"state/ deleted", func(cp string) error { return os.RemoveAll(filepath.Join(cp, "state")) }, nil,
			`is damaged: state/: missing or empty, while the batch log holds batches 0 to 0`},
		{"state/ of the query on topic other", swap("state"), nil, `state/ was written for checkpoint .* \(read topic other`},
		{"Pebble manifest damaged", func(cp string) error {
			m, err := filepath.Glob(filepath.Join(cp, "state", "MANIFEST-*"))
			if err != nil || len(m) == 0 {
				return fmt.Errorf("no manifest: %v", err)
			}
			return os.Truncate(m[len(m)-1], 10)
		}, nil, `is damaged: state/: state: .*manifest`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := filepath.Join(t.TempDir(), "cp")
			if out, err := exec.Command("cp", "-a", base, cp).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if c.damage != nil {
				if err := c.damage(cp); err != nil {
					t.Fatal(err)
				}
			}
			before, err := dirsnap.Take(cp)
			if err != nil {
				t.Fatal(err)
			}
			err = submitNoPanic(t, append([]string{"--checkpoint", cp, "--sink", "jsonl:-"}, c.args...)...)
			if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
				t.Fatalf("err = %v, want it to match %q", err, c.want)
			}
			after, err := dirsnap.Take(cp)
			if err != nil {
				t.Fatal(err)
			}
			if d := before.Diff(after); len(d) > 0 {
				t.Fatalf("refused (%v), but the checkpoint changed:\n%s", err, strings.Join(d, "\n"))
			}
		})
	}
}

// TestSubmitCheckpointInUse starts a second query on the checkpoint of a
// running one: it is refused, naming the process that holds it.
func TestSubmitCheckpointInUse(t *testing.T) {
	cp := filepath.Join(t.TempDir(), "cp")
	// The first query counts standard input until it closes.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old })
	progress := filepath.Join(t.TempDir(), "progress.jsonl")
	cmd := newRootCmd("gostream")
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"submit", "wordcount", "--input", "-", "--checkpoint", cp, "--sink", "jsonl:-", "--trigger", "50ms",
		"--quiet", "--progress-json", progress})
	first := make(chan error, 1)
	go func() { first <- cmd.ExecuteContext(context.Background()) }()
	if _, err := w.WriteString("a b\n"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(progress); bytes.Contains(b, []byte(`"batchId"`)) {
			break // the first query runs
		}
		if time.Now().After(deadline) {
			t.Fatal("the first query reported no batch in a minute")
		}
	}
	err = submitNoPanic(t, "--checkpoint", cp)
	want := fmt.Sprintf("checkpoint %s is in use by pid %d (this process: another query); stop that query first, or give this one another checkpoint directory", cp, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("second query: %v, want %q", err, want)
	}
	w.Close()
	if err := <-first; err != nil {
		t.Fatalf("first query: %v", err)
	}
}
