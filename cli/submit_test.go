package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gostream/gostream/examples/wordcount"
)

func runCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCmd("gostream")
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func sampleCounts() map[string]int64 {
	m := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSuffix(string(wordcount.Sample), "\n"), "\n") {
		for _, w := range strings.Split(line, " ") {
			m[w]++
		}
	}
	return m
}

// TestSubmitZeroSetup is the README's first command: the embedded broker,
// the built-in sample, Spark's console format.
func TestSubmitZeroSetup(t *testing.T) {
	out, _, err := runCLI(t, "", "submit", "wordcount")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "-------------------------------------------\nBatch: 0\n") || !strings.Contains(out, "|                word|count|") || !strings.Contains(out, "only showing top 20 rows") {
		t.Fatalf("unexpected console output:\n%s", out)
	}
}

func TestSubmitSampleExactCounts(t *testing.T) {
	out, stderr, err := runCLI(t, "", "submit", "wordcount", "--sink", "jsonl:-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "batch 0: 240 input rows") {
		t.Errorf("no progress line on stderr: %q", stderr)
	}
	if !regexp.MustCompile(`rows/s; list \d+, map \d+, offsets log \d+, reduce \d+, sink \d+, commit log \d+ ms\)`).MatchString(stderr) {
		t.Errorf("the progress line lacks the batch's phases: %q", stderr)
	}
	got := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec struct {
			Word  string `json:"word"`
			Count int64  `json:"count"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got[rec.Word] = rec.Count
	}
	want := sampleCounts()
	if len(got) != len(want) {
		t.Fatalf("%d words, want %d", len(got), len(want))
	}
	for w, n := range want {
		if got[w] != n {
			t.Errorf("%q: %d, want %d", w, got[w], n)
		}
	}
}

func TestSubmitFileAndStdin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.log")
	os.WriteFile(path, []byte("x y\ny\n"), 0o644)
	out, _, err := runCLI(t, "", "submit", "wordcount", "--input", path, "--sink", "jsonl:-", "--quiet")
	if err != nil || !strings.Contains(out, `"word":"y","count":2`) {
		t.Fatalf("file: %v\n%s", err, out)
	}
	// Standard input is read through os.Stdin by the collector; feed it a pipe.
	r, w, _ := os.Pipe()
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old })
	w.WriteString("p q\nq\n")
	w.Close()
	out, _, err = runCLI(t, "", "submit", "wordcount", "--input", "-", "--sink", "jsonl:-", "--output-mode", "update", "--quiet")
	if err != nil || !strings.Contains(out, `"word":"q","count":2`) {
		t.Fatalf("stdin: %v\n%s", err, out)
	}
}

func TestSubmitFlagErrors(t *testing.T) {
	cases := map[string][]string{
		"use an interval like 1s":                            {"submit", "wordcount", "--trigger", "fast"},
		"below the minimum of 1ms":                           {"submit", "wordcount", "--trigger", "1ns"},
		"use append, complete or update":                     {"submit", "wordcount", "--output-mode", "all"},
		"use console, jsonl:PATH or jsonl:-":                 {"submit", "wordcount", "--sink", "parquet"},
		"unknown job":                                        {"submit", "nope"},
		"--starting-offsets":                                 {"submit", "wordcount", "--starting-offsets", "first"},
		"with --brokers, load the topic":                     {"submit", "wordcount", "--brokers", "127.0.0.1:1", "--input", "x"},
		"append output mode with an aggregation":             {"submit", "wordcount", "--output-mode", "append"},
		"--kafka-retry-timeout 0s: use a positive duration":  {"submit", "wordcount", "--brokers", "127.0.0.1:1", "--kafka-retry-timeout", "0"},
		`invalid argument "maybe" for "--fail-on-data-loss"`: {"submit", "wordcount", "--fail-on-data-loss=maybe"},
		// Checked before any broker is asked (none listens there).
		`kafka: invalid topic name "bad name"`:  {"submit", "wordcount", "--brokers", "127.0.0.1:1", "--topic", "bad name", "--trigger", "once"},
		"--memory 10m: use at least 64MiB":      {"submit", "wordcount", "--memory", "10m"},
		"--memory 1.5g: use a size like 512MiB": {"submit", "wordcount", "--memory", "1.5g"},
	}
	for want, args := range cases {
		_, _, err := runCLI(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err = %v, want it to mention %q", args, err, want)
		}
	}
}

// TestSubmitProgressJSONAppends runs a query twice with the same
// --progress-json file: the second run appends its reports after the
// first's, and a torn last line (a crash mid-write) is cut first.
func TestSubmitProgressJSONAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "progress.jsonl")
	batches := func() []int64 {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, line := range strings.SplitAfter(string(raw), "\n") {
			if line == "" {
				continue
			}
			var p struct {
				BatchID *int64 `json:"batchId"`
			}
			if err := json.Unmarshal([]byte(line), &p); err != nil || p.BatchID == nil || !strings.HasSuffix(line, "\n") {
				t.Fatalf("line %q of %s is not a whole progress report (%v)", line, path, err)
			}
			ids = append(ids, *p.BatchID)
		}
		return ids
	}
	run := func() {
		t.Helper()
		if _, _, err := runCLI(t, "", "submit", "wordcount", "--sink", "jsonl:-", "--quiet", "--progress-json", path); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if got := batches(); len(got) != 1 {
		t.Fatalf("first run reported batches %v, want one", got)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"torn","batchId":7,"numInp`)
	f.Close()
	run()
	if got := batches(); len(got) != 2 || got[0] != 0 || got[1] != 0 {
		t.Fatalf("after a second run the file reports batches %v, want both runs' batch 0", got)
	}
}

// TestSubmitProgressJSONWriteFails runs a query whose --progress-json file
// cannot be written (/dev/full: every write fails with ENOSPC): the query
// still counts, in several batches, and the failure is said once, naming
// the batch from which reports are missing.
func TestSubmitProgressJSONWriteFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("this test writes to /dev/full: %v", err)
	}
	stdout, stderr, err := runCLI(t, "", "submit", "wordcount", "--sink", "jsonl:-", "--quiet", "--max-offsets-per-trigger", "50", "--progress-json", "/dev/full")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, `{"batch":2,`) {
		t.Fatalf("the query did not run three batches or more (%d bytes of rows)", len(stdout))
	}
	const want = "warning: --progress-json: write /dev/full: no space left on device; the reports of batch 0 and later are not written to it"
	if n := strings.Count(stderr, "--progress-json"); n != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("stderr says %q; want the failure once: %q", stderr, want)
	}
}

// TestSubmitProfiles checks that --cpuprofile, --memprofile and --trace
// each write their file, the trace in go tool trace's format, and that an
// unwritable path is an error naming the flag before the query starts,
// with the profile started before it stopped.
func TestSubmitProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, mem, tr := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "mem.pprof"), filepath.Join(dir, "run.trace")
	if _, _, err := runCLI(t, "", "submit", "wordcount", "--sink", "jsonl:-", "--quiet",
		"--cpuprofile", cpu, "--memprofile", mem, "--trace", tr); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cpu, mem, tr} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v, want a non-empty file", p, err)
		}
	}
	if b, _ := os.ReadFile(tr); !strings.HasPrefix(string(b), "go 1.") {
		t.Errorf("trace starts %q, want the execution trace header \"go 1.\"", b[:min(len(b), 8)])
	}
	_, _, err := runCLI(t, "", "submit", "wordcount", "--quiet", "--cpuprofile", cpu, "--trace", filepath.Join(dir, "missing", "run.trace"))
	if err == nil || !strings.Contains(err.Error(), "--trace") {
		t.Errorf("unwritable trace path: got %v, want an error naming --trace", err)
	}
	// The CPU profile started before the trace failed was stopped: another
	// run can profile.
	if _, _, err := runCLI(t, "", "submit", "wordcount", "--sink", "jsonl:-", "--quiet", "--cpuprofile", cpu); err != nil {
		t.Errorf("profiling after a failed --trace: %v", err)
	}
}
