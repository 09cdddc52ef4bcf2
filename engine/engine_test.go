package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/kafkasrc"
)

// embedded starts an in-process broker with topic logs (3 partitions) and
// produces lines round-robin. kfake is only for these fast unit tests; the
// integration tests run the same queries on real Kafka.
func embedded(t *testing.T, lines ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := kafkasrc.StartEmbedded(ctx, "logs", 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	produce(t, e.Addrs(), lines...)
	return e.Addrs()
}

func produce(t *testing.T, addrs []string, lines ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, l := range lines {
		recs = append(recs, &kgo.Record{Topic: "logs", Value: []byte(l)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func wordCounts(s *engine.Session, addrs []string) *engine.DataFrame {
	lines := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", "logs").
		Option("startingOffsets", "earliest").
		Load().
		Select(engine.Col("value").Cast(engine.String))
	words := lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word"))
	return words.GroupBy(engine.Col("word")).Count()
}

func table(rows []engine.Row) map[string]int64 {
	m := map[string]int64{}
	for _, r := range rows {
		m[r.Get("word").(string)] = r.Get("count").(int64)
	}
	return m
}

func TestWordCountCompleteAvailableNow(t *testing.T) {
	addrs := embedded(t, "a b a", "b  c", "", " a")
	s := engine.NewSession()
	q, err := wordCounts(s, addrs).WriteStream().OutputMode(engine.Complete).
		Format("memory").QueryName("counts").Trigger(engine.AvailableNow()).
		Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := table(s.Table("counts"))
	want := map[string]int64{"a": 3, "b": 2, "c": 1, "": 3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("count of %q = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	p := q.LastProgress()
	if p == nil || p.NumInputRows != 4 || p.StateOperators[0].NumRowsTotal != 4 {
		t.Fatalf("progress %+v", p)
	}
}

func TestRestartFromCheckpointCountsOnce(t *testing.T) {
	addrs := embedded(t, "x y", "x")
	dir := t.TempDir()
	run := func(mode engine.OutputMode) []engine.Row {
		s := engine.NewSession()
		q, err := wordCounts(s, addrs).WriteStream().OutputMode(mode).
			Format("memory").QueryName("t").Trigger(engine.AvailableNow()).
			Option("checkpointLocation", dir).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := q.AwaitTermination(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s.Table("t")
	}
	if got := table(run(engine.Complete)); got["x"] != 2 || got["y"] != 1 {
		t.Fatalf("first run: %v", got)
	}
	produce(t, addrs, "x z")
	if got := table(run(engine.Complete)); got["x"] != 3 || got["y"] != 1 || got["z"] != 1 {
		t.Fatalf("second run: %v", got)
	}
}

func TestUpdateModeEmitsChangedRows(t *testing.T) {
	addrs := embedded(t, "a b")
	s := engine.NewSession()
	var batches [][]string
	q, err := wordCounts(s, addrs).WriteStream().OutputMode(engine.Update).
		ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
			var words []string
			for _, r := range rows {
				words = append(words, r.Get("word").(string))
			}
			sort.Strings(words)
			batches = append(batches, words)
			return nil
		}).Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := q.ProcessAllAvailable(ctx); err != nil {
		t.Fatal(err)
	}
	produce(t, addrs, "b c")
	if err := q.ProcessAllAvailable(ctx); err != nil {
		t.Fatal(err)
	}
	q.Stop()
	if len(batches) != 2 || strings.Join(batches[0], ",") != "a,b" || strings.Join(batches[1], ",") != "b,c" {
		t.Fatalf("batches %v", batches)
	}
}

func TestOutputModeRules(t *testing.T) {
	s := engine.NewSession()
	df := s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", "127.0.0.1:1").Option("subscribe", "logs").Load()
	counts := df.GroupBy(engine.Col("topic")).Count()
	cases := []struct {
		name string
		w    *engine.DataStreamWriter
	}{
		{"complete without aggregation", df.WriteStream().OutputMode(engine.Complete)},
		{"append with aggregation", counts.WriteStream().OutputMode(engine.Append)},
		{"append by default with aggregation", counts.WriteStream()},
		{"unknown column", df.Select(engine.Col("nope")).WriteStream()},
		{"memory without name", df.WriteStream().Format("memory")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.w.Start(context.Background())
			if !errors.Is(err, engine.ErrAnalysis) {
				t.Fatalf("err = %v, want ErrAnalysis", err)
			}
		})
	}
}

// TestRerunOfBatchWhoseStateCommitted simulates a crash after a batch's
// state committed but before its commit-log entry was written: the batch
// re-runs with the same ranges, emits the same rows, and counts nothing
// twice, and the next batch builds on the right counts.
func TestRerunOfBatchWhoseStateCommitted(t *testing.T) {
	addrs := embedded(t, "a b", "a", "c")
	dir := t.TempDir()
	run := func() map[int64]map[string]int64 {
		out := map[int64]map[string]int64{}
		s := engine.NewSession()
		q, err := wordCounts(s, addrs).WriteStream().OutputMode(engine.Update).
			ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
				out[id] = table(rows)
				return nil
			}).Trigger(engine.AvailableNow()).Option("checkpointLocation", dir).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := q.AwaitTermination(context.Background()); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := run()
	if len(first) != 1 || first[0]["a"] != 2 || first[0]["b"] != 1 || first[0]["c"] != 1 {
		t.Fatalf("first run emitted %v", first)
	}
	dropLastCommit(t, dir, 0)
	again := run()
	if len(again) != 1 || fmt.Sprint(again[0]) != fmt.Sprint(first[0]) {
		t.Fatalf("re-run of batch 0 emitted %v, want %v", again, first)
	}
	produce(t, addrs, "a d")
	next := run()
	if len(next) != 1 || next[1]["a"] != 3 || next[1]["d"] != 1 || len(next[1]) != 2 {
		t.Fatalf("batch after the re-run emitted %v, want batch 1 with a=3 d=1", next)
	}
}

// dropLastCommit removes the commit of batch from the end of the batch log
// of checkpoint dir, as a crash after the batch's state committed and
// before its commit-log entry leaves it.
func dropLastCommit(t *testing.T, dir string, batch int64) {
	t.Helper()
	log := filepath.Join(dir, "batches")
	lines, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	last := bytes.LastIndexByte(lines[:len(lines)-1], '\n')
	if commit := fmt.Sprintf(`{"commit":%d}`, batch); !bytes.Contains(lines[last+1:], []byte(commit)) {
		t.Fatalf("the batch log ends with %q, not batch %d's commit", lines[last+1:], batch)
	}
	if err := os.WriteFile(log, lines[:last+1], 0o644); err != nil {
		t.Fatal(err)
	}
}

// cappedCounts counts 60 one-word lines, five words 12 times each, with
// maxOffsetsPerTrigger 32: a startup batch of 2, then batches of 32 and 26.
func cappedCounts(t *testing.T) (*engine.Session, *engine.DataFrame) {
	var lines []string
	for i := range 60 {
		lines = append(lines, fmt.Sprintf("w%d", i%5))
	}
	addrs := embedded(t, lines...)
	s := engine.NewSession()
	return s, s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").
		Option("maxOffsetsPerTrigger", "32").Load().
		Select(engine.Col("value").Cast(engine.String).As("word")).
		GroupBy(engine.Col("word")).Count()
}

// TestFirstBatchIsSmall checks the startup batch: the first batch of a run
// reads maxOffsetsPerTrigger/16 records, later ones up to the cap, and the
// counts are exact.
func TestFirstBatchIsSmall(t *testing.T) {
	s, df := cappedCounts(t)
	q, err := df.WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("first").
		Trigger(engine.AvailableNow()).Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, p := range q.RecentProgress() {
		sizes = append(sizes, p.NumInputRows)
	}
	if want := []int64{2, 32, 26}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes %v, want %v: a first batch of 32/16, then batches of up to 32", sizes, want)
	}
	want := map[string]int64{"w0": 12, "w1": 12, "w2": 12, "w3": 12, "w4": 12}
	if got := table(s.Table("first")); !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}

// TestFirstBatchCommitsAlone checks that the next batch is planned only once
// the startup batch has committed (its first results do not wait behind the
// next map), while later batches still overlap: batch 2 is planned while
// batch 1's sink runs.
func TestFirstBatchCommitsAlone(t *testing.T) {
	_, df := cappedCounts(t)
	const sinkTime = 200 * time.Millisecond
	var sunk []time.Time // when each batch's sink returned, by batch ID
	q, err := df.WriteStream().OutputMode(engine.Update).QueryName("alone").
		ForeachBatch(func(_ context.Context, _ int64, _ []engine.Row) error {
			time.Sleep(sinkTime)
			sunk = append(sunk, time.Now())
			return nil
		}).
		Trigger(engine.AvailableNow()).Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	progress := q.RecentProgress()
	if len(progress) < 3 || len(sunk) != len(progress) {
		t.Fatalf("%d batches, %d sunk: want at least 3, all sunk", len(progress), len(sunk))
	}
	if start := progress[1].Timestamp; start.Before(sunk[0]) {
		t.Errorf("batch 1 planned %s before batch 0's sink returned: want it planned after the first commit", sunk[0].Sub(start))
	}
	if start := progress[2].Timestamp; !start.Before(sunk[1]) {
		t.Errorf("batch 2 planned %s after batch 1's sink returned: want it planned while batch 1 commits", start.Sub(sunk[1]))
	}
}

// TestContinuousQueryFollowsAndResumes runs a query on the default trigger
// (its readers fetch ahead between batches and its state lives in memory
// with a changelog) while lines arrive, then resumes its checkpoint with
// available-now (state read back through Pebble keys) and with the default
// trigger again: the counts are exact at every step.
func TestContinuousQueryFollowsAndResumes(t *testing.T) {
	addrs := embedded(t, "a b", "a")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	continuous := func(waves ...[]string) map[string]int64 {
		t.Helper()
		latest := map[string]int64{} // foreachBatch runs one batch at a time
		s := engine.NewSession()
		q, err := wordCounts(s, addrs).WriteStream().OutputMode(engine.Update).QueryName("all").
			ForeachBatch(func(_ context.Context, _ int64, rows []engine.Row) error {
				maps.Copy(latest, table(rows))
				return nil
			}).Option("checkpointLocation", dir).Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, lines := range waves {
			produce(t, addrs, lines...)
			if err := q.ProcessAllAvailable(ctx); err != nil {
				t.Fatal(err)
			}
		}
		q.Stop()
		if err := q.AwaitTermination(ctx); err != nil {
			t.Fatal(err)
		}
		return latest
	}
	got := continuous(nil, []string{"b c"}, []string{"c c", "d"})
	if want := map[string]int64{"a": 2, "b": 2, "c": 3, "d": 1}; !maps.Equal(got, want) {
		t.Fatalf("continuous run's latest counts %v, want %v", got, want)
	}

	produce(t, addrs, "a e")
	s := engine.NewSession()
	q, err := wordCounts(s, addrs).WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("all").
		Trigger(engine.AvailableNow()).Option("checkpointLocation", dir).Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := table(s.Table("all")), map[string]int64{"a": 3, "b": 2, "c": 3, "d": 1, "e": 1}; !maps.Equal(got, want) {
		t.Fatalf("available-now resume: %v, want %v", got, want)
	}

	got = continuous([]string{"e f"})
	if want := map[string]int64{"e": 2, "f": 1}; !maps.Equal(got, want) {
		t.Fatalf("second continuous resume changed %v, want %v", got, want)
	}
}

// TestSinkFailureStopsTheQuery checks that a sink's error stops the query
// with that error, reported once, and that no later batch is logged or
// committed: a restart re-runs the failed batch, and the counts come out
// exactly once.
func TestSinkFailureStopsTheQuery(t *testing.T) {
	s, df := cappedCounts(t)
	dir := t.TempDir()
	boom := errors.New("sink unavailable")
	q, err := df.WriteStream().OutputMode(engine.Update).QueryName("failing").
		ForeachBatch(func(_ context.Context, id int64, _ []engine.Row) error {
			if id == 1 { // batch 2 is planned, mapped and parked meanwhile
				return boom
			}
			return nil
		}).
		Trigger(engine.AvailableNow()).Option("checkpointLocation", dir).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = q.AwaitTermination(context.Background())
	if !errors.Is(err, boom) || strings.Count(err.Error(), boom.Error()) != 1 {
		t.Fatalf("query ended with %v; want the sink's error, once", err)
	}
	if last := q.LastProgress(); last == nil || last.BatchID != 0 {
		t.Fatalf("last committed batch %+v, want batch 0", last)
	}
	q, err = df.WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("failing").
		Trigger(engine.AvailableNow()).Option("checkpointLocation", dir).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	if first := q.RecentProgress()[0]; first.BatchID != 1 {
		t.Fatalf("restart began with batch %d, want the failed batch 1 re-run", first.BatchID)
	}
	counts := table(s.Table("failing"))
	for w, n := range counts {
		if n != 12 {
			t.Fatalf("count of %q = %d after the restart, want 12", w, n)
		}
	}
	if len(counts) != 5 {
		t.Fatalf("%d words after the restart, want 5", len(counts))
	}
}

// TestSubscribeInvalidTopicName checks that an invalid topic name stops the
// query at once with a clear error, without asking a broker (none listens
// at the address).
func TestSubscribeInvalidTopicName(t *testing.T) {
	s := engine.NewSession()
	df := s.ReadKafka(engine.KafkaOptions{BootstrapServers: "127.0.0.1:1", Subscribe: []string{"logs", "bad name"}})
	q, err := df.WriteStream().Format("memory").QueryName("t").Trigger(engine.AvailableNow()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = q.AwaitTermination(ctx)
	if !errors.Is(err, kafkasrc.ErrInvalidConfig) || !strings.Contains(err.Error(), `kafka: invalid topic name "bad name"`) {
		t.Fatalf("err = %v, want the invalid topic name", err)
	}
}

// latestWordCounts is the word count of topic from "latest", the default.
func latestWordCounts(addrs []string, topic string) *engine.DataFrame {
	lines := engine.NewSession().ReadKafka(engine.KafkaOptions{BootstrapServers: strings.Join(addrs, ","), Subscribe: []string{topic}}).
		Select(engine.Col("value").Cast(engine.String))
	return lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word")).GroupBy(engine.Col("word")).Count()
}

// emptyBatch0 is what Spark 3.5's console sink prints for a word count's
// batch 0 without data.
const emptyBatch0 = "-------------------------------------------\n" +
	"Batch: 0\n" +
	"-------------------------------------------\n" +
	"+----+-----+\n" +
	"|word|count|\n" +
	"+----+-----+\n" +
	"+----+-----+\n" +
	"\n"

// TestFirstBatchRunsWithoutData checks Spark's rule for batches without
// data: a query's first batch runs even when nothing is new (here an empty
// topic read from "latest", trigger once), so the console shows batch 0 as
// an empty table, and its offsets entry records where "latest" resolved;
// a restart with nothing new then runs no batch, and the lines produced
// after the first run are batch 1's.
func TestFirstBatchRunsWithoutData(t *testing.T) {
	addrs := embedded(t)
	dir := t.TempDir()
	once := func() string {
		t.Helper()
		var out bytes.Buffer
		q, err := latestWordCounts(addrs, "logs").WriteStream().OutputMode(engine.Complete).
			To(&engine.ConsoleSink{W: &out, NumRows: 20, Truncate: 20}).Trigger(engine.Once()).
			Option("checkpointLocation", dir).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := q.AwaitTermination(context.Background()); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if got := once(); got != emptyBatch0 {
		t.Fatalf("first run on an empty topic printed\n%q\nwant Spark's\n%q", got, emptyBatch0)
	}
	if got := once(); got != "" {
		t.Fatalf("a restart with no new data printed\n%s\nwant nothing, as Spark runs no batch", got)
	}
	produce(t, addrs, "a b a")
	want := "-------------------------------------------\n" +
		"Batch: 1\n" +
		"-------------------------------------------\n" +
		"+----+-----+\n" +
		"|word|count|\n" +
		"+----+-----+\n"
	if got := once(); !strings.HasPrefix(got, want) || !strings.Contains(got, "|   a|    2|\n") || !strings.Contains(got, "|   b|    1|\n") {
		t.Fatalf("a restart after new lines printed\n%s\nwant batch 1 with a=2, b=1", got)
	}

	// A continuous query on an empty topic: ProcessAllAvailable returns
	// once its empty batch 0 is committed, not before.
	var batches []string
	entered, release := make(chan struct{}), make(chan struct{})
	q, err := latestWordCounts(embedded(t), "logs").WriteStream().OutputMode(engine.Update).
		ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
			if id == 0 {
				close(entered)
				<-release
			}
			batches = append(batches, fmt.Sprintf("%d:%d rows", id, len(rows)))
			return nil
		}).Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Stop()
	releaseBatch := sync.OnceFunc(func() { close(release) })
	defer releaseBatch() // before Stop, which waits for the batch
	<-entered
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if err := q.ProcessAllAvailable(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ProcessAllAvailable returned %v while batch 0 was in its sink, want it to wait", err)
	}
	releaseBatch()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := q.ProcessAllAvailable(ctx); err != nil {
		t.Fatal(err)
	}
	q.Stop()
	if got := strings.Join(batches, ", "); got != "0:0 rows" {
		t.Fatalf("a continuous query starting at the end ran batches %q, want one empty batch 0", got)
	}
}
