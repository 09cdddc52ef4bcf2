package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/dirsnap"
	"github.com/gostream/gostream/kafkasrc"
)

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

func lines(prefix string, n int) []string {
	var ls []string
	for i := range n {
		ls = append(ls, fmt.Sprintf("%s%d common %s", prefix, i%7, prefix))
	}
	return ls
}

// TestCheckpointDamageRefusedUntouched damages a real checkpoint in every
// way the test can think of: each of its files (metadata, batch log,
// Pebble's MANIFEST, OPTIONS, log, sstables and markers) removed,
// truncated to half, emptied or with a byte flipped in the middle; state/
// or the batch log missing; metadata edited; parts of another query's
// checkpoint swapped in. A start on it either refuses it, with ErrCheckpoint
// and every file, directory and mode left exactly as it was, or accepts it
// and counts every word exactly (damage that is what a crash leaves, such
// as a torn last line of the batch log).
func TestCheckpointDamageRefusedUntouched(t *testing.T) {
	first, second, third := lines("a", 90), lines("b", 70), lines("c", 50)
	addrs := embedded(t, first...)
	base := filepath.Join(t.TempDir(), "base")
	// Two runs, so that the state holds an sstable (the first run's log,
	// flushed when the second opens it) as well as a log.
	run := func(addrs []string, topic, dir string) (map[string]int64, error) {
		return countTopic(t, addrs, topic, runOpts{maxOffsets: 40, checkpoint: dir})
	}
	for i, more := range [][]string{nil, second} {
		produce(t, addrs, more...)
		if _, err := run(addrs, "logs", base); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	produce(t, addrs, third...)
	want := expected(first, second, third)

	// The checkpoint of a query on another topic, to swap parts from.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := kafkasrc.StartEmbedded(ctx, "other", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	produceTo(t, o.Addrs(), "other", bytesOf(first)...)
	other := filepath.Join(t.TempDir(), "other")
	if _, err := run(o.Addrs(), "other", other); err != nil {
		t.Fatalf("other query: %v", err)
	}

	type damage struct {
		name string
		do   func(dir string) error
		want string // in the refusal's message; "" if the start may accept it
	}
	var cases []damage
	err = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(base, path)
		cases = append(cases, damage{"remove " + rel, func(dir string) error { return os.Remove(filepath.Join(dir, rel)) }, ""})
		info, _ := d.Info()
		if info.Size() == 0 {
			return nil // a Pebble marker: its name is its content
		}
		cases = append(cases,
			damage{"empty " + rel, func(dir string) error { return os.Truncate(filepath.Join(dir, rel), 0) }, ""},
			damage{"truncate " + rel, func(dir string) error { return os.Truncate(filepath.Join(dir, rel), info.Size()/2) }, ""},
			damage{"flip a byte of " + rel, func(dir string) error {
				p := filepath.Join(dir, rel)
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				b[len(b)/2] ^= 0x10
				return os.WriteFile(p, b, info.Mode())
			}, ""})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	swap := func(part string) func(string) error {
		return func(dir string) error {
			if err := os.RemoveAll(filepath.Join(dir, part)); err != nil {
				return err
			}
			return exec.Command("cp", "-a", filepath.Join(other, part), filepath.Join(dir, part)).Run()
		}
	}
	editMeta := func(from, to string) func(string) error {
		return func(dir string) error {
			p := filepath.Join(dir, "metadata")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			edited := strings.Replace(string(b), from, to, 1)
			if edited == string(b) {
				return fmt.Errorf("no %q in the metadata %s", from, b)
			}
			return os.WriteFile(p, []byte(edited), 0o644)
		}
	}
	cases = append(cases,
		damage{"remove state/", func(dir string) error { return os.RemoveAll(filepath.Join(dir, "state")) }, "state/: missing or empty, while the batch log holds batches"},
		damage{"remove state/ and metadata", func(dir string) error {
			return errors.Join(os.RemoveAll(filepath.Join(dir, "state")), os.Remove(filepath.Join(dir, "metadata")))
		}, "metadata: missing, while the batch log holds batches"},
		damage{"metadata: 3 shuffle partitions", editMeta(`"shufflePartitions": 4`, `"shufflePartitions": 3`), "batches was written for checkpoint"},
		damage{"metadata: 5 shuffle partitions", editMeta(`"shufflePartitions": 4`, `"shufflePartitions": 5`), "they differ in shuffle partitions"},
		damage{"swap in state/ of the query on topic other", swap("state"), `state/ was written for checkpoint .* \(read topic other, 4 shuffle partitions\), its metadata is of checkpoint .* \(read topic logs`},
		damage{"swap in batches of the query on topic other", swap("batches"), `batches was written for checkpoint .* \(read topic other`},
		damage{"swap in metadata of the query on topic other", swap("metadata"), `its plan has "read topic other" where this query has "read topic logs"`},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cp")
			copyDir(t, base, dir)
			if err := c.do(dir); err != nil {
				t.Fatal(err)
			}
			before, err := dirsnap.Take(dir)
			if err != nil {
				t.Fatal(err)
			}
			// A refusal comes from Start, and says nothing was changed;
			// an error of the run does not.
			got, startErr := run(addrs, "logs", dir)
			switch {
			case startErr != nil:
				after, err := dirsnap.Take(dir)
				if err != nil {
					t.Fatal(err)
				}
				if d := before.Diff(after); len(d) > 0 {
					t.Errorf("refused (%v), but the checkpoint was changed:\n%s", startErr, strings.Join(d, "\n"))
				}
				if !errors.Is(startErr, engine.ErrCheckpoint) || !strings.Contains(startErr.Error(), "nothing was changed") {
					t.Errorf("refused with %v, want ErrCheckpoint saying nothing was changed", startErr)
				}
				if c.want != "" && !regexp.MustCompile(c.want).MatchString(startErr.Error()) {
					t.Errorf("refused with %v, want it to match %q", startErr, c.want)
				}
				t.Logf("refused: %v", startErr)
			case c.want != "":
				t.Errorf("accepted, want a refusal matching %q", c.want)
			default:
				sameCounts(t, got, want)
				t.Logf("accepted")
			}
		})
	}
}
