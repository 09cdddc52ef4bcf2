package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/kafkatest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestProduceAndConsumeCmd(t *testing.T) {
	brokers := newFakeBrokers(t, "logs")
	file := filepath.Join(t.TempDir(), "in.log")
	if err := os.WriteFile(file, []byte("from file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The summary is produce's last line: a slow run (a loaded machine,
	// -race) reports its progress before it, every produceProgressEvery.
	_, stderr, err := run(t, newProduceCmd, "", "--brokers", brokers, "--topic", "logs", "--compression", "zstd", file)
	if err != nil || !strings.HasPrefix(lastLine(stderr), "produced 1 records (acked) to logs in ") {
		t.Fatalf("produce file: %q, %v", stderr, err)
	}
	_, stderr, err = run(t, newProduceCmd, "hello world\nsecond line\n", "--brokers", brokers, "--topic", "logs")
	if err != nil || !strings.HasPrefix(lastLine(stderr), "produced 2 records (acked) to logs in ") {
		t.Fatalf("produce stdin: %q, %v", stderr, err)
	}

	stdout, stderr, err := run(t, newConsumeCmd, "", "--brokers", brokers, "--topic", "logs", "--from-beginning", "--max-messages", "3")
	if err != nil || stderr != "Processed a total of 3 messages\n" {
		t.Fatalf("consume: %q, %v", stderr, err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(stdout, "from file\n") || !strings.Contains(stdout, "hello world\n") || !strings.Contains(stdout, "second line\n") {
		t.Fatalf("consume printed %q", stdout)
	}

	// Ended by its count: an idle --timeout of 300 ms could run out before
	// the first fetch answers on a loaded machine (under -race).
	stdout, _, err = run(t, newConsumeCmd, "", "--brokers", brokers, "--topic", "logs", "--from-beginning", "--print-key", "--max-messages", "3", "--timeout", "30s")
	if err != nil || strings.Count(stdout, "null\t") != 3 {
		t.Fatalf("consume --print-key: %q, %v", stdout, err)
	}
	// Without --from-beginning only new records are printed.
	stdout, stderr, err = run(t, newConsumeCmd, "", "--brokers", brokers, "--topic", "logs", "--timeout", "300ms")
	if err != nil || stdout != "" || stderr != "Processed a total of 0 messages\n" {
		t.Fatalf("consume from the end: %q %q, %v", stdout, stderr, err)
	}
}

// lastLine is the last line of s, without its newline.
func lastLine(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func TestProduceCmdValidation(t *testing.T) {
	brokers := newFakeBrokers(t, "logs")
	for _, tc := range []struct {
		args   []string
		errHas string
	}{
		{[]string{"--brokers", brokers}, "--topic is required"},
		{[]string{"--brokers", brokers, "--topic", "logs", "--compression", "brotli"}, `--compression "brotli": want one of none, gzip, snappy, lz4, zstd`},
		{[]string{"--brokers", brokers, "--topic", "logs", "--linger", "-1s"}, "--linger is -1s; want 0 or more"},
		{[]string{"--brokers", brokers, "--topic", "logs", "--max-record-bytes", "0"}, "--max-record-bytes is 0; want 1 or more"},
		{[]string{"--brokers", brokers, "--topic", "nope"}, `topic "nope" does not exist`},
		{[]string{"--brokers", "x", "--topic", "logs"}, `broker "x" is not host:port`},
		{[]string{"--brokers", brokers, "--topic", "logs", "--max-record-bytes", "3"}, "line 1 of stdin is longer than 3 bytes"},
		{[]string{"--brokers", brokers, "--topic", "logs", "--from-offset", "5", "a", "b"}, "--from-offset is 5 for 2 inputs; want 0 or more, with one input"},
		{[]string{"--brokers", brokers, "--topic", "logs", "--max-buffered-bytes", "10"}, "--max-buffered-bytes 10; want 1 or more, and bytes at least --max-record-bytes"},
	} {
		if _, _, err := run(t, newProduceCmd, "toolong\n", tc.args...); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("produce %q: error %v, want %q", tc.args, err, tc.errHas)
		}
	}
}

// TestProduceCmdInterrupt sends SIGINT to the gostream binary at random
// moments while it produces a large file to real Kafka, then runs it again
// with the --from-offset the report gives, until it completes. After each
// stop the topic holds exactly the lines before the reported one, each
// partition in file order, as many as the report counts; at the end, the
// file once.
func TestProduceCmdInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against real Kafka; run without -short")
	}
	bin := filepath.Join(t.TempDir(), "gostream")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/gostream").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := kafkatest.Start(t)
	topic := kafkatest.UniqueTopic(t, "interrupt")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, topic, 3, 2); err != nil {
		t.Fatal(err)
	}

	const n = 1_000_000
	path := filepath.Join(t.TempDir(), "in.log")
	var file bytes.Buffer
	offsets := make([]int64, 0, n+1)
	for i := 1; i <= n; i++ {
		offsets = append(offsets, int64(file.Len()))
		fmt.Fprintf(&file, "%08d %s\n", i, strings.Repeat("y", i*7%61))
	}
	offsets = append(offsets, int64(file.Len()))
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rng := testseed.Rand(t)

	acked := regexp.MustCompile(`(?m)^(?:stopped: )?produced (\d+) records \(acked\) to `)
	resume := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(path) + `: every line before line (\d+) \(byte offset (\d+)\) is in ` +
		regexp.QuoteMeta(topic) + `, and no line after it was sent; continue with --from-offset (\d+)$`)
	next := 1 // the first line not in the topic
	for round := 0; ; round++ {
		args := []string{"produce", "--brokers", c.BootstrapServers(), "--topic", topic, path}
		if next > 1 {
			args = append(args, "--from-offset", strconv.FormatInt(offsets[next-1], 10))
		}
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := 50*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))
		timer := time.AfterFunc(delay, func() { cmd.Process.Signal(os.Interrupt) })
		err := cmd.Wait()
		timer.Stop()
		t.Logf("round %d from line %d, SIGINT after %v: %v\n%s", round, next, delay, err, stderr.String())
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// Killed before main installed its handler: nothing was read.
			checkTopicLines(t, c.Addrs(), topic, next)
			continue
		}
		m := acked.FindStringSubmatch(stderr.String())
		if m == nil {
			t.Fatalf("no count of acknowledged records in the report")
		}
		count, _ := strconv.Atoi(m[1])
		if err == nil {
			if next+count != n+1 {
				t.Fatalf("completed after %d records from line %d, want %d lines", count, next, n+1-next)
			}
			checkTopicLines(t, c.Addrs(), topic, n+1)
			return
		}
		landed := checkTopicLines(t, c.Addrs(), topic, -1)
		if landed != next-1+count {
			t.Fatalf("the topic holds %d lines; the reports so far count %d", landed, next-1+count)
		}
		r := resume.FindStringSubmatch(stderr.String())
		if r == nil {
			t.Fatalf("no resume point in the report")
		}
		line, _ := strconv.Atoi(r[1])
		off, _ := strconv.ParseInt(r[2], 10, 64)
		if line != next+count || off != offsets[line-1] || r[3] != r[2] {
			t.Fatalf("resume at line %d, offset %d (flag %s); want line %d at offset %d", line, off, r[3], next+count, offsets[next+count-1])
		}
		checkTopicLines(t, c.Addrs(), topic, line)
		next = line
	}
}

// checkTopicLines reads every partition of topic, checks that each holds
// lines in file order with no line twice, and returns how many there are.
// With upto > 0 it also checks that they are exactly lines 1 to upto-1.
func checkTopicLines(t *testing.T, brokers []string, topic string, upto int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("end offsets: %v, %v", err, ends.Error())
	}
	seen := map[int]bool{}
	ends.Each(func(end kadm.ListedOffset) {
		if end.Offset == 0 {
			return
		}
		pc, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {end.Partition: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		last := 0
		for read := int64(0); read < end.Offset; {
			fs := pc.PollFetches(ctx)
			if err := fs.Err(); err != nil {
				t.Fatalf("reading partition %d: %v", end.Partition, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				read++
				l, _ := strconv.Atoi(string(r.Value[:8]))
				if seen[l] || l <= last {
					t.Fatalf("partition %d: line %d after line %d, or twice", end.Partition, l, last)
				}
				seen[l], last = true, l
			})
		}
	})
	if upto > 0 && len(seen) != upto-1 {
		t.Fatalf("the topic holds %d lines, want lines 1 to %d", len(seen), upto-1)
	}
	for l := range seen {
		if upto > 0 && l >= upto {
			t.Fatalf("line %d is in the topic, want lines 1 to %d", l, upto-1)
		}
	}
	return len(seen)
}

func TestPrintProduceReport(t *testing.T) {
	in := kafkasrc.InputStats{Name: "in.log", Lines: 10, Acked: 10, Resume: kafkasrc.Position{Line: 11, Offset: 99}}
	for _, tc := range []struct {
		in   kafkasrc.InputStats
		err  error
		want string
	}{
		{kafkasrc.InputStats{Name: "in.log", Lines: 10, Acked: 10, Done: true}, nil, "produced 10 records (acked) to logs in 1.5s\n"},
		{in, fmt.Errorf("stopped: %w", context.Canceled), "stopped: produced 10 records (acked) to logs in 1.5s\n" +
			"in.log: every line before line 11 (byte offset 99) is in logs, and no line after it was sent; continue with --from-offset 99\n"},
		{kafkasrc.InputStats{Name: "in.log", Lines: 10, Acked: 7, AckedAfter: 2, Resume: kafkasrc.Position{Line: 6, Offset: 50}}, kafkasrc.ErrNotAcked,
			"produced 7 records (acked) to logs before the error\n" +
				"in.log: every line before line 6 (byte offset 50) is in logs; of the 5 lines read from there on, 2 were acknowledged and 3 may or may not be in logs, so resuming there sends them again; continue with --from-offset 50\n"},
		{kafkasrc.InputStats{Name: "app.log", Resume: kafkasrc.Position{Line: 3, Offset: 20}, Rotated: true, Lines: 1}, nil,
			"produced 0 records (acked) to logs in 1.5s\n" +
				"app.log: every line before line 3 (byte offset 20) of the file rotated away from it is in logs; of the 1 lines read from there on, 0 were acknowledged and 1 may or may not be in logs, so resuming there sends them again; the rest of that file is in its rotated copy\n"},
		{kafkasrc.InputStats{Name: "in.log", Resume: kafkasrc.Position{Offset: 42}}, context.Canceled, "stopped: produced 0 records (acked) to logs in 1.5s\n" +
			"in.log: every line before byte offset 42 is in logs, and no line after it was sent; continue with --from-offset 42\n"},
	} {
		var b strings.Builder
		s := kafkasrc.ProduceStats{Acked: tc.in.Acked, Elapsed: 1500 * time.Millisecond, Inputs: []kafkasrc.InputStats{tc.in}}
		if printProduceReport(&b, "logs", s, tc.err); b.String() != tc.want {
			t.Errorf("report of %+v, %v:\n%s\nwant:\n%s", tc.in, tc.err, b.String(), tc.want)
		}
	}
}
