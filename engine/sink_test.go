package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

var wordSchema = operators.Schema{{Name: "word", Type: planpb.DataType_STRING}, {Name: "count", Type: planpb.DataType_LONG}}

func batchOf(id int64, rows ...operators.Row) *Batch {
	return &Batch{ID: id, Schema: wordSchema, each: eachRow([][]operators.Row{rows})}
}

func wc(word string, n int64) operators.Row {
	return operators.Row{operators.Str(word), operators.Long(n)}
}

func TestConsoleSinkSparkFormat(t *testing.T) {
	var buf bytes.Buffer
	c := &ConsoleSink{W: &buf, NumRows: 20, Truncate: 20}
	err := c.AddBatch(context.Background(), batchOf(3, wc("hello", 2), wc("", 1), wc("a-very-long-word-that-spark-cuts", 7), wc("한국어", 1)))
	if err != nil {
		t.Fatal(err)
	}
	want := "-------------------------------------------\n" +
		"Batch: 3\n" +
		"-------------------------------------------\n" +
		"+--------------------+-----+\n" +
		"|                word|count|\n" +
		"+--------------------+-----+\n" +
		"|               hello|    2|\n" +
		"|                    |    1|\n" +
		"|a-very-long-word-...|    7|\n" +
		"|              한국어|    1|\n" +
		"+--------------------+-----+\n" +
		"\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestConsoleSinkNumRowsAndNoTruncate(t *testing.T) {
	var buf bytes.Buffer
	c := &ConsoleSink{W: &buf, NumRows: 1, Truncate: 0}
	if err := c.AddBatch(context.Background(), batchOf(0, wc("x", 1), wc("y", 2))); err != nil {
		t.Fatal(err)
	}
	want := "+----+-----+\n|word|count|\n+----+-----+\n|x   |1    |\n+----+-----+\nonly showing top 1 row\n\n"
	if !strings.HasSuffix(buf.String(), want) {
		t.Fatalf("got\n%s", buf.String())
	}
}

func TestJSONLSinkReplacesRerunBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s := &JSONLSink{Path: path}
	ctx := context.Background()
	for _, b := range []*Batch{batchOf(0, wc("a", 1)), batchOf(1, wc("a", 2), wc("b\"q", 1))} {
		if err := s.AddBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// A crash after writing batch 1 but before committing it: batch 1 re-runs.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"batch":1,"word":"partial`) // and a torn line
	f.Close()
	s2 := &JSONLSink{Path: path}
	if err := s2.AddBatch(ctx, batchOf(1, wc("a", 2), wc("b\"q", 1))); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	got, _ := os.ReadFile(path)
	want := `{"batch":0,"word":"a","count":1}` + "\n" + `{"batch":1,"word":"a","count":2}` + "\n" + `{"batch":1,"word":"b\"q","count":1}` + "\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestJSONLSinkRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(path, []byte("my notes\n"), 0o644)
	s := &JSONLSink{Path: path}
	if err := s.AddBatch(context.Background(), batchOf(0, wc("a", 1))); err == nil {
		t.Fatal("overwrote a file that is not gostream output")
	}
	if b, _ := os.ReadFile(path); string(b) != "my notes\n" {
		t.Fatalf("file changed: %q", b)
	}
}

// TestJSONLSinkDeviceAndPipe writes to /dev/null and to a FIFO, which
// cannot be cut back to a batch or synced: batches go to them as they come.
func TestJSONLSinkDeviceAndPipe(t *testing.T) {
	ctx := context.Background()
	null := &JSONLSink{Path: os.DevNull}
	for id := range int64(3) {
		if err := null.AddBatch(ctx, batchOf(id, wc("a", id+1))); err != nil {
			t.Fatalf("batch %d to %s: %v", id, os.DevNull, err)
		}
	}
	if err := null.Close(); err != nil {
		t.Fatal(err)
	}

	fifo := filepath.Join(t.TempDir(), "out.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	read := make(chan []byte)
	go func() {
		b, _ := os.ReadFile(fifo) // until the sink closes its end
		read <- b
	}()
	s := &JSONLSink{Path: fifo}
	for _, b := range []*Batch{batchOf(0, wc("a", 1)), batchOf(1, wc("a", 2), wc("b", 1))} {
		if err := s.AddBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"batch":0,"word":"a","count":1}` + "\n" + `{"batch":1,"word":"a","count":2}` + "\n" + `{"batch":1,"word":"b","count":1}` + "\n"
	if got := <-read; string(got) != want {
		t.Fatalf("read from the FIFO\n%s\nwant\n%s", got, want)
	}
}

// FuzzAppendJSONString checks that the jsonl sink's string encoding reads
// back as the same string, whatever control characters, quotes and
// backslashes it holds, and that invalid UTF-8 reads back replaced.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\"b\\c", "\x00\x01\x1f\x7f", "tab\there\r\n", "héllo ✓", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		enc := appendJSONString(nil, operators.ToValidUTF8([]byte(s)))
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encodes to %s, not JSON: %v", s, enc, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); utf8.ValidString(s) && got != want {
			t.Fatalf("%q encodes to %s, which reads back as %q", s, enc, got)
		}
		if string(appendJSONString(nil, s)) != string(appendJSONString(nil, []byte(s))) {
			t.Fatalf("%q: the string and []byte encodings differ", s)
		}
	})
}

// BenchmarkJSONLSink is an update-mode batch of 10,000 changed words written
// to standard output as JSON lines (here io.Discard).
func BenchmarkJSONLSink(b *testing.B) {
	rows := make([]operators.Row, 10_000)
	for i := range rows {
		rows[i] = wc(fmt.Sprintf("word%d", i*7919%100_000), int64(i*31+1))
	}
	s := &JSONLSink{W: io.Discard}
	ctx := context.Background()
	b.ReportAllocs()
	for id := int64(0); b.Loop(); id++ {
		if err := s.AddBatch(ctx, batchOf(id, rows...)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

// writeBatches appends batches first..first+n-1 of rows rows each to path,
// as the jsonl sink writes them, and returns the file's size.
func writeBatches(tb testing.TB, path string, first, n int64, rows int) int64 {
	tb.Helper()
	s := &JSONLSink{Path: path}
	defer s.Close()
	ctx := context.Background()
	batch := make([]operators.Row, rows)
	for id := first; id < first+n; id++ {
		for i := range batch {
			batch[i] = wc(fmt.Sprintf("word%d", (int(id)*rows+i)*7919%1_000_003), id+int64(i))
		}
		if err := s.AddBatch(ctx, batchOf(id, batch...)); err != nil {
			tb.Fatal(err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

// BenchmarkJSONLSinkRestart is a restart that re-runs the last batch (one
// row) of a 256 MiB jsonl output file: the sink opens the file, cuts the
// batch's lines and writes them again.
func BenchmarkJSONLSinkRestart(b *testing.B) {
	path := filepath.Join(b.TempDir(), "out.jsonl")
	const batches = 6400 // of 1,000 rows, about 40 bytes each
	size := writeBatches(b, path, 0, batches, 1000)
	ctx := context.Background()
	for b.Loop() {
		s := &JSONLSink{Path: path}
		if err := s.AddBatch(ctx, batchOf(batches, wc("rerun", 1))); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/1e6, "MB-file")
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// TestJSONLSinkRestartReadsTheTail checks that a restart reads back the
// lines of the batch it re-runs and little more, not the whole file: the
// cost of a restart must not grow with the age of the query.
func TestJSONLSinkRestartReadsTheTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	const batches = 2000
	committed := writeBatches(t, path, 0, batches-1, 50)
	size := writeBatches(t, path, batches-1, 1, 50) // the batch that re-runs
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		batch, keep int64
	}{
		{batches - 1, committed}, // re-run the last batch
		{batches, size},          // a new batch after a clean stop
	} {
		r := &countingReader{r: f}
		keep, err := keptLength(r, size, c.batch)
		if err != nil || keep != c.keep {
			t.Fatalf("batch %d: keptLength = %d, %v; want %d", c.batch, keep, err, c.keep)
		}
		if limit := size - committed + 3*jsonlBlock; r.n > limit {
			t.Fatalf("batch %d: read %d bytes of a %d-byte file to cut %d; want at most %d", c.batch, r.n, size, size-keep, limit)
		}
	}
}

// TestJSONLSinkRestartSkipsTheOldLines re-runs the last batch of a file
// whose first lines are not gostream records: a restart never reads that far
// back, so it cuts and rewrites the batch and leaves the rest alone.
func TestJSONLSinkRestartSkipsTheOldLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	kept := strings.Repeat("not a jsonl record\n", 100) + `{"batch":7,"word":"a","count":1}` + "\n"
	rerun := `{"batch":8,"word":"a","count":2}` + "\n" + `{"batch":8,"word":"b","count":1}` + "\n"
	if err := os.WriteFile(path, []byte(kept+rerun+`{"batch":8,"wo`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &JSONLSink{Path: path}
	if err := s.AddBatch(context.Background(), batchOf(8, wc("a", 2), wc("b", 1))); err != nil {
		t.Fatalf("re-running batch 8: %v", err)
	}
	s.Close()
	if got, _ := os.ReadFile(path); string(got) != kept+rerun {
		t.Fatalf("got\n%s\nwant\n%s", got, kept+rerun)
	}
}

// TestJSONLSinkRerunAfterAnyCrash cuts the output of the batch that re-runs
// (and of the next, which a checkpoint restored from a backup may have
// written) at every byte, as a kill -9 may, and checks that the re-run
// leaves each batch in the file exactly once.
func TestJSONLSinkRerunAfterAnyCrash(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	defer func(b int64) { jsonlBlock = b }(jsonlBlock)
	jsonlBlock = 16 // lines span blocks
	long := strings.Repeat("x", 50)
	batches := []*Batch{
		batchOf(0, wc("a", 1)),
		batchOf(2, wc("a", 2), wc(long, 1)), // batch 1 wrote nothing
		batchOf(3, wc("b", 1), wc(long, 2), wc("c", 1)),
		batchOf(4, wc(long, 3)),
	}
	full := filepath.Join(dir, "full.jsonl")
	var ends []int64 // file size after each batch
	s := &JSONLSink{Path: full}
	for _, b := range batches {
		if err := s.AddBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(full)
		ends = append(ends, st.Size())
	}
	s.Close()
	all, _ := os.ReadFile(full)
	rerun := 2 // batches[2] (id 3) re-runs; batches[3] is a later one
	path := filepath.Join(dir, "out.jsonl")
	for cut := ends[rerun-1]; cut <= ends[len(ends)-1]; cut++ {
		if err := os.WriteFile(path, all[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		s := &JSONLSink{Path: path}
		if err := s.AddBatch(ctx, batches[rerun]); err != nil {
			t.Fatalf("crash after %d bytes: %v", cut, err)
		}
		s.Close()
		if got, _ := os.ReadFile(path); string(got) != string(all[:ends[rerun]]) {
			t.Fatalf("crash after %d bytes, re-run of batch %d: got\n%s\nwant\n%s", cut, batches[rerun].ID, got, all[:ends[rerun]])
		}
	}
}

// TestJSONLSinkFence: a JSONLSink's Fence is asked before each change of
// its file, and once it refuses, the file does not change: neither the
// cut of a re-run batch's lines nor any write, even of a batch already
// under way (its rows beyond the buffer's 256 KiB).
func TestJSONLSinkFence(t *testing.T) {
	errDeposed := fmt.Errorf("deposed")
	path := filepath.Join(t.TempDir(), "out.jsonl")
	size := writeBatches(t, path, 0, 2, 10)
	ctx := context.Background()

	refused := &JSONLSink{Path: path, Fence: func() error { return errDeposed }}
	if err := refused.AddBatch(ctx, batchOf(1, wc("rerun", 1))); !errors.Is(err, errDeposed) {
		t.Fatalf("a re-run of batch 1 behind a refusing fence = %v; want its error", err)
	}
	refused.Close()
	if st, _ := os.Stat(path); st.Size() != size {
		t.Fatalf("the refused re-run changed the file: %d bytes, was %d", st.Size(), size)
	}

	// A batch of about 1 MiB: the fence lets its first write through and
	// refuses the next ones.
	rows := make([]operators.Row, 30_000)
	for i := range rows {
		rows[i] = wc(fmt.Sprintf("word-%08d", i), int64(i))
	}
	calls := 0
	s := &JSONLSink{Path: path, Fence: func() error {
		if calls++; calls > 1 {
			return errDeposed
		}
		return nil
	}}
	if err := s.AddBatch(ctx, batchOf(2, rows...)); !errors.Is(err, errDeposed) {
		t.Fatalf("a batch whose fence refuses after its first write = %v; want its error", err)
	}
	s.Close()
	st, _ := os.Stat(path)
	if written := st.Size() - size; written != 256<<10 {
		t.Fatalf("%d bytes written behind the fence; want one write of 256 KiB", written)
	}
	if calls != 2 {
		t.Fatalf("the fence was asked %d times; want 2 (it refused the second write)", calls)
	}
}
