package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProduceAndConsumeCmd(t *testing.T) {
	brokers := newFakeBrokers(t, "logs")
	file := filepath.Join(t.TempDir(), "in.log")
	if err := os.WriteFile(file, []byte("from file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, newProduceCmd, "", "--brokers", brokers, "--topic", "logs", "--compression", "zstd", file)
	if err != nil || !strings.HasPrefix(stderr, "produced 1 records (acked) to logs in ") {
		t.Fatalf("produce file: %q, %v", stderr, err)
	}
	_, stderr, err = run(t, newProduceCmd, "hello world\nsecond line\n", "--brokers", brokers, "--topic", "logs")
	if err != nil || !strings.HasPrefix(stderr, "produced 2 records (acked) to logs in ") {
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

	stdout, _, err = run(t, newConsumeCmd, "", "--brokers", brokers, "--topic", "logs", "--from-beginning", "--print-key", "--timeout", "300ms")
	if err != nil || strings.Count(stdout, "null\t") != 3 {
		t.Fatalf("consume --print-key: %q, %v", stdout, err)
	}
	// Without --from-beginning only new records are printed.
	stdout, stderr, err = run(t, newConsumeCmd, "", "--brokers", brokers, "--topic", "logs", "--timeout", "300ms")
	if err != nil || stdout != "" || stderr != "Processed a total of 0 messages\n" {
		t.Fatalf("consume from the end: %q %q, %v", stdout, stderr, err)
	}
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
	} {
		if _, _, err := run(t, newProduceCmd, "toolong\n", tc.args...); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("produce %q: error %v, want %q", tc.args, err, tc.errHas)
		}
	}
}
