package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gostream/gostream/kafkasrc"
)

func TestCheckpointLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cp")
	c, err := openCheckpoint(dir, "wc", "fp1", 4)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.recover()
	if err != nil || rec.lastCommitted != -1 || rec.rerun != nil {
		t.Fatalf("new checkpoint: %+v %v", rec, err)
	}
	e0 := offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{"logs": {0: 0}}, End: kafkasrc.Offsets{"logs": {0: 10}}}
	if err := c.writeOffsets(e0); err != nil {
		t.Fatal(err)
	}
	if rec, _ := c.recover(); rec.rerun == nil || rec.rerun.BatchID != 0 || rec.end != nil {
		t.Fatalf("planned, not committed: %+v", rec)
	}
	if err := c.writeCommit(0); err != nil {
		t.Fatal(err)
	}
	e1 := offsetEntry{BatchID: 1, Start: e0.End, End: kafkasrc.Offsets{"logs": {0: 25}}}
	if err := c.writeOffsets(e1); err != nil {
		t.Fatal(err)
	}
	rec, err = c.recover()
	if err != nil || rec.lastCommitted != 0 || rec.rerun.BatchID != 1 || rec.end.String() != e0.End.String() {
		t.Fatalf("re-run batch 1: %+v %v", rec, err)
	}
	// Reopening keeps the identity and the shuffle partitions of the first start.
	c2, err := openCheckpoint(dir, "wc", "fp1", 9)
	if err != nil || c2.meta.ShufflePartitions != 4 || c2.meta.ID != c.meta.ID {
		t.Fatalf("reopen: %+v %v", c2.meta, err)
	}
}

func TestCheckpointRefusesOtherQueryAndDamage(t *testing.T) {
	dir := t.TempDir()
	c, err := openCheckpoint(dir, "wc", "fp1", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.writeOffsets(offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{}, End: kafkasrc.Offsets{}}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				b, _ := os.ReadFile(p)
				m[p] = string(b)
			}
			return nil
		})
		return m
	}
	cases := []struct {
		name   string
		damage func()
		query  string
		want   string
	}{
		{"different plan", func() {}, "fp2", "different query"},
		{"different name", func() {}, "", "different query"},
		{"negative offset", func() {
			os.WriteFile(filepath.Join(dir, "offsets", "0"), []byte(`v1`+"\n"+`{"batchId":0,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":-5}}}`), 0o644)
		}, "fp1", "damaged"},
		{"damaged offsets", func() { os.WriteFile(filepath.Join(dir, "offsets", "0"), []byte("v1\n{\"batchId\":"), 0o644) }, "fp1", "damaged"},
		{"stray file", func() { os.WriteFile(filepath.Join(dir, "commits", "junk"), nil, 0o644) }, "fp1", "damaged"},
		{"damaged metadata", func() { os.WriteFile(filepath.Join(dir, "metadata"), []byte("{"), 0o644) }, "fp1", "damaged"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage()
			before := snapshot()
			name := "wc"
			if tc.query == "" {
				name, tc.query = "other", "fp1"
			}
			c, err := openCheckpoint(dir, name, tc.query, 4)
			if err == nil {
				_, err = c.recover()
			}
			if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrCheckpoint mentioning %q", err, tc.want)
			}
			after := snapshot()
			for p, b := range before {
				if after[p] != b {
					t.Fatalf("%s was changed", p)
				}
			}
		})
	}
}

func TestCheckpointRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	_, err := openCheckpoint(dir, "wc", "fp", 4)
	if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "not a gostream checkpoint") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzReadOffsets(f *testing.F) {
	f.Add([]byte(`v1` + "\n" + `{"batchId":0,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":5}}}`))
	f.Add([]byte("v1\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		c, err := openCheckpoint(dir, "q", "fp", 1)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "offsets", "0"), data, 0o644)
		e, err := c.readOffsets(0)
		if err == nil && (e.End == nil || e.Start == nil) {
			t.Fatal("accepted an entry without offsets")
		}
	})
}
