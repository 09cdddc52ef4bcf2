package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// job is one run of one system against one topic.
type job struct {
	brokers string
	topic   string
	records int64 // records in the topic (throughput and state runs)
	// maxOffsets caps the records per batch (maxOffsetsPerTrigger); 0: no cap.
	maxOffsets int64
	dir        string // fresh directory for checkpoint, output and progress
	// master is submit's --master for a cluster's job; empty: local mode.
	master string
	// latency selects update mode with changed rows on stdout and the
	// shortest trigger; continuous (memory run) update mode with the
	// default trigger and no output; otherwise complete mode, trigger
	// available-now.
	latency, continuous bool
	// bigState tells Spark to keep state in RocksDB, as a user expecting
	// millions of keys would.
	bigState bool
	// demoSplit selects Kafka Streams' WordCountDemo's split (lowercase, on
	// \W+) instead of Spark's (on ' '): gostream runs wordcount-words.
	demoSplit bool
}

func (j job) progressPath() string { return filepath.Join(j.dir, "progress.jsonl") }

// system is one of the benchmarked engines.
type system struct {
	name string
	// command returns the process to run for a job.
	command func(j job) (*exec.Cmd, error)
	// check compares the job's final counts with want; nil for systems that
	// count nothing.
	check func(j job, want *wordCounts) error
	// progress tells whether the system writes per-batch progress reports.
	progress bool
	// serves tells that the system runs until stopped (Kafka Streams): the
	// run reads its output and stops it once the counts are final.
	serves bool
	// workers tells that each run starts a cluster of workers
	// (startWorkers) that the command submits to, and stops it after.
	workers bool
}

// systemNames lists the systems the suite knows, in report order.
var systemNames = []string{"ceiling", "gostream", "gostream-cluster", "spark", "kstreams"}

// systemRuns lists the runs each system takes part in: Spark's job splits
// on ' ' only, so it sits out the words run, which is the only one
// WordCountDemo (fixed topics, its own split) can do.
var systemRuns = map[string][]string{
	"ceiling":          {"throughput", "latency", "state", "words"},
	"gostream":         {"throughput", "latency", "state", "words", "memory"},
	"gostream-cluster": {"throughput"},
	"spark":            {"throughput", "latency", "state"},
	"kstreams":         {"words"},
}

func takesPart(system, run string) bool { return slices.Contains(systemRuns[system], run) }

// participants returns the systems that take part in run, in report order.
func participants(run string) []string {
	return slices.DeleteFunc(slices.Clone(systemNames), func(sys string) bool { return !takesPart(sys, run) })
}

// systems builds the systems from the suite's configuration.
func (s *suite) systems() map[string]system {
	return map[string]system{
		"ceiling": {
			name: "ceiling",
			command: func(j job) (*exec.Cmd, error) {
				return exec.Command(s.self, ceilingCmd, j.brokers, j.topic, strconv.FormatInt(j.records, 10)), nil
			},
		},
		"gostream": {
			name:     "gostream",
			command:  s.gostreamCmd,
			progress: true,
			check: func(j job, want *wordCounts) error {
				return checkJSONLines(filepath.Join(j.dir, "out.jsonl"), want)
			},
		},
		"gostream-cluster": {
			name:     "gostream-cluster",
			command:  s.gostreamCmd,
			progress: true,
			workers:  true,
			check: func(j job, want *wordCounts) error {
				return checkJSONLines(filepath.Join(j.dir, "out.jsonl"), want)
			},
		},
		"spark": {
			name:     "spark",
			command:  s.sparkCmd,
			progress: true,
			check: func(j job, want *wordCounts) error {
				return checkSparkDir(filepath.Join(j.dir, "out"), want)
			},
		},
		"kstreams": {
			name:    "kstreams",
			command: s.kstreamsCmd,
			serves:  true,
		},
	}
}

func (s *suite) gostreamCmd(j job) (*exec.Cmd, error) {
	return exec.Command(s.cfg.gostream, append(s.gostreamArgs(j), s.memoryArgs()...)...), nil
}

// gostreamArgs are the arguments of gostream submit for a job, but for
// --memory.
func (s *suite) gostreamArgs(j job) []string {
	trigger, mode, sink := "available-now", "complete", "jsonl:"+filepath.Join(j.dir, "out.jsonl")
	switch {
	case j.latency:
		trigger, mode, sink = s.cfg.gostreamLatencyTrigger, "update", "jsonl:-"
	case j.continuous:
		trigger, mode, sink = "default", "update", "jsonl:/dev/null"
	}
	query := "wordcount"
	if j.demoSplit {
		query = "wordcount-words"
	}
	where := []string{"--checkpoint", filepath.Join(j.dir, "checkpoint")}
	if j.master != "" {
		where = []string{"--master", j.master}
	}
	return append([]string{"submit", query,
		"--brokers", j.brokers, "--topic", j.topic}, append(where,
		"--trigger", trigger, "--output-mode", mode,
		"--starting-offsets", "earliest", "--sink", sink,
		"--max-offsets-per-trigger", strconv.FormatInt(j.maxOffsets, 10),
		"--shuffle-partitions", strconv.Itoa(s.cfg.shufflePartitions),
		"--progress-json", j.progressPath())...)
}

func (s *suite) sparkCmd(j job) (*exec.Cmd, error) {
	args := []string{
		"--master", "local[*]",
		"--driver-memory", s.cfg.sparkDriverMemory,
		"--conf", "spark.ui.enabled=false",
		"--conf", "spark.log.level=WARN",
		"--conf", "spark.sql.shuffle.partitions=" + strconv.Itoa(s.cfg.shufflePartitions),
		"--conf", "spark.jars.ivy=" + filepath.Join(s.cfg.cache, "ivy"),
		"--packages", "org.apache.spark:spark-sql-kafka-0-10_2.12:" + s.cfg.sparkVersion,
	}
	if j.bigState {
		args = append(args, "--conf",
			"spark.sql.streaming.stateStore.providerClass=org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
	}
	args = append(args, s.cfg.sparkScript,
		"--brokers", j.brokers, "--topic", j.topic,
		"--checkpoint", filepath.Join(j.dir, "checkpoint"),
		"--progress", j.progressPath(),
		"--starting-offsets", "earliest",
		"--max-offsets-per-trigger", strconv.FormatInt(j.maxOffsets, 10))
	if j.latency {
		// "0 seconds" is Spark's default trigger: each batch starts as soon
		// as the previous one ends.
		args = append(args, "--output-mode", "update", "--trigger", "processing-time=0 seconds")
	} else {
		args = append(args, "--output-mode", "complete", "--trigger", "available-now",
			"--output-dir", filepath.Join(j.dir, "out"))
	}
	cmd := exec.Command(filepath.Join(s.cfg.sparkHome, "bin", "spark-submit"), args...)
	cmd.Env = append(os.Environ(),
		"SPARK_HOME="+s.cfg.sparkHome,
		"PYSPARK_PYTHON="+s.cfg.python,
		"PYSPARK_DRIVER_PYTHON="+s.cfg.python,
		"SPARK_LOCAL_IP=127.0.0.1")
	return cmd, nil
}

// batchReport is the part of a StreamingQueryProgress the suite reads; Spark
// and gostream (--progress-json) write the same fields.
type batchReport struct {
	BatchID      int64     `json:"batchId"`
	NumInputRows int64     `json:"numInputRows"`
	Timestamp    time.Time `json:"timestamp"` // when the trigger fired
	DurationMs   struct {
		TriggerExecution float64 `json:"triggerExecution"`
	} `json:"durationMs"`
}

// progressSoFar returns the batches and rows in a progress file being
// written; a partly written last line is skipped.
func progressSoFar(path string) (batches int, rows int64) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var b batchReport
		if json.Unmarshal(sc.Bytes(), &b) == nil {
			batches++
			rows += b.NumInputRows
		}
	}
	return batches, rows
}

// batchStats summarises a progress file.
type batchStats struct {
	batches    int
	firstBatch time.Time // end of the first batch: its timestamp + triggerExecution
	p50, p99   *float64  // triggerExecution of batches that read rows, in ms
}

// readProgress reads a JSON-lines progress file.
func readProgress(path string) (batchStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return batchStats{}, fmt.Errorf("progress reports: %w", err)
	}
	defer f.Close()
	var (
		st        batchStats
		durations []float64
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var b batchReport
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			return st, fmt.Errorf("%s: bad progress report %q: %w", path, truncate(sc.Text(), 120), err)
		}
		end := b.Timestamp.Add(time.Duration(b.DurationMs.TriggerExecution * float64(time.Millisecond)))
		if st.batches == 0 || end.Before(st.firstBatch) {
			st.firstBatch = end
		}
		st.batches++
		if b.NumInputRows > 0 {
			durations = append(durations, b.DurationMs.TriggerExecution)
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if st.batches == 0 {
		return st, fmt.Errorf("%s has no progress reports (did a batch finish?)", path)
	}
	slices.Sort(durations)
	st.p50, st.p99 = percentile(durations, 50), percentile(durations, 99)
	return st, nil
}

// percentile returns the nearest-rank percentile p of sorted values, or nil
// when there are none.
func percentile(sorted []float64, p float64) *float64 {
	if len(sorted) == 0 {
		return nil
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return &sorted[min(max(rank, 0), len(sorted)-1)]
}
