package kafkasrc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gostream/gostream/internal/testseed"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicRanges returns a Source and a Range of everything in each partition
// of topic.
func topicRanges(t testing.TB, addrs []string, topic string) (*Source, []Range) {
	t.Helper()
	s := newTestSource(t, addrs, nil)
	earliest, latest, err := s.Offsets(testCtx(t), []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	var ranges []Range
	for p, until := range latest[topic] {
		ranges = append(ranges, Range{topic, p, earliest[topic][p], until})
	}
	return s, ranges
}

// readTopic returns every record of the topic, sorted by value, and the
// compression codecs of their batches.
func readTopic(t testing.TB, addrs []string, topic string) (vals []string, codecs map[uint8]bool) {
	t.Helper()
	ctx := testCtx(t)
	s, ranges := topicRanges(t, addrs, topic)
	codecs = map[uint8]bool{}
	for _, r := range ranges {
		err := s.ReadRange(ctx, r, func(recs []*kgo.Record) error {
			for _, rec := range recs {
				if rec.Value == nil {
					t.Errorf("null value at %s/%d@%d", topic, r.Partition, rec.Offset)
				}
				vals = append(vals, string(rec.Value))
				codecs[rec.Attrs.CompressionType()] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// ReadValues decodes the batches itself: it must read the same.
	var direct []string
	for _, r := range ranges {
		got, err := readDirect(ctx, s, r)
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

	// An unfinished line is not sent at the stop: Resume points at it.
	appendFile(t, path, "tail without newline")
	time.Sleep(3 * followPoll)
	cancel()
	res := <-done
	if res.err != nil || res.stats.Lines != 8 || res.stats.Acked != 8 {
		t.Fatalf("ProduceLines = %+v, %v; want 8 lines acked and no error", res.stats, res.err)
	}
	if in := res.stats.Inputs[0]; in.Resume != (Position{Line: 2, Offset: 3}) || in.Done || in.Rotated {
		t.Errorf("input stats %+v, want Resume at line 2, offset 3 (after c1)", in)
	}
	if progress.Load() == 0 {
		t.Error("Progress was never called")
	}
	got, _ := readTopic(t, addrs, "logs")
	want := []string{"a1", "a2", "a3", "a4-partial done", "b1", "b2", "b3", "c1"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// numberedLines writes n lines "<8-digit number> <filler>" of varied length
// to a new file and returns its path and each line's start offset (one
// more: the file's size).
func numberedLines(t testing.TB, n int) (path string, offsets []int64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "in.log")
	var b bytes.Buffer
	for i := range n {
		offsets = append(offsets, int64(b.Len()))
		b.WriteString(numberedLine(i + 1))
		b.WriteByte('\n')
	}
	offsets = append(offsets, int64(b.Len()))
	writeFile(t, path, b.String())
	return path, offsets
}

// numberedLine is line number i: its number, then a filler whose length
// depends on i, so that a torn or merged line is noticed.
func numberedLine(i int) string {
	return fmt.Sprintf("%08d %s", i, strings.Repeat("x", i*7%61))
}

// lineNumber parses a numberedLine, or fails the test.
func lineNumber(t testing.TB, v string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(v, "%08d", &i); err != nil || v != numberedLine(i) {
		t.Fatalf("record %q is not a whole line", v)
	}
	return i
}

// readPartitions returns the line numbers in each partition of topic, in
// offset order.
func readPartitions(t testing.TB, addrs []string, topic string) map[int32][]int {
	t.Helper()
	s, ranges := topicRanges(t, addrs, topic)
	got := map[int32][]int{}
	for _, r := range ranges {
		_, vals, err := readAll(t, testCtx(t), s, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			got[r.Partition] = append(got[r.Partition], lineNumber(t, v))
		}
	}
	return got
}

// checkLanded checks that topic holds lines 1 to upto-1 once each, no
// others, each partition in file order.
func checkLanded(t testing.TB, addrs []string, topic string, upto int) {
	t.Helper()
	seen := landedOnce(t, addrs, topic)
	for l := range seen {
		if l >= upto {
			t.Fatalf("line %d landed, beyond the reported prefix (lines before %d)", l, upto)
		}
	}
	if len(seen) != upto-1 {
		t.Fatalf("topic holds %d lines, want lines 1 to %d", len(seen), upto-1)
	}
}

// TestProduceLinesStopResume stops ProduceLines at random moments and
// resumes it from the reported position each time: what is in the topic
// is always exactly the lines before the reported one, each partition in
// file order, and at the end the file once.
func TestProduceLinesStopResume(t *testing.T) {
	c := newFake(t, "logs", 3)
	testStopResume(t, c.ListenAddrs(), "logs", 30_000, 100*time.Millisecond)
}

// testStopResume runs TestProduceLinesStopResume's rounds on n lines, each stopped
// within maxStop.
func testStopResume(t *testing.T, addrs []string, topic string, n int, maxStop time.Duration) {
	path, offsets := numberedLines(t, n)
	rng := testseed.Rand(t)
	var from int64
	for round := 0; ; round++ {
		ctx, cancel := context.WithCancel(testCtx(t))
		stop := time.AfterFunc(time.Duration(rng.Int64N(int64(maxStop))), cancel)
		stats, err := ProduceLines(ctx, ProduceConfig{Brokers: addrs, Topic: topic, FromOffset: from}, path)
		stop.Stop()
		cancel()
		in := stats.Inputs[0]
		t.Logf("round %d from offset %d: %+v, %v", round, from, in, err)
		if err == nil {
			if !in.Done || in.Resume.Line != int64(n+1) || in.Resume.Offset != offsets[n] {
				t.Fatalf("completed with input stats %+v, want done at line %d", in, n+1)
			}
			checkLanded(t, addrs, topic, n+1)
			return
		}
		if !errors.Is(err, context.Canceled) || in.Lines != in.Acked || in.Done {
			t.Fatalf("stopped run: %+v, %v; want every line read acknowledged and an error wrapping context.Canceled", in, err)
		}
		if in.Resume.Line == 0 && in.Lines == 0 && in.Resume.Offset == from {
			continue // stopped before it counted the lines before from
		}
		if l := in.Resume.Line; l < 1 || l > int64(n) || in.Resume.Offset != offsets[l-1] {
			t.Fatalf("resume at %+v: not the start of a line of the file", in.Resume)
		}
		checkLanded(t, addrs, topic, int(in.Resume.Line))
		from = in.Resume.Offset
	}
}

// netSwitch dials the brokers until it is cut; then it refuses dials and
// closes the connections it made, as if every broker were down, until it is
// restored.
type netSwitch struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (s *netSwitch) dial(ctx context.Context, network, host string) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("refused: the test cut the brokers off")}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, host)
	if err == nil {
		s.conns = append(s.conns, conn)
	}
	return conn, err
}

func (s *netSwitch) set(cut bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut = cut
	if cut {
		for _, conn := range s.conns {
			conn.Close()
		}
		s.conns = nil
	}
}

// logLines is a slog handler that keeps the messages logged.
type logLines struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}

// find returns the first message containing all of parts.
func (l *logLines) find(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(m, p) }) {
			return m
		}
	}
	return ""
}

// TestProduceLinesStopNotAcked stops a run whose brokers are cut off: it
// returns after Timeout with ErrNotAcked, and the lines before the reported
// Resume line are in the topic.
func TestProduceLinesStopNotAcked(t *testing.T) {
	c := newFake(t, "logs", 3)
	addrs := c.ListenAddrs()
	const n = 5000
	var text strings.Builder
	offsets := make([]int64, 0, n)
	for i := 1; i <= n; i++ {
		offsets = append(offsets, int64(text.Len()))
		text.WriteString(numberedLine(i) + "\n")
	}
	pr, pw := io.Pipe()
	sw := &netSwitch{}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	logs := &logLines{}
	cfg := ProduceConfig{Brokers: addrs, Topic: "logs", Stdin: pr, MaxBufferedRecords: 1000, Timeout: 500 * time.Millisecond,
		StallWarning: 100 * time.Millisecond, Logger: slog.New(logs), dial: sw.dial}
	done := make(chan error, 1)
	var stats ProduceStats
	go func() {
		var err error
		stats, err = ProduceLines(ctx, cfg, "-")
		done <- err
	}()
	if _, err := io.WriteString(pw, text.String()[:offsets[100]]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first lines", func() bool { return countRecords(t, addrs, "logs") == 100 })
	sw.set(true)
	written := make(chan struct{})
	go func() {
		defer close(written)
		io.WriteString(pw, text.String()[offsets[100]:]) // until the pipe is closed: reading waits on the brokers
	}()
	waitFor(t, 10*time.Second, "the warning that nothing is acknowledged", func() bool { return logs.find("WARN", "no acknowledgement") != "" })
	cancel()
	err := <-done
	pw.Close()
	<-written
	in := stats.Inputs[0]
	if !errors.Is(err, ErrNotAcked) || in.Lines == in.Acked || in.Lines == n {
		t.Fatalf("ProduceLines = %+v, %v; want ErrNotAcked with lines read but not all", in, err)
	}
	if in.Resume.Offset != offsets[in.Resume.Line-1] {
		t.Fatalf("resume %+v is not the start of its line", in.Resume)
	}
	// Every line before Resume landed; after it, some may have: none twice.
	seen := landedOnce(t, addrs, "logs")
	for l := range seen {
		if int64(l) > in.Lines {
			t.Fatalf("line %d landed but was never read", l)
		}
	}
	for l := 1; l < int(in.Resume.Line); l++ {
		if !seen[l] {
			t.Fatalf("line %d, before the reported resume line %d, is not in the topic", l, in.Resume.Line)
		}
	}
	if int64(len(seen)) < in.Acked {
		t.Fatalf("topic holds %d lines, %d were acknowledged", len(seen), in.Acked)
	}
}

// TestProduceLinesBrokersDown cuts the producer off from every broker
// while a followed file grows: the warning says how long and how much is
// buffered and that reading waits, and every line lands once after the
// brokers are back.
func TestProduceLinesBrokersDown(t *testing.T) {
	c := newFake(t, "logs", 3)
	testBrokersDown(t, c.ListenAddrs(), "logs")
}

func testBrokersDown(t *testing.T, addrs []string, topic string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	writeFile(t, path, "")
	var lines strings.Builder
	appendLines := func(from, to int) {
		lines.Reset()
		for i := from; i <= to; i++ {
			lines.WriteString(numberedLine(i) + "\n")
		}
		appendFile(t, path, lines.String())
	}
	sw := &netSwitch{}
	logs := &logLines{}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	cfg := ProduceConfig{Brokers: addrs, Topic: topic, Follow: true, MaxBufferedRecords: 100,
		StallWarning: 500 * time.Millisecond, Logger: slog.New(logs), dial: sw.dial}
	type result struct {
		stats ProduceStats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := ProduceLines(ctx, cfg, path)
		done <- result{stats, err}
	}()
	appendLines(1, 50)
	waitFor(t, 20*time.Second, "the first lines", func() bool { return countRecords(t, addrs, topic) == 50 })

	sw.set(true)
	appendLines(51, 2000)
	warning := ""
	waitFor(t, 20*time.Second, "a warning that the buffer is full", func() bool {
		warning = logs.find("WARN", "no acknowledgement from the brokers", "100 records", "the buffer is full: reading the input waits", "nothing is dropped")
		return warning != ""
	})
	t.Logf("warning: %s", warning)
	sw.set(false)
	waitFor(t, 60*time.Second, "every line after the brokers are back", func() bool { return countRecords(t, addrs, topic) == 2000 })
	waitFor(t, 10*time.Second, "the notice that acknowledgements resumed", func() bool { return logs.find("INFO", "acknowledge records again") != "" })
	cancel()
	res := <-done
	if res.err != nil || res.stats.Acked != 2000 {
		t.Fatalf("ProduceLines = %+v, %v; want 2000 acked", res.stats, res.err)
	}
	checkLanded(t, addrs, topic, 2001)
}

// TestProduceLinesCopytruncate follows a file rotated the way logrotate's
// copytruncate does it: copied, then truncated in place.
func TestProduceLinesCopytruncate(t *testing.T) {
	t.Run("refilled past its old size", func(t *testing.T) {
		c := newFake(t, "logs", 2)
		testRefilledPastOldSize(t, c.ListenAddrs(), "logs")
	})
	t.Run("while a writer appends", func(t *testing.T) {
		c := newFake(t, "logs", 2)
		testCopytruncateRace(t, c.ListenAddrs(), "logs")
	})
}

// followFile follows path into topic until the returned stop is called,
// which returns ProduceLines' stats and fails the test on its error.
func followFile(t *testing.T, addrs []string, topic, path string) (stop func() ProduceStats) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	type result struct {
		stats ProduceStats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := ProduceLines(ctx, ProduceConfig{Brokers: addrs, Topic: topic, Follow: true}, path)
		done <- result{stats, err}
	}()
	return func() ProduceStats {
		t.Helper()
		cancel()
		res := <-done
		if res.err != nil {
			t.Fatalf("ProduceLines: %v", res.err)
		}
		return res.stats
	}
}

// copytruncate copies path to path.1, shifting older copies up to path.2 and
// so on, waits pause, then truncates path, as logrotate's copytruncate does;
// locked runs the truncation.
func copytruncate(t *testing.T, path string, copies int, pause time.Duration, locked func(truncate func())) {
	t.Helper()
	for i := copies; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pause)
	locked(func() {
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// wholeLines returns the numbers of the complete lines of a file.
func wholeLines(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var nums []int
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		nums = append(nums, lineNumber(t, string(b[:i])))
		b = b[i+1:]
	}
	return nums
}

func linesText(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		b.WriteString(numberedLine(i) + "\n")
	}
	return b.String()
}

// testRefilledPastOldSize copies and truncates a file and writes more than
// its old size to it before the follower looks again: lines it had not read
// come from the copy, the new content from its start, none torn.
func testRefilledPastOldSize(t *testing.T, addrs []string, topic string) {
	path := filepath.Join(t.TempDir(), "app.log")
	writeFile(t, path, linesText(1, 100))
	stop := followFile(t, addrs, topic, path)
	waitFor(t, 20*time.Second, "the first lines", func() bool { return countRecords(t, addrs, topic) == 100 })
	// Within one poll: lines the follower has not read, the copy and
	// truncation, and a refill past the old size.
	appendFile(t, path, linesText(101, 150)+"151 unfinished")
	copytruncate(t, path, 0, 0, func(truncate func()) { truncate() })
	appendFile(t, path, linesText(152, 600))
	waitFor(t, 20*time.Second, "every line", func() bool { return countRecords(t, addrs, topic) == 599 })
	stop()
	want := slices.Concat(values("", 1, 151), values("", 152, 601))
	got := slices.Sorted(maps.Keys(landedOnce(t, addrs, topic)))
	if !slices.Equal(got, toInts(t, want)) {
		t.Fatalf("landed %d lines, want lines 1-150 and 152-600 (151 was torn by the truncation)", len(got))
	}
}

func toInts(t *testing.T, vals []string) []int {
	out := make([]int, len(vals))
	for i, v := range vals {
		if _, err := fmt.Sscan(v, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// landedOnce returns the lines in topic, failing the test on a line that
// landed twice or out of file order within its partition.
func landedOnce(t testing.TB, addrs []string, topic string) map[int]bool {
	t.Helper()
	seen := map[int]bool{}
	for p, lines := range readPartitions(t, addrs, topic) {
		for k, l := range lines {
			if seen[l] || k > 0 && l <= lines[k-1] {
				t.Fatalf("line %d landed twice, or out of order in partition %d", l, p)
			}
			seen[l] = true
		}
	}
	return seen
}

// testCopytruncateRace rotates a file with copytruncate at random moments
// while a writer appends to it: every line is delivered once except those
// written between a copy and its truncation (logrotate loses them, and the
// follower may have read some), and no line is torn.
func testCopytruncateRace(t *testing.T, addrs []string, topic string) {
	rng := testseed.Rand(t)
	path := filepath.Join(t.TempDir(), "app.log")
	writeFile(t, path, "")
	stop := followFile(t, addrs, topic, path)

	const total, rotations = 40_000, 4
	var mu sync.Mutex // held by the writer for each line, and around each truncation
	written := 0
	writerDone := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			writerDone <- err
			return
		}
		defer f.Close()
		for i := 1; i <= total; i++ {
			mu.Lock()
			_, err := f.WriteString(numberedLine(i) + "\n")
			written = i
			mu.Unlock()
			if err != nil {
				writerDone <- err
				return
			}
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		writerDone <- nil
	}()
	lost := map[int]bool{} // written after a copy, before its truncation
	atTruncate := 0
	for r := range rotations {
		time.Sleep(time.Duration(400+rng.IntN(400)) * time.Millisecond) // rotations come more than a poll apart
		last := atTruncate                                              // the copy starts after the previous truncation
		copytruncate(t, path, r, time.Duration(rng.IntN(20))*time.Millisecond, func(truncate func()) {
			mu.Lock()
			defer mu.Unlock()
			truncate()
			atTruncate = written
		})
		if copied := wholeLines(t, path+".1"); len(copied) > 0 {
			last = copied[len(copied)-1]
		}
		for l := last + 1; l <= atTruncate; l++ {
			lost[l] = true
		}
		t.Logf("rotation %d: copy ends at line %d, truncated at line %d", r+1, last, atTruncate)
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every line not lost by logrotate", func() bool {
		return countRecords(t, addrs, topic) >= int64(total-len(lost))
	})
	time.Sleep(3 * followPoll) // anything more would be a duplicate
	stop()
	seen := landedOnce(t, addrs, topic)
	for l := 1; l <= total; l++ {
		if !seen[l] && !lost[l] {
			t.Fatalf("line %d was not delivered (%d lines lost by the rotations themselves)", l, len(lost))
		}
	}
	t.Logf("%d lines delivered once; %d written between a copy and its truncation, %d of them read anyway", len(seen), len(lost), len(seen)-(total-len(lost)))
}

// TestIntegrationProduceStopResume runs TestProduceLinesStopResume's rounds
// on real Kafka, replicated partitions on three brokers.
func TestIntegrationProduceStopResume(t *testing.T) {
	c := realKafka(t)
	testStopResume(t, c.Addrs(), realTopic(t, c, "stop", 3, 2), 200_000, time.Second)
}

// TestIntegrationProduceBrokersDown runs TestProduceLinesBrokersDown on real
// Kafka.
func TestIntegrationProduceBrokersDown(t *testing.T) {
	c := realKafka(t)
	testBrokersDown(t, c.Addrs(), realTopic(t, c, "down", 3, 2))
}

// TestIntegrationProduceCopytruncate runs TestProduceLinesCopytruncate on
// real Kafka.
func TestIntegrationProduceCopytruncate(t *testing.T) {
	c := realKafka(t)
	t.Run("refilled past its old size", func(t *testing.T) {
		testRefilledPastOldSize(t, c.Addrs(), realTopic(t, c, "refill", 2, 2))
	})
	t.Run("while a writer appends", func(t *testing.T) {
		testCopytruncateRace(t, c.Addrs(), realTopic(t, c, "copytruncate", 2, 2))
	})
}

func TestProduceLinesFromOffset(t *testing.T) {
	c := newFake(t, "logs", 1)
	addrs := c.ListenAddrs()
	path := filepath.Join(t.TempDir(), "in.log")
	writeFile(t, path, "ab\ncd\nef\n")
	stats, err := ProduceLines(testCtx(t), ProduceConfig{Brokers: addrs, Topic: "logs", FromOffset: 3}, path)
	if in := stats.Inputs[0]; err != nil || !in.Done || in.Lines != 2 || in.Resume != (Position{Line: 4, Offset: 9}) {
		t.Fatalf("ProduceLines from offset 3 = %+v, %v; want lines 2 and 3 done, resume at line 4 offset 9", stats, err)
	}
	if got, _ := readTopic(t, addrs, "logs"); !slices.Equal(got, []string{"cd", "ef"}) {
		t.Fatalf("produced %q, want cd and ef", got)
	}
	for _, tc := range []struct {
		from   int64
		inputs []string
		errHas string
	}{
		{4, []string{path}, "start offset 4 of " + path + " is not the start of a line (byte 3 is not a newline)"},
		{100, []string{path}, "start offset 100 is past the end of " + path + " (9 bytes)"},
		{3, []string{path, path}, "applies to one input, not 2"},
		{-1, []string{path}, "must be 0 or more"},
	} {
		_, err := ProduceLines(testCtx(t), ProduceConfig{Brokers: addrs, Topic: "logs", FromOffset: tc.from}, tc.inputs...)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("from offset %d: %v, want %q", tc.from, err, tc.errHas)
		}
	}
}
