package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// demoClass is WordCountDemo's main class in
// org.apache.kafka:kafka-streams-examples.
const demoClass = "org.apache.kafka.streams.examples.wordcount.WordCountDemo"

const (
	// kstreamsCacheBytes is Kafka Streams' default statestore.cache.max.bytes.
	// The demo sets 0, which forwards every single update downstream.
	kstreamsCacheBytes = 10 << 20
	// kstreamsCommitMs is commit.interval.ms. The cache is flushed on commit,
	// so the final counts come out at most this long after the last input
	// was processed; Kafka Streams' default (at_least_once) is 30000.
	kstreamsCommitMs = 1000
	// kstreamsIdle is how long the run waits for the next output record
	// (or the first) before it gives up on counts that are not final.
	kstreamsIdle = 2 * time.Minute
)

// kafkaRunClassJVM are the JVM flags of Kafka's kafka-run-class.sh (its
// KAFKA_JVM_PERFORMANCE_OPTS default), with which Kafka's quickstart runs
// WordCountDemo; the heap (its KAFKA_HEAP_OPTS, -Xmx256M) is -kstreams-heap.
var kafkaRunClassJVM = []string{
	"-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
	"-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
}

// kstreamsLog4j is WordCountDemo's log4j configuration: Kafka's
// tools-log4j.properties (warnings to stderr) plus Kafka Streams' state
// changes, which tell when it started processing.
const kstreamsLog4j = `log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
log4j.logger.org.apache.kafka.streams.KafkaStreams=INFO
`

// kstreamsVersion returns the version of the kafka-streams-examples jar in
// libs.
func kstreamsVersion(libs string) (string, error) {
	jars, err := filepath.Glob(filepath.Join(libs, "kafka-streams-examples-*.jar"))
	if err != nil || len(jars) != 1 {
		return "", fmt.Errorf("kstreams: want one kafka-streams-examples-*.jar in -kstreams-libs %s, found %d (bench/run.sh resolves bench/kstreams/pom.xml into it)", libs, len(jars))
	}
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(jars[0]), "kafka-streams-examples-"), ".jar"), nil
}

// kstreamsProps returns the properties WordCountDemo loads (its args[0]) for
// job j; it keeps its own defaults for the rest: String serdes,
// auto.offset.reset earliest. appID must be new to the cluster, so that no
// committed offset or internal topic of an earlier run is reused.
func kstreamsProps(j job, appID string, threads int) map[string]string {
	return map[string]string{
		"bootstrap.servers":          j.brokers,
		"application.id":             appID,
		"state.dir":                  filepath.Join(j.dir, "state"),
		"statestore.cache.max.bytes": strconv.Itoa(kstreamsCacheBytes),
		"commit.interval.ms":         strconv.Itoa(kstreamsCommitMs),
		"num.stream.threads":         strconv.Itoa(threads),
		// The repartition and changelog topics are replicated as the
		// suite's topics are, not at the brokers' default of 1.
		"replication.factor": "2",
	}
}

// writeProperties writes props as a java.util.Properties file, keys sorted.
func writeProperties(path string, props map[string]string) error {
	var b strings.Builder
	b.WriteString("# written by bench/cmd/suite\n")
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&b, "%s=%s\n", k, strings.ReplaceAll(props[k], `\`, `\\`))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// kstreamsCmd writes WordCountDemo's properties and log4j configuration into
// the job's directory and returns the JVM that runs it.
func (s *suite) kstreamsCmd(j job) (*exec.Cmd, error) {
	if s.cfg.kstreamsLibs == "" {
		return nil, errors.New("kstreams: no -kstreams-libs (bench/run.sh resolves Kafka Streams' jars and sets it)")
	}
	props := filepath.Join(j.dir, "streams.properties")
	if err := writeProperties(props, kstreamsProps(j, s.kstreamsAppID(), runtime.NumCPU())); err != nil {
		return nil, fmt.Errorf("kstreams properties: %w", err)
	}
	log4j := filepath.Join(j.dir, "log4j.properties")
	if err := os.WriteFile(log4j, []byte(kstreamsLog4j), 0o644); err != nil {
		return nil, fmt.Errorf("kstreams log4j configuration: %w", err)
	}
	args := append([]string{"-Xmx" + s.cfg.kstreamsHeap}, kafkaRunClassJVM...)
	args = append(args,
		// The demo lowercases with the default locale; a Turkish one would
		// make "INFO" "ınfo".
		"-Duser.language=en", "-Duser.country=US",
		"-Dlog4j.configuration=file:"+log4j,
		"-cp", filepath.Join(s.cfg.kstreamsLibs, "*"), demoClass, props)
	return exec.Command("java", args...), nil
}

// kstreamsAppID is WordCountDemo's application.id (and consumer group): the
// work directory's random suffix makes it new to the cluster.
func (s *suite) kstreamsAppID() string {
	return "gostream-bench-wordcount-" + strings.TrimPrefix(filepath.Base(s.work), "gostream-bench-")
}

// serveOnce measures a system that runs until stopped (Kafka Streams'
// WordCountDemo, c): it reads the output topic, keeping each word's latest
// count, until the counts equal want, then stops the system. The run ends at
// that moment: wall_s is process start to the output of the last count.
func (s *suite) serveOnce(ctx context.Context, c *child, j job, want *wordCounts, r *result) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(j.brokers, ",")...),
		kgo.ConsumeTopics(demoOutput),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		c.stop()
		r.setUsage(c.cost)
		r.Error = fmt.Sprintf("consume %s: %v", demoOutput, err)
		return
	}
	defer cl.Close()
	counts := newLatestCounts(want)
	adm := kadm.NewClient(cl)
	first, last, err := awaitCounts(ctx, cl, counts, c.exited, kstreamsIdle, func() {
		log.Printf("words: %s: input %s committed, %s after %.0fs", r.System,
			committedShare(ctx, adm, s.kstreamsAppID(), j.records), counts, time.Since(c.start).Seconds())
	})
	c.stop()
	r.setUsage(c.cost)
	if !first.IsZero() {
		r.FirstBatchS = ptr(first.Sub(c.start).Seconds())
	}
	if err != nil {
		if errors.Is(err, errExited) {
			err = fmt.Errorf("%s exited before its counts were final (%s): %w", r.System, counts, cmp.Or(c.err, errors.New("exit status 0")))
		}
		r.Error = fmt.Sprintf("%v (see %s)", err, c.logPath)
		if !first.IsZero() {
			r.CountsMatch = ptr(false)
		}
		return
	}
	wall := last.Sub(c.start).Seconds()
	r.WallS, r.RecordsPerSec, r.CountsMatch = &wall, ptr(float64(j.records)/wall), ptr(true)
}

// committedShare returns the share of the input's records that group has
// committed, as "42%", or "?" when the offsets cannot be fetched.
func committedShare(ctx context.Context, adm *kadm.Client, group string, records int64) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	offsets, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return "?"
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == demoInput && o.Err == nil && o.At > 0 {
			committed += o.At
		}
	})
	return fmt.Sprintf("%.0f%%", 100*float64(committed)/float64(max(records, 1)))
}

// errExited is awaitCounts's error when the system exits first.
var errExited = errors.New("exited")

// awaitCounts polls cl for count records until counts is final and returns
// when the first record and the last one came in. It fails when exited
// closes first, when no record comes for idle, or when ctx ends. status is
// called every progressEvery.
func awaitCounts(ctx context.Context, cl *kgo.Client, counts *latestCounts, exited <-chan struct{}, idle time.Duration, status func()) (first, last time.Time, err error) {
	lastStatus := time.Now()
	lastRecord := lastStatus
	for {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		now := time.Now()
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) && !errors.Is(fe.Err, context.Canceled) {
				return first, last, fmt.Errorf("consume %s: %w", fe.Topic, fe.Err)
			}
		}
		for it := fs.RecordIter(); !it.Done(); {
			rec := it.Next()
			word, n, err := decodeCount(rec.Key, rec.Value)
			if err != nil {
				return first, last, fmt.Errorf("%s partition %d offset %d: %w", rec.Topic, rec.Partition, rec.Offset, err)
			}
			counts.set(word, n)
			if first.IsZero() {
				first = now
			}
			last, lastRecord = now, now
		}
		switch {
		case counts.final():
			return first, last, nil
		case ctx.Err() != nil:
			return first, last, fmt.Errorf("%w with %s: %w", ctx.Err(), counts, counts.check())
		case isClosed(exited):
			return first, last, errExited
		case now.Sub(lastRecord) > idle:
			return first, last, fmt.Errorf("no output for %s, with %s: %w", idle, counts, counts.check())
		}
		if now.Sub(lastStatus) >= progressEvery {
			status()
			lastStatus = now
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// decodeCount decodes a record of WordCountDemo's output: the word as a
// UTF-8 key, its count as an 8-byte big-endian long (Serdes.Long).
func decodeCount(key, value []byte) (string, int64, error) {
	if len(value) != 8 {
		return "", 0, fmt.Errorf("count of %q is %d bytes, want an 8-byte long (Serdes.Long)", key, len(value))
	}
	return string(key), int64(binary.BigEndian.Uint64(value)), nil
}

// latestCounts keeps the latest count of each word of a stream of count
// updates (a KTable's changelog) and how many words differ from the
// expected counts, which must have no unique tokens (the words run has
// none); not safe for concurrent use.
type latestCounts struct {
	want    map[string]int64
	latest  map[string]int64
	updates int64
	differ  int // words missing, counted wrong or not expected at all
}

func newLatestCounts(want *wordCounts) *latestCounts {
	return &latestCounts{want: want.words, latest: make(map[string]int64, len(want.words)), differ: len(want.words)}
}

// set records a word's new count. The empty word is ignored: see demoCounts.
func (l *latestCounts) set(word string, n int64) {
	l.updates++
	if word == "" {
		return
	}
	before := l.differs(word)
	l.latest[word] = n
	switch after := l.differs(word); {
	case after && !before:
		l.differ++
	case before && !after:
		l.differ--
	}
}

func (l *latestCounts) differs(word string) bool {
	got, seen := l.latest[word]
	want, wanted := l.want[word]
	return seen != wanted || got != want
}

// final tells whether the latest counts are the expected ones.
func (l *latestCounts) final() bool { return l.differ == 0 }

// check lists the first differences, as the other systems' checks do.
func (l *latestCounts) check() error {
	c := newChecker(&wordCounts{words: l.want})
	for w, n := range l.latest {
		c.row(countRow{Word: w, Count: n})
	}
	return c.result()
}

func (l *latestCounts) String() string {
	return fmt.Sprintf("%d updates, %d of %d words not final", l.updates, l.differ, len(l.want))
}
