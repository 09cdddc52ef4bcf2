package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/kafkatest"
)

// memoryChildEnv makes the test binary, re-run by TestSubmitMemoryBudget, run
// `gostream` with the arguments it holds (separated by newlines) and print
// its own peak RSS.
const memoryChildEnv = "GOSTREAM_TEST_MEMORY_CHILD"

// Bounds of TestSubmitMemoryBudget: 2,000,000 distinct words with a budget of
// 128 MiB. The margin covers what the budget does not split: the program's
// code, goroutine stacks, and the garbage between two collections of a heap
// at the Go runtime's soft limit. On the 2-core test machine the run
// peaked at 130 MiB in 25 batches; without the budget (before it existed)
// it read the 2M words in one batch and peaked at 900 MiB.
const (
	memoryTestWords  = 2_000_000
	memoryTestBudget = 128 << 20
	memoryTestMargin = 64 << 20
)

// TestSubmitMemoryBudget runs `gostream submit wordcount --memory 128MiB`
// in a child process over 2,000,000 distinct words on a real Kafka cluster,
// as one backlog with no maxOffsetsPerTrigger, in update mode, and checks
// that the child's peak RSS (VmHWM, as the child reads it from
// /proc/self/status before it exits) stays within the budget plus
// memoryTestMargin, and that every word was counted.
func TestSubmitMemoryBudget(t *testing.T) {
	if args := os.Getenv(memoryChildEnv); args != "" {
		runMemoryChild(strings.Split(args, "\n"))
		return
	}
	if testing.Short() {
		t.Skip("needs Kafka")
	}
	c := kafkatest.Start(t, kafkatest.Brokers(1))
	topic := kafkatest.UniqueTopic(t, "words")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	const perLine = 20
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range memoryTestWords / perLine {
		var line []byte
		for k := i * perLine; k < (i+1)*perLine; k++ {
			if k > i*perLine {
				line = append(line, ' ')
			}
			line = strconv.AppendInt(append(line, 'k'), int64(k), 10)
		}
		if recs = append(recs, &kgo.Record{Value: line}); len(recs) == 10_000 {
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}

	dir := t.TempDir()
	progress := filepath.Join(dir, "progress.jsonl")
	args := []string{"submit", "wordcount", "--brokers", c.BootstrapServers(), "--topic", topic,
		"--checkpoint", filepath.Join(dir, "checkpoint"), "--trigger", "available-now", "--output-mode", "update",
		"--starting-offsets", "earliest", "--sink", "jsonl:/dev/null", "--progress-json", progress, "-q",
		"--memory", strconv.Itoa(memoryTestBudget>>20) + "MiB"}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSubmitMemoryBudget$")
	cmd.Env = append(os.Environ(), memoryChildEnv+"="+strings.Join(args, "\n"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gostream %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var peakKB int64
	if _, err := fmt.Sscanf(string(out), "vmhwm_kb %d", &peakKB); err != nil {
		t.Fatalf("the child printed %q, want its peak RSS: %v", out, err)
	}
	peak := peakKB << 10

	b, err := os.ReadFile(progress)
	if err != nil {
		t.Fatal(err)
	}
	var batches, state int64
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var p struct {
			StateOperators []struct{ NumRowsTotal int64 } `json:"stateOperators"`
		}
		if err := json.Unmarshal([]byte(line), &p); err != nil || len(p.StateOperators) != 1 {
			t.Fatalf("progress line %q: %v", line, err)
		}
		batches, state = batches+1, p.StateOperators[0].NumRowsTotal
	}
	t.Logf("%d distinct words in %d batches with --memory %d MiB: peak RSS %d MiB", state, batches, memoryTestBudget>>20, peak>>20)
	if state != memoryTestWords {
		t.Errorf("the state holds %d words, want %d", state, memoryTestWords)
	}
	if peak > memoryTestBudget+memoryTestMargin {
		t.Errorf("peak RSS %d MiB, over the budget of %d MiB plus the margin of %d MiB", peak>>20, memoryTestBudget>>20, memoryTestMargin>>20)
	}
}

// runMemoryChild runs gostream with args, prints the process's peak RSS
// and exits.
func runMemoryChild(args []string) {
	cmd := newRootCmd("gostream")
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "gostream:", err)
		os.Exit(1)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Printf("vmhwm_kb %s\n", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	os.Exit(0)
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"512MiB": 512 << 20, "512m": 512 << 20, "512MB": 512 << 20, "2g": 2 << 30, "2GiB": 2 << 30,
		"1t": 1 << 40, "64k": 64 << 10, "1048576": 1 << 20, "1048576b": 1 << 20, " 1G ": 1 << 30,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "b", "1.5g", "-1m", "12x", "1mb2", "99999999999t"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}
