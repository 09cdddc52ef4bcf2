package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// readTopic returns every record of the topic, sorted by value, and the
// compression codecs of their batches.
func readTopic(t testing.TB, addrs []string, topic string) (vals []string, codecs map[uint8]bool) {
	t.Helper()
	ctx := testCtx(t)
	s := newTestSource(t, addrs, nil)
	earliest, latest, err := s.Offsets(ctx, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	codecs = map[uint8]bool{}
	for p, until := range latest[topic] {
		err := s.ReadRange(ctx, Range{topic, p, earliest[topic][p], until}, func(recs []*kgo.Record) error {
			for _, r := range recs {
				if r.Value == nil {
					t.Errorf("null value at %s/%d@%d", topic, p, r.Offset)
				}
				vals = append(vals, string(r.Value))
				codecs[r.Attrs.CompressionType()] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// ReadValues decodes the batches itself: it must read the same.
	var direct []string
	for p, until := range latest[topic] {
		got, err := readDirect(ctx, s, Range{topic, p, earliest[topic][p], until})
		if err != nil {
			t.Fatal(err)
		}
		direct = append(direct, got...)
	}
	slices.Sort(vals)
	if slices.Sort(direct); !slices.Equal(direct, vals) {
		t.Fatalf("ReadValues read %d values (%q...), ReadRange %d", len(direct), head(direct), len(vals))
	}
	return vals, codecs
}

func countRecords(t testing.TB, addrs []string, topic string) int64 {
	s := newTestSource(t, addrs, nil)
	_, latest, err := s.Offsets(testCtx(t), []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, off := range latest[topic] {
		n += off
	}
	return n
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t testing.TB, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

func TestProduceLinesCodecs(t *testing.T) {
	// Codec ids in the record batch attributes.
	codecIDs := map[string]uint8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.log")
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "line %d the quick brown fox\n", i)
	}
	b.WriteString("\n")                   // empty line: an empty value
	b.WriteString("crlf\r\n")             // \r\n is one terminator
	b.WriteString("mid\rcr\n")            // a lone \r is kept
	b.WriteString("héllo wörld\n")        // bytes are kept as they are
	b.WriteString("last without newline") // still produced
	writeFile(t, in, b.String())
	want := values("", 0, 0)
	for i := range 1000 {
		want = append(want, fmt.Sprintf("line %d the quick brown fox", i))
	}
	want = append(want, "", "crlf", "mid\rcr", "héllo wörld", "last without newline")
	slices.Sort(want)

	for _, codec := range Compressions {
		t.Run(codec, func(t *testing.T) {
			c := newFake(t, "logs", 3)
			stats, err := ProduceLines(testCtx(t), ProduceConfig{Brokers: c.ListenAddrs(), Topic: "logs", Compression: codec}, in)
			if err != nil {
				t.Fatal(err)
			}
			if stats.Lines != int64(len(want)) || stats.Acked != stats.Lines || stats.Bytes == 0 {
				t.Fatalf("stats = %+v, want %d lines acked", stats, len(want))
			}
			got, codecs := readTopic(t, c.ListenAddrs(), "logs")
			if !slices.Equal(got, want) {
				t.Fatalf("read back %d records, want %d", len(got), len(want))
			}
			if !codecs[codecIDs[codec]] {
				t.Fatalf("batches used codecs %v, want %s", codecs, codec)
			}
		})
	}
}

func TestProduceLinesErrors(t *testing.T) {
	ctx := testCtx(t)
	c := newFake(t, "logs", 1)
	addrs := c.ListenAddrs()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.log")
	writeFile(t, in, "0123456789\r\nshort\n0123456789x\nnever\n")

	_, err := ProduceLines(ctx, ProduceConfig{Brokers: addrs, Topic: "logs", MaxRecordBytes: 10}, in)
	want := fmt.Sprintf("kafka: line 3 of %s is longer than 10 bytes (raise the limit with --max-record-bytes", in)
	if !errors.Is(err, ErrLineTooLong) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v\nwant prefix %s", err, want)
	}
	// A line longer than the read buffer is caught too.
	writeFile(t, in, "ok\n"+strings.Repeat("x", 300<<10)+"\n")
	if _, err := ProduceLines(ctx, ProduceConfig{Brokers: addrs, Topic: "logs", MaxRecordBytes: 100 << 10}, in); !errors.Is(err, ErrLineTooLong) || !strings.Contains(err.Error(), "line 2 of") {
		t.Fatalf("long line: err = %v", err)
	}
	// ... and accepted whole when the limit allows it.
	if _, err := ProduceLines(ctx, ProduceConfig{Brokers: addrs, Topic: "logs"}, in); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		cfg    ProduceConfig
		inputs []string
		target error
		errHas string
	}{
		{ProduceConfig{Brokers: addrs, Topic: "nope"}, []string{in}, ErrUnknownTopic, `topic "nope" does not exist`},
		{ProduceConfig{Brokers: addrs, Topic: "logs", Compression: "brotli"}, []string{in}, ErrInvalidConfig, "want none, gzip, snappy, lz4 or zstd"},
		{ProduceConfig{Brokers: addrs, Topic: "logs"}, nil, ErrInvalidConfig, "no input"},
		{ProduceConfig{Brokers: []string{freeAddr(t)}, Topic: "logs", Timeout: 500 * time.Millisecond}, []string{in}, ErrUnreachable, "no broker reachable"},
		{ProduceConfig{Brokers: addrs, Topic: "logs"}, []string{filepath.Join(dir, "missing")}, os.ErrNotExist, "no such file"},
	} {
		if _, err := ProduceLines(ctx, tc.cfg, tc.inputs...); !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("ProduceLines(%+v, %q) = %v, want %v containing %q", tc.cfg, tc.inputs, err, tc.target, tc.errHas)
		}
	}
}

// TestProduceLinesStdinLowLatency checks that a line from stdin is produced
// before stdin ends.
func TestProduceLinesStdinLowLatency(t *testing.T) {
	c := newFake(t, "logs", 1)
	pr, pw := io.Pipe()
	type result struct {
		stats ProduceStats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := ProduceLines(testCtx(t), ProduceConfig{Brokers: c.ListenAddrs(), Topic: "logs", Stdin: pr}, "-")
		done <- result{stats, err}
	}()
	if _, err := io.WriteString(pw, "first\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first line to be produced", func() bool { return countRecords(t, c.ListenAddrs(), "logs") == 1 })
	io.WriteString(pw, "second")
	pw.Close()
	res := <-done
	if res.err != nil || res.stats.Acked != 2 {
		t.Fatalf("ProduceLines = %+v, %v; want 2 acked", res.stats, res.err)
	}
}

func TestProduceLinesFollow(t *testing.T) {
	c := newFake(t, "logs", 2)
	addrs := c.ListenAddrs()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	writeFile(t, path, "a1\na2\n")

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var progress atomic.Int64
	type result struct {
		stats ProduceStats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := ProduceLines(ctx, ProduceConfig{
			Brokers: addrs, Topic: "logs", Follow: true,
			Progress: func(ProduceStats) { progress.Add(1) }, ProgressInterval: 20 * time.Millisecond,
		}, path)
		done <- result{stats, err}
	}()
	wait := func(n int64, what string) {
		t.Helper()
		waitFor(t, 10*time.Second, what, func() bool { return countRecords(t, addrs, "logs") == n })
	}
	wait(2, "the initial lines")
	appendFile(t, path, "a3\na4-partial")
	wait(3, "an appended line")
	appendFile(t, path, " done\n")
	wait(4, "a line completed later")

	// Rotation: the old file is renamed and a new one created.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "b1\nb2\nb3\n")
	wait(7, "the lines of the rotated-in file")

	// Truncation in place.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * followPoll) // let the follower see the shorter file
	appendFile(t, path, "c1\n")
	wait(8, "a line after truncation")

	appendFile(t, path, "tail without newline")
	time.Sleep(3 * followPoll)
	cancel()
	res := <-done
	if res.err != nil || res.stats.Lines != 9 || res.stats.Acked != 9 {
		t.Fatalf("ProduceLines = %+v, %v; want 9 lines acked and no error", res.stats, res.err)
	}
	if progress.Load() == 0 {
		t.Error("Progress was never called")
	}
	got, _ := readTopic(t, addrs, "logs")
	want := []string{"a1", "a2", "a3", "a4-partial done", "b1", "b2", "b3", "c1", "tail without newline"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
