// Command suite benchmarks gostream against Spark Structured Streaming and a
// plain franz-go consumer (the ceiling) on the same Kafka topic, in one run.
//
// Run it through bench/run.sh, which installs pyspark into a cache directory,
// warms Spark's package cache, resolves Kafka Streams' examples jar, builds
// gostream and this command, then runs:
//
//	bash bench/run.sh                       # 10M lines, every system and run
//	bash bench/run.sh -n 1000000 -runs throughput,latency -rates 50000
//	bash bench/run.sh -runs words -systems gostream,kstreams -words-n 100000
//
// It starts a 3-broker Kafka cluster with kafkatest, loads N generated log
// lines into the topic logs (3 partitions, replication factor 2), runs each
// system's word count over it, then the latency runs (steady production at
// each rate, markers timed from produce to output), the state-scale run
// (millions of distinct words) and the words run (Kafka Streams'
// WordCountDemo against gostream's job of the same split). It prints a table
// and writes bench/results/latest.json and latest.png; bench/README.md
// explains every figure.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gostream/gostream/kafkatest"
)

// config is the suite's command line.
type config struct {
	records      int
	repeats      int
	wordsRecords int
	seed         uint64
	systems      []string
	runs         []string
	rates        []int
	stateKeys    int
	keysLine     int

	latencyRepeats  int
	latencyWarmup   time.Duration
	latencyDuration time.Duration
	latencyStartup  time.Duration
	markersPerSec   int
	timeout         time.Duration

	gostream               string
	gostreamLatencyTrigger string
	gostreamMemory         string
	gostreamBefore         string
	memoryRepeats          int

	cache             string
	sparkHome         string
	sparkScript       string
	sparkVersion      string
	sparkDriverMemory string
	python            string

	kstreamsLibs string
	kstreamsHeap string

	shufflePartitions int
	batches           int
	stateBatches      int

	results    string
	chart      string
	keep       bool
	warmMemory int64
}

// runNames lists the runs the suite knows, in order.
var runNames = []string{"throughput", "latency", "state", "words", "memory"}

// defaultNames is the default of -systems or -runs: every name but the
// memory run (asked for by name), the words run and Kafka Streams, which
// join it when Kafka Streams' jars are there (-kstreams-libs).
func defaultNames(names []string, kstreams bool) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool {
		return n == "memory" || !kstreams && (n == "kstreams" || n == "words")
	})
}

func parseFlags(args []string) (config, error) {
	var (
		c                    config
		systems, runs, rates string
		home, _              = os.UserCacheDir()
		seed                 int64
		fs                   = flag.NewFlagSet("suite", flag.ContinueOnError)
	)
	fs.IntVar(&c.records, "n", 10_000_000, "log lines to load into the topic logs for the throughput run")
	fs.Int64Var(&seed, "seed", 1, "seed of the log line generator")
	fs.IntVar(&c.wordsRecords, "words-n", 500_000, "log lines to load into streams-plaintext-input for the words run")
	fs.StringVar(&systems, "systems", "", "systems to run, comma separated: "+strings.Join(systemNames, ", ")+
		" (default: all; kstreams only with -kstreams-libs)")
	fs.StringVar(&runs, "runs", "", "runs to do, comma separated: "+strings.Join(runNames, ", ")+
		" (default: all; words only with -kstreams-libs)")
	fs.StringVar(&rates, "rates", "50000,100000", "production rates of the latency run, records/s, comma separated")
	fs.IntVar(&c.repeats, "repeats", 5, "runs of each system in the throughput run, the systems taking turns; each system's figures are those of its median run by records/s")
	fs.IntVar(&c.stateKeys, "state-keys", 10_000_000, "distinct words in the state-scale run")
	fs.IntVar(&c.keysLine, "state-keys-per-line", 20, "distinct words per line in the state-scale run")
	fs.IntVar(&c.latencyRepeats, "latency-repeats", 3, "runs of each system at each rate in the latency run, the systems taking turns; each system's figures are those of its median run by latency p99")
	fs.DurationVar(&c.latencyWarmup, "latency-warmup", 10*time.Second, "production at the rate, after the first marker came out, before markers count")
	fs.DurationVar(&c.latencyDuration, "latency-duration", 30*time.Second, "how long markers are counted in each latency run")
	fs.DurationVar(&c.latencyStartup, "latency-startup", 3*time.Minute, "how long a system may take to output its first marker")
	fs.IntVar(&c.markersPerSec, "markers-per-sec", 200, "markers per second in the latency run")
	fs.DurationVar(&c.timeout, "timeout", time.Hour, "limit for one system's run")
	fs.StringVar(&c.gostream, "gostream", "", "gostream binary (built from ./cmd/gostream)")
	fs.StringVar(&c.gostreamMemory, "gostream-memory", "", "gostream's --memory (default: not given, so gostream's default budget)")
	fs.StringVar(&c.gostreamBefore, "gostream-before", "", "the memory run only: an earlier gostream binary to run in turns with -gostream, without --memory")
	fs.IntVar(&c.memoryRepeats, "memory-repeats", 1, "runs of each binary in each case of the memory run, taking turns; each binary's figures are those of its median run by records/s")
	fs.StringVar(&c.gostreamLatencyTrigger, "gostream-latency-trigger", "default", "gostream's --trigger in the latency run (default: each batch starts when the last ends, as Spark's default trigger)")
	fs.StringVar(&c.cache, "cache", filepath.Join(home, "gostream-bench"), "cache directory: venv, Ivy cache")
	fs.StringVar(&c.sparkHome, "spark-home", "", "SPARK_HOME (the pyspark package directory in the venv)")
	fs.StringVar(&c.sparkScript, "spark-script", "bench/spark/wordcount.py", "the Spark job")
	fs.StringVar(&c.sparkVersion, "spark-version", "3.5.7", "version of spark-sql-kafka-0-10_2.12 (must match pyspark)")
	fs.StringVar(&c.sparkDriverMemory, "spark-driver-memory", "2g", "spark-submit --driver-memory (local mode: the whole JVM heap; Spark's default is 1g)")
	fs.IntVar(&c.shufflePartitions, "shuffle-partitions", 2*runtime.NumCPU(), "shuffle (state) partitions of both engines: spark.sql.shuffle.partitions and gostream --shuffle-partitions")
	fs.IntVar(&c.batches, "batches", 10, "split the throughput and state runs into about this many batches (maxOffsetsPerTrigger = records/batches; 0: no cap, one batch)")
	fs.IntVar(&c.stateBatches, "state-batches", 4, "like -batches, for the state-scale run (complete mode writes every key each batch)")
	fs.StringVar(&c.python, "python", "", "python with matplotlib and pyspark (default: the venv's)")
	fs.StringVar(&c.kstreamsLibs, "kstreams-libs", "", "directory of the jars of org.apache.kafka:kafka-streams-examples (bench/run.sh resolves bench/kstreams/pom.xml into it); without it kstreams cannot run")
	fs.StringVar(&c.kstreamsHeap, "kstreams-heap", "256m", "Kafka Streams' JVM -Xmx (kafka-run-class.sh's default, with which Kafka's quickstart runs WordCountDemo)")
	fs.StringVar(&c.results, "results", "bench/results", "directory for latest.json, latest.png and logs/")
	fs.StringVar(&c.chart, "chart", "bench/chart.py", "the chart script")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (checkpoints, outputs)")
	fs.Int64Var(&c.warmMemory, "warm-memory", 2<<30, "bytes of memory touched and freed right before each timed run, so that every run finds as much freshly freed memory whatever ran before it (capped at half of MemAvailable; 0: skip the step)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.seed = uint64(seed)
	var err error
	hasKStreams := c.kstreamsLibs != ""
	if systems == "" {
		systems = strings.Join(defaultNames(systemNames, hasKStreams), ",")
	}
	if runs == "" {
		runs = strings.Join(defaultNames(runNames, hasKStreams), ",")
	}
	if c.systems, err = pickList(systems, systemNames, "-systems"); err != nil {
		return c, err
	}
	if c.runs, err = pickList(runs, runNames, "-runs"); err != nil {
		return c, err
	}
	for _, r := range c.runs {
		if !slices.ContainsFunc(c.systems, func(sys string) bool { return takesPart(sys, r) }) {
			return c, fmt.Errorf("-runs %s: none of -systems %s takes part in it (it runs %s)",
				r, strings.Join(c.systems, ","), strings.Join(participants(r), ", "))
		}
	}
	for r := range strings.SplitSeq(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return c, fmt.Errorf("-rates: %q is not a positive number of records/s", r)
		}
		c.rates = append(c.rates, n)
	}
	if c.python == "" {
		c.python = filepath.Join(c.cache, "venv", "bin", "python")
	}
	if c.records <= 0 || c.repeats <= 0 || c.latencyRepeats <= 0 || c.wordsRecords <= 0 || c.stateKeys <= 0 || c.keysLine <= 0 || c.memoryRepeats <= 0 || c.markersPerSec <= 0 || c.shufflePartitions <= 0 || c.batches < 0 || c.stateBatches < 0 {
		return c, errors.New("-n, -repeats, -latency-repeats, -memory-repeats, -words-n, -state-keys, -state-keys-per-line, -markers-per-sec and -shuffle-partitions must be positive, -batches and -state-batches at least 0")
	}
	return c, nil
}

// pickList parses a comma separated list whose items must be in known.
func pickList(list string, known []string, flagName string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if !slices.Contains(known, item) {
			return nil, fmt.Errorf("%s: unknown %q (want some of %s)", flagName, item, strings.Join(known, ","))
		}
		out = append(out, item)
	}
	return out, nil
}

// checkPrereqs fails early, naming the fix, when a chosen system cannot run.
func (c config) checkPrereqs() error {
	has := func(name string) bool { return slices.Contains(c.systems, name) }
	if has("gostream") || has("gostream-cluster") {
		if c.gostream == "" {
			return errors.New("-gostream is required to run gostream (build it: go build -o /tmp/gostream ./cmd/gostream), or leave it out of -systems")
		}
		if _, err := os.Stat(c.gostream); err != nil {
			return fmt.Errorf("gostream binary: %w (build it with go build ./cmd/gostream)", err)
		}
	}
	if has("spark") {
		if c.sparkHome == "" {
			return errors.New("-spark-home is required to run Spark (bench/run.sh sets it up), or leave spark out of -systems")
		}
		for _, p := range []string{filepath.Join(c.sparkHome, "bin", "spark-submit"), c.sparkScript, c.python} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("spark: %w (run bench/run.sh, which installs pyspark into %s)", err, c.cache)
			}
		}
	}
	if has("kstreams") {
		if c.kstreamsLibs == "" {
			return errors.New("-kstreams-libs is required to run kstreams (bench/run.sh resolves Kafka Streams' jars and sets it), or leave kstreams out of -systems")
		}
		if _, err := kstreamsVersion(c.kstreamsLibs); err != nil {
			return err
		}
		if _, err := exec.LookPath("java"); err != nil {
			return errors.New("kstreams: java not found on PATH (Kafka Streams needs Java 11+)")
		}
	}
	return nil
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("suite: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == ceilingCmd {
		if err := runCeiling(ctx, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "ceiling:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		err = cfg.checkPrereqs()
	}
	if err == nil {
		err = run(ctx, cfg)
	}
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// suite holds what every run shares.
type suite struct {
	cfg     config
	self    string // this executable, re-run as the ceiling consumer
	cluster *kafkatest.Cluster
	work    string // checkpoints and outputs
	logs    string
	results []result
	// loaded holds the expected counts of the topics loaded so far.
	loaded map[string]*wordCounts
}

func run(ctx context.Context, cfg config) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	s := &suite{cfg: cfg, self: self, logs: filepath.Join(cfg.results, "logs"), loaded: make(map[string]*wordCounts)}
	if err := os.MkdirAll(s.logs, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	if s.work, err = os.MkdirTemp("", "gostream-bench-"); err != nil {
		return err
	}
	if cfg.keep {
		log.Printf("work directory (kept): %s", s.work)
	} else {
		defer os.RemoveAll(s.work)
	}

	log.Print("starting a 3-broker Kafka cluster (the first run resolves Kafka's jars with Maven)")
	s.cluster, err = kafkatest.StartCluster(ctx, kafkatest.Brokers(3), kafkatest.Logf(log.Printf),
		kafkatest.BrokerJVM(kafkatest.ServerJVM...))
	if err != nil {
		return fmt.Errorf("kafka cluster: %w", err)
	}
	defer s.cluster.Close()
	log.Printf("kafka up at %s", s.cluster.BootstrapServers())

	started := time.Now()
	for _, r := range cfg.runs {
		var err error
		switch r {
		case "throughput":
			err = s.throughputRun(ctx)
		case "latency":
			err = s.latencyRuns(ctx)
		case "state":
			err = s.stateRun(ctx)
		case "words":
			err = s.wordsRun(ctx)
		case "memory":
			err = s.memoryRun(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s run: %w", r, err)
		}
	}
	return s.report(started)
}

// throughputRun loads cfg.records log lines into logs and runs every system
// over them.
func (s *suite) throughputRun(ctx context.Context) error {
	if err := s.loadLogs(ctx); err != nil {
		return err
	}
	s.runAll(ctx, "throughput", s.bulkJob("logs", s.cfg.records, s.cfg.batches, false), s.loaded["logs"], s.cfg.repeats)
	return nil
}

// stateRun loads cfg.stateKeys distinct words and runs every system over them.
func (s *suite) stateRun(ctx context.Context) error {
	if err := s.loadKeys(ctx); err != nil {
		return err
	}
	lines := (s.cfg.stateKeys + s.cfg.keysLine - 1) / s.cfg.keysLine
	s.runAll(ctx, "state", s.bulkJob("keys", lines, s.cfg.stateBatches, true), s.loaded["keys"], 1)
	return nil
}

// bulkJob is a job over a loaded topic, split into about batches batches
// (0: no cap).
func (s *suite) bulkJob(topic string, records, batches int, bigState bool) job {
	j := job{topic: topic, records: int64(records), bigState: bigState}
	if batches > 0 {
		j.maxOffsets = int64((records + batches - 1) / batches)
	}
	return j
}

// load creates topic (3 partitions, replication factor 2) and produces n
// lines into it.
func (s *suite) load(ctx context.Context, topic string, n int, next func(i int) []byte) error {
	if err := s.cluster.CreateTopic(ctx, topic, 3, 2); err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	start := time.Now()
	if err := produceAll(ctx, s.cluster.Addrs(), topic, n, next); err != nil {
		return err
	}
	log.Printf("loaded %d lines into %s in %.1fs", n, topic, time.Since(start).Seconds())
	return nil
}

// runAll runs each chosen system on the job and records its result; a
// system's failure is recorded, not fatal. With repeats above 1 the systems
// take turns, round after round, so that a slow spell of a shared machine
// does not fall on one system's runs alone, and each system's result is its
// median run (see medianRun).
func (s *suite) runAll(ctx context.Context, runName string, j job, want *wordCounts, repeats int) {
	all := s.systems()
	runs := make(map[string][]result)
	for round := 1; round <= repeats && ctx.Err() == nil; round++ {
		label := runName
		if repeats > 1 {
			label = fmt.Sprintf("%s (round %d of %d)", runName, round, repeats)
		}
		for _, name := range s.cfg.systems {
			if ctx.Err() != nil {
				break
			}
			if !takesPart(name, runName) {
				continue
			}
			log.Printf("%s: %s over %d records", label, name, j.records)
			r := s.runOnce(ctx, all[name], runName, j, want, round)
			if r.Error != "" {
				log.Printf("%s: %s FAILED: %s", label, name, r.Error)
			} else {
				log.Printf("%s: %s done in %.1fs (%s records/s)", label, name, *r.WallS, humanCount(*r.RecordsPerSec))
			}
			runs[name] = append(runs[name], r)
		}
	}
	s.addMedians(runs, recordsPerSec, true, func(m *result, rates []float64) { m.Repeats = rates })
}

// addMedians records each system's median run of runs by key (see
// medianRun), in the order of cfg.systems; keep stores every run's figure
// on it.
func (s *suite) addMedians(runs map[string][]result, key func(result) *float64, higherIsBetter bool, keep func(m *result, figures []float64)) {
	for _, name := range s.cfg.systems {
		if rs := runs[name]; len(rs) > 0 {
			m, figures := medianRun(rs, key, higherIsBetter)
			keep(&m, figures)
			s.results = append(s.results, m)
		}
	}
}

// medianRun is the run with the median figure of key, and every run's
// figure in the order they ran; or, if a run failed, the first that did (a
// failure is never hidden by a median) and no figures. Of an even number
// of runs it takes the worse middle one: the lower with higherIsBetter,
// else the higher. One run is returned alone.
func medianRun(rs []result, key func(result) *float64, higherIsBetter bool) (result, []float64) {
	if len(rs) == 1 {
		return rs[0], nil
	}
	var figures []float64
	for _, r := range rs {
		if r.Error != "" || key(r) == nil {
			return r, nil
		}
		figures = append(figures, *key(r))
	}
	sorted := slices.Clone(rs)
	slices.SortStableFunc(sorted, func(a, b result) int {
		if higherIsBetter {
			return cmp.Compare(*key(a), *key(b))
		}
		return cmp.Compare(*key(b), *key(a))
	})
	return sorted[(len(sorted)-1)/2], figures
}

func recordsPerSec(r result) *float64 { return r.RecordsPerSec }

func latencyP99(r result) *float64 { return r.LatencyP99Ms }

// runOnce runs one system to completion and measures it.
// round numbers a repeated run; later rounds get their own work directory
// and log.
func (s *suite) runOnce(ctx context.Context, sys system, runName string, j job, want *wordCounts, round int) result {
	r := result{System: sys.name, Run: runName, Records: j.records}
	j.brokers = s.cluster.BootstrapServers()
	id := runName + "-" + sys.name
	if round > 1 {
		id += "-" + strconv.Itoa(round)
	}
	j.dir = filepath.Join(s.work, id)
	if err := os.MkdirAll(j.dir, 0o755); err != nil {
		r.Error = err.Error()
		return r
	}
	logPath := filepath.Join(s.logs, id+".log")
	var with []int
	if sys.workers {
		g, err := s.startWorkers(ctx, j, filepath.Join(s.logs, id))
		if err != nil {
			r.Error = err.Error()
			return r
		}
		defer g.stop()
		j.master, with = g.master, g.pids()
	}
	cmd, err := sys.command(j)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if err := warmMemory(s.cfg.warmMemory); err != nil {
		r.Error = err.Error()
		return r
	}
	c, err := startChild(cmd, logPath, nil, with...)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	if sys.serves {
		s.serveOnce(ctx, c, j, want, &r)
		return r
	}
	if sys.progress {
		go logProgress(ctx, c, runName+": "+sys.name, j.progressPath())
	}
	u, err := c.wait(ctx)
	r.setUsage(u)
	wall := u.end.Sub(u.start).Seconds()
	r.WallS, r.RecordsPerSec = &wall, ptr(float64(j.records)/wall)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if sys.progress {
		st, err := readProgress(j.progressPath())
		if err != nil {
			r.Error = err.Error()
			return r
		}
		r.Batches = st.batches
		r.FirstBatchS = ptr(st.firstBatch.Sub(u.start).Seconds())
		r.BatchP50Ms, r.BatchP99Ms = st.p50, st.p99
	}
	if sys.check != nil {
		err := sys.check(j, want)
		r.CountsMatch = ptr(err == nil)
		if err != nil {
			r.Error = err.Error()
		}
	}
	return r
}

func ptr[T any](v T) *T { return &v }

// progressEvery is how often logProgress reports on a running system.
const progressEvery = 15 * time.Second

// logProgress logs, every progressEvery until the child exits or ctx ends,
// how many batches and rows its progress file reports.
func logProgress(ctx context.Context, c *child, label, path string) {
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.exited:
			return
		case <-tick.C:
			batches, rows := progressSoFar(path)
			log.Printf("%s: %d batches, %d rows after %.0fs", label, batches, rows, time.Since(c.start).Seconds())
		}
	}
}
