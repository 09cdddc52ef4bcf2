package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/examples/wordcount"
	"github.com/gostream/gostream/kafkasrc"
)

type submitFlags struct {
	master, brokers, topic, checkpoint, trigger, outputMode, startingOffsets, sink, input, progressJSON, logLevel, memory string
	cpuProfile, memProfile, traceFile                                                                                     string
	maxOffsets                                                                                                            int64
	kafkaRetryTimeout                                                                                                     time.Duration
	numRows, shufflePartitions                                                                                            int
	truncate, quiet, failOnDataLoss                                                                                       bool
}

func newSubmitCmd() *cobra.Command {
	var f submitFlags
	cmd := &cobra.Command{
		Use:   "submit JOB",
		Short: "Run a registered streaming job (instead of spark-submit)",
		Long: `Run a registered streaming job, the way spark-submit runs a Spark job.

With --brokers, the job reads the topic of a Kafka cluster and runs until
stopped (Ctrl-C) or until its trigger finishes (once, available-now).

With --master gostream://host:port,... the job is registered with a cluster
of gostream workers, whose leader drives it; submit then follows it, showing
its output and a progress line per batch, until it finishes (once,
available-now), fails or is stopped (gostream jobs stop). Ctrl-C detaches:
the job runs on.

Without --brokers it needs no setup: gostream starts an embedded Kafka-protocol
broker on 127.0.0.1, creates the topic, feeds it the lines of --input (a file,
or - for standard input; the built-in sample log when absent) and stops once
every line is counted.

Jobs: ` + jobList(),
		Example: `  gostream submit wordcount
  gostream submit wordcount --input access.log --sink jsonl:counts.jsonl
  tail -F app.log | gostream submit wordcount --input - --output-mode update
  gostream submit wordcount --brokers s1:9092,s2:9092,s3:9092 --topic logs --checkpoint /var/lib/gostream/wc --trigger 1s
  gostream submit wordcount --master gostream://s1:7077,s2:7077,s3:7077 --brokers s1:9092,s2:9092,s3:9092 --trigger 1s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runSubmit(cmd.Context(), cmd, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.master, "master", cmp.Or(os.Getenv("GOSTREAM_MASTER"), "local[*]"),
		"where the job runs: local[*] (this process) or gostream://host:port,... naming workers of a cluster ($GOSTREAM_MASTER sets the default)")
	fl.StringVar(&f.brokers, "brokers", "", "Kafka bootstrap servers, host:port,... (none: start an embedded broker)")
	fl.StringVar(&f.topic, "topic", "logs", "topic to read")
	fl.StringVar(&f.checkpoint, "checkpoint", "", "checkpoint directory; restarting with it resumes exactly where the query stopped (none: a temporary one)")
	fl.StringVar(&f.trigger, "trigger", "", "when batches run: an interval like 1s, once, available-now, or default (as soon as the last batch ends); embedded mode defaults to available-now")
	fl.StringVar(&f.outputMode, "output-mode", "complete", "complete (the whole table each batch) or update (changed rows)")
	fl.StringVar(&f.startingOffsets, "starting-offsets", "", "where a new query starts: earliest, latest or JSON like {\"logs\":{\"0\":42}} (default latest; earliest in embedded mode)")
	fl.Int64Var(&f.maxOffsets, "max-offsets-per-trigger", 0, "cap on records per batch over all partitions (0: no cap)")
	fl.BoolVar(&f.failOnDataLoss, "fail-on-data-loss", true, "stop when offsets to read were deleted (retention) or the topic was recreated; false skips them with a warning")
	fl.DurationVar(&f.kafkaRetryTimeout, "kafka-retry-timeout", kafkasrc.DefaultRetryTimeout, "how long to wait for Kafka to recover (a partition without a leader, a broker down) before stopping")
	fl.StringVar(&f.sink, "sink", "console", "console, jsonl:PATH (one JSON object per row, idempotent across restarts; a device or FIFO is written at least once) or jsonl:- (standard output)")
	fl.IntVar(&f.numRows, "num-rows", 20, "console sink: rows shown per batch")
	fl.BoolVar(&f.truncate, "truncate", true, "console sink: cut cells to 20 characters")
	fl.StringVar(&f.input, "input", "", "embedded mode: file of lines to count, or - for standard input (default: the built-in sample log)")
	fl.IntVar(&f.shufflePartitions, "shuffle-partitions", 0, fmt.Sprintf("state partitions of a new query (default %d; fixed by the checkpoint afterwards)", engine.DefaultShufflePartitions))
	fl.StringVar(&f.memory, "memory", "512MiB", "memory budget of the query, split among its state, fetch buffers and batches, and the Go runtime's soft limit: like 512MiB, 2GiB or Spark's 512m, 2g (at least 64MiB)")
	fl.StringVar(&f.progressJSON, "progress-json", "", "append each batch's progress as one JSON line to this file")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no per-batch progress lines on stderr")
	fl.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	fl.StringVar(&f.memProfile, "memprofile", "", "write a heap profile at the end of the run to this file (go tool pprof)")
	fl.StringVar(&f.traceFile, "trace", "", "write an execution trace of the run to this file (go tool trace): where batches wait, for the CPU, the disk or each other")
	return cmd
}

func jobList() string {
	var parts []string
	for _, j := range engine.Jobs() {
		parts = append(parts, j.Name+" ("+j.Description+")")
	}
	return strings.Join(parts, "; ")
}

func runSubmit(ctx context.Context, cmd *cobra.Command, name string, f submitFlags) error {
	job, err := engine.LookupJob(name)
	if err != nil {
		return err
	}
	addrs, err := f.clusterAddrs()
	if err != nil {
		return err
	}
	stopProfiles, err := startProfiles(f.cpuProfile, f.memProfile, f.traceFile)
	if err != nil {
		return err
	}
	defer stopProfiles()
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", f.logLevel)
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	mode, err := engine.ParseOutputMode(f.outputMode)
	if err != nil {
		return fmt.Errorf("--output-mode: %w", err)
	}
	embedded := f.brokers == ""
	if f.trigger == "" && embedded && f.input != "-" {
		f.trigger = "available-now" // count the file, then stop
	}
	trig, err := engine.ParseTrigger(f.trigger)
	if err != nil {
		return fmt.Errorf("--trigger: %w", err)
	}
	if f.startingOffsets == "" {
		f.startingOffsets = "latest"
		if embedded {
			f.startingOffsets = "earliest"
		}
	}
	if _, err := kafkasrc.ParseStartingOffsets(f.startingOffsets); err != nil {
		return fmt.Errorf("--starting-offsets: %w", err)
	}
	if f.maxOffsets < 0 {
		return fmt.Errorf("--max-offsets-per-trigger %d: use 0 (no cap) or a positive number", f.maxOffsets)
	}
	memory, err := parseBytes(f.memory)
	if err == nil && memory < engine.MinMemory {
		err = fmt.Errorf("use at least %dMiB (the Go runtime, the Kafka clients and Pebble need about that much)", engine.MinMemory>>20)
	}
	if err != nil {
		return fmt.Errorf("--memory %s: %w", f.memory, err)
	}
	if f.input != "" && !embedded {
		return errors.New("--input feeds the embedded broker; with --brokers, load the topic with `gostream produce` instead")
	}

	s := engine.NewSession(engine.WithLogger(log))
	var feed func(ctx context.Context) error
	if embedded {
		var closeBroker func()
		feed, closeBroker, err = startEmbedded(ctx, &f, log)
		if err != nil {
			return err
		}
		defer closeBroker()
	}
	if f.kafkaRetryTimeout <= 0 {
		return fmt.Errorf("--kafka-retry-timeout %v: use a positive duration such as 5m", f.kafkaRetryTimeout)
	}
	df := job.Build(s, engine.JobParams{Brokers: f.brokers, Topic: f.topic, StartingOffsets: f.startingOffsets, MaxOffsetsPerTrigger: f.maxOffsets,
		FailOnDataLoss: &f.failOnDataLoss, KafkaRetryTimeout: f.kafkaRetryTimeout})
	w := df.WriteStream().OutputMode(mode).Trigger(trig).QueryName(name).ShufflePartitions(f.shufflePartitions).Memory(memory)
	if err := configureSink(w, f, cmd.OutOrStdout(), addrs != nil); err != nil {
		return err
	}
	if addrs != nil {
		return submitToCluster(ctx, cmd, name, w, f, addrs)
	}
	if f.checkpoint != "" {
		w.Option("checkpointLocation", f.checkpoint)
	}
	printProgress, closeProgress, err := progressPrinter(f, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeProgress()
	w.OnProgress(printProgress)

	finite := f.trigger == "once" || strings.EqualFold(f.trigger, "available-now") || strings.EqualFold(f.trigger, "availablenow")
	if feed != nil && (f.input != "-" || finite) {
		if err := feed(ctx); err != nil { // load it all, then count it
			return err
		}
		feed = nil
	}
	q, err := w.Start(ctx)
	if err != nil {
		return err
	}
	if feed != nil { // standard input: count while lines arrive, stop at EOF
		if err := feed(ctx); err != nil {
			q.Stop()
			return err
		}
		if err := q.ProcessAllAvailable(ctx); err != nil {
			q.Stop()
			return err
		}
		q.Stop()
		return q.Exception()
	}
	err = q.AwaitTermination(context.Background())
	if ctx.Err() != nil {
		q.Stop()
		fmt.Fprintln(cmd.ErrOrStderr(), "gostream: stopped; restart with the same --checkpoint to resume")
		return nil
	}
	return err
}

// startEmbedded starts the in-process broker and returns the function that
// feeds it the input.
func startEmbedded(ctx context.Context, f *submitFlags, log *slog.Logger) (feed func(context.Context) error, closeBroker func(), err error) {
	b, err := kafkasrc.StartEmbedded(ctx, f.topic, 3)
	if err != nil {
		return nil, nil, fmt.Errorf("starting the embedded broker: %w", err)
	}
	f.brokers = strings.Join(b.Addrs(), ",")
	input := f.input
	var tmp string
	if input == "" {
		dir, err := os.MkdirTemp("", "gostream-sample-")
		if err != nil {
			b.Close()
			return nil, nil, err
		}
		tmp = filepath.Join(dir, "sample.log")
		if err := os.WriteFile(tmp, wordcount.Sample, 0o644); err != nil {
			b.Close()
			return nil, nil, err
		}
		input = tmp
	}
	feed = func(ctx context.Context) error {
		_, err := kafkasrc.ProduceLines(ctx, kafkasrc.ProduceConfig{Brokers: b.Addrs(), Topic: f.topic, Logger: log}, input)
		return err
	}
	return feed, func() {
		b.Close()
		if tmp != "" {
			os.RemoveAll(filepath.Dir(tmp))
		}
	}, nil
}

// configureSink sets w's sink from --sink. For a cluster (remote), the
// sink is described by format and options, for the driver to run: console
// and jsonl:- then come back to this process's standard output through
// Watch.
func configureSink(w *engine.DataStreamWriter, f submitFlags, stdout io.Writer, remote bool) error {
	switch {
	case f.sink == "console" && remote:
		w.Format("console").Option("numRows", strconv.Itoa(f.numRows)).Option("truncate", strconv.FormatBool(f.truncate))
	case f.sink == "console":
		c := &engine.ConsoleSink{W: stdout, NumRows: f.numRows}
		if f.truncate {
			c.Truncate = 20
		}
		w.To(c)
	case f.sink == "jsonl:-" && remote:
		w.Format("jsonl").Option("path", "-")
	case f.sink == "jsonl:-":
		w.To(&engine.JSONLSink{W: stdout})
	case strings.HasPrefix(f.sink, "jsonl:") && len(f.sink) > len("jsonl:"):
		w.Format("jsonl").Option("path", strings.TrimPrefix(f.sink, "jsonl:"))
	default:
		return fmt.Errorf("--sink %q: use console, jsonl:PATH or jsonl:-", f.sink)
	}
	if f.numRows < 0 {
		return fmt.Errorf("--num-rows %d: use a number >= 0", f.numRows)
	}
	return nil
}

// progressPrinter returns the function that prints a line per batch on
// stderr and, with --progress-json, appends each batch's progress as JSON,
// and the function that closes the JSON file.
func progressPrinter(f submitFlags, stderr io.Writer) (func(engine.Progress), func(), error) {
	var jf *os.File
	if f.progressJSON != "" {
		var err error
		if jf, err = openAppend(f.progressJSON); err != nil {
			return nil, nil, fmt.Errorf("--progress-json: %w", err)
		}
	}
	// A write to --progress-json that fails (a full disk) is reported once,
	// and none is tried after it: a line after a torn one would be lost to
	// readers. The query goes on; a restart cuts the torn line (openAppend).
	var jsonMu sync.Mutex
	var jsonErr error
	report := func(p engine.Progress) {
		if jf != nil {
			jsonMu.Lock()
			if jsonErr == nil {
				b, _ := json.Marshal(p)
				if _, jsonErr = jf.Write(append(b, '\n')); jsonErr != nil {
					fmt.Fprintf(stderr, "warning: --progress-json: %v; the reports of batch %d and later are not written to it (the query goes on)\n", jsonErr, p.BatchID)
				}
			}
			jsonMu.Unlock()
		}
		if !f.quiet {
			fmt.Fprintln(stderr, progressLine(p))
		}
	}
	return report, func() {
		if jf != nil {
			jf.Close()
		}
	}, nil
}

// progressLine is a batch's progress for people: rows, time, phases,
// state and end offsets.
func progressLine(p engine.Progress) string {
	state, end := "", ""
	if len(p.StateOperators) > 0 {
		st := p.StateOperators[0]
		state = fmt.Sprintf(", state %d rows (%d updated)", st.NumRowsTotal, st.NumRowsUpdated)
	}
	if len(p.Sources) > 0 {
		end = ", end offsets " + p.Sources[0].EndOffset.String()
	}
	return fmt.Sprintf("batch %d: %d input rows in %s (%.0f rows/s; %s)%s%s",
		p.BatchID, p.NumInputRows, time.Duration(p.DurationMs["triggerExecution"])*time.Millisecond,
		p.ProcessedRowsPerSecond, phases(p.DurationMs), state, end)
}

// openAppend opens a JSON-lines file for appending, creating it if needed.
// A last line without its newline, cut short by a crash or a full disk, is
// removed first, so that every line appended after it is whole.
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	end, err := f.Seek(0, io.SeekEnd)
	buf := make([]byte, 4096)
	for cut := end; err == nil && cut > 0; {
		n := min(cut, int64(len(buf)))
		if _, err = f.ReadAt(buf[:n], cut-n); err != nil {
			break
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 || cut == n {
			if cut = cut - n + int64(i) + 1; cut < end {
				err = f.Truncate(cut)
			}
			break
		}
		cut -= n
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// byteUnits are the units parseBytes takes, all binary, as Spark's
// memory settings are (512m is 512 MiB).
var byteUnits = map[string]int64{"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

// parseBytes parses a size such as 512MiB, 2GiB, 512m, 2g or 1048576
// (bytes): a whole number and a unit k, m, g or t (binary), optionally
// followed by iB or B, in any case.
func parseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit := strings.TrimSuffix(strings.TrimSuffix(t[i:], "ib"), "b")
	if t[i:] == "b" {
		unit = ""
	}
	mult, ok := byteUnits[unit]
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if !ok || err != nil || n > math.MaxInt64/mult {
		return 0, errors.New("use a size like 512MiB, 2GiB, or Spark's 512m, 2g")
	}
	return n * mult, nil
}

// batchPhases names the phases of a batch as a progress line shows them,
// after the keys of Progress.DurationMs, in the order they run.
var batchPhases = [][2]string{
	{"latestOffset", "list"}, {"map", "map"}, {"walCommit", "offsets log"},
	{"reduce", "reduce"}, {"addBatch", "sink"}, {"commitOffsets", "commit log"},
}

// phases formats the durations of a batch's phases, so that a slow batch
// tells where its time went: "list 0, map 3, ... ms".
func phases(ms map[string]int64) string {
	var b strings.Builder
	for i, ph := range batchPhases {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", ph[1], ms[ph[0]])
	}
	b.WriteString(" ms")
	return b.String()
}

// startProfiles starts the CPU profile and the execution trace and returns
// the function that stops them and writes the heap profile. If one cannot
// start, what did is stopped.
func startProfiles(cpu, mem, traceTo string) (func(), error) {
	var stops []func()
	stop := func() {
		for _, f := range slices.Backward(stops) {
			f()
		}
	}
	start := func(flag, path string, begin func(io.Writer) error, end func()) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err == nil {
			if err = begin(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			stop()
			return fmt.Errorf("%s: %w", flag, err)
		}
		stops = append(stops, func() { end(); f.Close() })
		return nil
	}
	if err := start("--cpuprofile", cpu, pprof.StartCPUProfile, pprof.StopCPUProfile); err != nil {
		return nil, err
	}
	if err := start("--trace", traceTo, trace.Start, trace.Stop); err != nil {
		return nil, err
	}
	return func() {
		stop()
		if mem != "" {
			if mf, err := os.Create(mem); err == nil {
				_ = pprof.WriteHeapProfile(mf)
				mf.Close()
			}
		}
	}, nil
}
