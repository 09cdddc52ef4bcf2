package engine

import (
	"errors"
	"fmt"
	"hash/crc32"
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
	// Each state is checked as this process sees it and as a restart does.
	recover := func() recovery {
		t.Helper()
		rec, err := c.recover()
		if err != nil {
			t.Fatal(err)
		}
		again, err := openCheckpoint(dir, "wc", "fp1", 4)
		if err != nil {
			t.Fatal(err)
		}
		defer again.close()
		if rec2, err := again.recover(); err != nil || rec2.lastCommitted != rec.lastCommitted ||
			(rec2.rerun == nil) != (rec.rerun == nil) || rec2.end.String() != rec.end.String() {
			t.Fatalf("reopened: %+v, %v; this process: %+v", rec2, err, rec)
		}
		return rec
	}
	if rec := recover(); rec.lastCommitted != -1 || rec.rerun != nil {
		t.Fatalf("new checkpoint: %+v", rec)
	}
	e0 := offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{"logs": {0: 0}}, End: kafkasrc.Offsets{"logs": {0: 10}}}
	if err := c.writeOffsets(e0); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.rerun == nil || rec.rerun.BatchID != 0 || rec.end != nil {
		t.Fatalf("planned, not committed: %+v", rec)
	}
	if err := c.writeCommit(0); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.lastCommitted != 0 || rec.rerun != nil || rec.end.String() != e0.End.String() {
		t.Fatalf("committed: %+v", rec)
	}
	e1 := offsetEntry{BatchID: 1, Start: e0.End, End: kafkasrc.Offsets{"logs": {0: 25}}}
	if err := c.writeOffsets(e1); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.lastCommitted != 0 || rec.rerun.BatchID != 1 || rec.end.String() != e0.End.String() {
		t.Fatalf("re-run batch 1: %+v", rec)
	}
	// Out of order: the log refuses and stays as it was.
	for _, bad := range []error{c.writeOffsets(offsetEntry{BatchID: 2, Start: e1.End, End: e1.End}), c.writeCommit(0), c.writeCommit(2)} {
		if !errors.Is(bad, ErrCheckpoint) {
			t.Fatalf("out-of-order entry: %v, want ErrCheckpoint", bad)
		}
	}
	recover()
	// "commit N" and "offsets N+1" in one append: both or, out of order, neither.
	e2 := offsetEntry{BatchID: 2, Start: e1.End, End: kafkasrc.Offsets{"logs": {0: 40}}}
	if err := c.writeCommitAndOffsets(0, e2); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("commit 0 again with offsets 2: %v, want ErrCheckpoint", err)
	}
	if err := c.writeCommitAndOffsets(1, offsetEntry{BatchID: 3, Start: e1.End, End: e1.End}); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("commit 1 with offsets 3: %v, want ErrCheckpoint", err)
	}
	if rec := recover(); rec.lastCommitted != 0 || rec.rerun.BatchID != 1 {
		t.Fatalf("after refused appends: %+v, want batch 1 to re-run", rec)
	}
	if err := c.writeCommitAndOffsets(1, e2); err != nil {
		t.Fatal(err)
	}
	if rec := recover(); rec.lastCommitted != 1 || rec.rerun == nil || rec.rerun.BatchID != 2 || rec.end.String() != e1.End.String() {
		t.Fatalf("commit 1 with offsets 2: %+v, want batch 1 committed and batch 2 to re-run", rec)
	}
	// Reopening keeps the identity and the shuffle partitions of the first start.
	c2, err := openCheckpoint(dir, "wc", "fp1", 9)
	if err != nil || c2.meta.ShufflePartitions != 4 || c2.meta.ID != c.meta.ID {
		t.Fatalf("reopen: %+v %v", c2.meta, err)
	}
	c2.close()
	c.close()
}

// TestCheckpointTornAppend cuts the last entry at every byte, as a crash in
// the middle of its write would: the checkpoint opens as if the entry had
// never been written.
func TestCheckpointTornAppend(t *testing.T) {
	dir := t.TempDir()
	c, err := openCheckpoint(dir, "wc", "fp", 1)
	if err != nil {
		t.Fatal(err)
	}
	e0 := offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{"logs": {0: 0}}, End: kafkasrc.Offsets{"logs": {0: 10}}}
	check(t, c.writeOffsets(e0))
	check(t, c.writeCommit(0))
	check(t, c.close())
	path := filepath.Join(dir, batchLogName)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lastStart := strings.LastIndex(strings.TrimSuffix(string(whole), "\n"), "\n") + 1
	for cut := lastStart; cut < len(whole); cut++ {
		torn := append([]byte(nil), whole[:cut]...)
		if cut > lastStart+12 {
			torn[cut-1] ^= 0x20 // a damaged byte in the torn entry
		}
		check(t, os.WriteFile(path, torn, 0o644))
		c, err := openCheckpoint(dir, "wc", "fp", 1)
		if err != nil {
			t.Fatalf("cut at %d of %d: %v", cut, len(whole), err)
		}
		if rec, err := c.recover(); err != nil || rec.rerun == nil || rec.rerun.BatchID != 0 || rec.lastCommitted != -1 {
			t.Fatalf("cut at %d of %d: %+v, %v; want batch 0 to re-run", cut, len(whole), rec, err)
		}
		check(t, c.writeCommit(0)) // appends after the cut
		check(t, c.close())
		if got, _ := os.ReadFile(path); string(got) != string(whole) {
			t.Fatalf("cut at %d: the log after the re-run commit is %q, want %q", cut, got, whole)
		}
	}
}

// TestCheckpointCompacts writes batches until the log is rewritten: it
// keeps the last retainBatches batches and goes on.
func TestCheckpointCompacts(t *testing.T) {
	dir := t.TempDir()
	c, err := openCheckpoint(dir, "wc", "fp", 1)
	if err != nil {
		t.Fatal(err)
	}
	end := kafkasrc.Offsets{"logs": {0: 0}}
	const batches = compactAfter + 10
	for id := range int64(batches) {
		next := kafkasrc.Offsets{"logs": {0: 10 * (id + 1)}}
		check(t, c.writeOffsets(offsetEntry{BatchID: id, Start: end, End: next}))
		check(t, c.writeCommit(id))
		end = next
	}
	check(t, c.close())
	c, err = openCheckpoint(dir, "wc", "fp", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if n := len(c.log.ents); n > 2*(compactAfter-retainBatches+10) || c.log.ents[0].batchID() < batches-compactAfter {
		t.Fatalf("after %d batches the log holds %d entries from batch %d", batches, n, c.log.ents[0].batchID())
	}
	if rec, err := c.recover(); err != nil || rec.lastCommitted != batches-1 || rec.end.String() != end.String() {
		t.Fatalf("after compaction: %+v, %v", rec, err)
	}
}

// TestCheckpointConvertsFormat1 opens a checkpoint written with one file
// per log entry, as gostream did before: it is converted, and resumes.
func TestCheckpointConvertsFormat1(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		check(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		check(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	write("metadata", `{"format":1,"id":"abc","name":"wc","planFingerprint":"fp","shufflePartitions":3}`)
	write("offsets/6", "v1\n"+`{"batchId":6,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":5}}}`)
	write("commits/6", "v1\n"+`{"nextBatchWatermarkMs":0}`)
	write("offsets/7", "v1\n"+`{"batchId":7,"batchTimestampMs":2,"start":{"logs":{"0":5}},"end":{"logs":{"0":9}}}`)
	c, err := openCheckpoint(dir, "wc", "fp", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	rec, err := c.recover()
	if err != nil || rec.lastCommitted != 6 || rec.rerun == nil || rec.rerun.BatchID != 7 || rec.end.String() != `{"logs":{"0":5}}` {
		t.Fatalf("converted: %+v, %v; want batch 7 to re-run after 6", rec, err)
	}
	if c.meta.Format != checkpointFormat || c.meta.ShufflePartitions != 3 || c.meta.ID != "abc" {
		t.Fatalf("converted metadata: %+v", c.meta)
	}
	for _, old := range []string{"offsets", "commits"} {
		if _, err := os.Stat(filepath.Join(dir, old)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s/ left after the conversion: %v", old, err)
		}
	}
	check(t, c.writeCommit(7))
}

func TestCheckpointRefusesOtherQueryAndDamage(t *testing.T) {
	dir := t.TempDir()
	c, err := openCheckpoint(dir, "wc", "fp1", 4)
	if err != nil {
		t.Fatal(err)
	}
	e := offsetEntry{BatchID: 0, Start: kafkasrc.Offsets{}, End: kafkasrc.Offsets{}}
	check(t, c.writeOffsets(e))
	check(t, c.writeCommit(0))
	check(t, c.close())
	line := func(json string) string { return string(appendLine(nil, mustEntry(t, json))) }
	ok := line(`{"offsets":{"batchId":0,"batchTimestampMs":1,"start":{},"end":{}}}`)
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
	log := filepath.Join(dir, batchLogName)
	cases := []struct {
		name   string
		damage func()
		query  string
		want   string
	}{
		{"different plan", func() {}, "fp2", "different query"},
		{"different name", func() {}, "", "different query"},
		{"negative offset", func() {
			body := `{"offsets":{"batchId":0,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":-5}}}}`
			os.WriteFile(log, []byte(sumLine(body)+line(`{"commit":0}`)), 0o644)
		}, "fp1", "damaged"},
		{"damaged entry", func() {
			os.WriteFile(log, []byte(strings.Replace(ok, `"batchId":0`, `"batchId":1`, 1)+line(`{"commit":0}`)), 0o644)
		}, "fp1", "damaged"},
		{"commit before offsets", func() { os.WriteFile(log, []byte(line(`{"commit":0}`)+ok), 0o644) }, "fp1", "damaged"},
		{"planned twice", func() { os.WriteFile(log, []byte(ok+ok), 0o644) }, "fp1", "damaged"},
		{"missing log", func() { os.Remove(log) }, "fp1", "damaged"},
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
				c.close()
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

func mustEntry(t *testing.T, body string) logEntry {
	t.Helper()
	e, err := parseLogLine([]byte(strings.TrimSuffix(sumLine(body), "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// sumLine returns the log line of a JSON body, with its checksum.
func sumLine(body string) string {
	return fmt.Sprintf("%08x %s\n", crc32.Checksum([]byte(body), castagnoli), body)
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
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

func FuzzParseBatchLog(f *testing.F) {
	f.Add([]byte(sumLine(`{"offsets":{"batchId":0,"batchTimestampMs":1,"start":{"logs":{"0":0}},"end":{"logs":{"0":5}}}}`) + sumLine(`{"commit":0}`)))
	f.Add([]byte("00000000 {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ents, good, err := parseBatchLog(data)
		if err != nil {
			return
		}
		if good > len(data) {
			t.Fatalf("intact prefix %d of %d bytes", good, len(data))
		}
		for i, e := range ents {
			if (e.Offsets == nil) == (e.Commit == nil) || e.Offsets != nil && (e.Offsets.Start == nil || e.Offsets.End == nil) {
				t.Fatalf("entry %d accepted: %+v", i, e)
			}
		}
	})
}
