package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/kafkatest"
)

// cluster is the real 3-broker Apache Kafka (KRaft) cluster shared by the
// integration tests of this package; nil under -short.
var cluster *kafkatest.Cluster

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, err := kafkatest.StartCluster(ctx, kafkatest.Brokers(3), kafkatest.Logf(log.Printf))
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration tests need a real Kafka cluster:", err)
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping Kafka:", err)
	}
	os.Exit(code)
}

// realKafka returns the shared cluster and a new topic logs-like topic
// (3 partitions, replication factor 2) for one test.
func realKafka(t *testing.T) (*kafkatest.Cluster, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs real Kafka (run without -short)")
	}
	topic := kafkatest.UniqueTopic(t, "logs")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.CreateTopic(ctx, topic, 3, 2); err != nil {
		t.Fatal(err)
	}
	return cluster, topic
}

// corpus is a deterministic mix of log lines: Zipf-ish words, runs of
// spaces, leading and trailing spaces, tabs, empty lines, Korean and emoji.
func corpus(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	vocab := []string{"GET", "POST", "/index.html", "200", "404", "error", "user", "로그", "데이터", "🚀", "naïve", "a\tb", "x"}
	lines := make([]string, n)
	for i := range lines {
		var b strings.Builder
		if r.IntN(10) == 0 {
			b.WriteString(" ")
		}
		words := r.IntN(8)
		for w := 0; w < words; w++ {
			if w > 0 {
				b.WriteString(" ")
				if r.IntN(12) == 0 {
					b.WriteString(" ") // a run of spaces yields an empty word
				}
			}
			b.WriteString(vocab[min(int(r.ExpFloat64()*3), len(vocab)-1)])
		}
		if r.IntN(10) == 0 {
			b.WriteString(" ")
		}
		lines[i] = b.String()
	}
	return lines
}

// expected counts words the way Spark does for valid UTF-8 (Go's
// strings.Split with a literal separator keeps leading, trailing and
// repeated empty strings, like Java's split with limit -1).
func expected(lines ...[]string) map[string]int64 {
	m := map[string]int64{}
	for _, ls := range lines {
		for _, l := range ls {
			for _, w := range strings.Split(l, " ") {
				m[w]++
			}
		}
	}
	return m
}

func produceTo(t *testing.T, addrs []string, topic string, values ...[]byte) {
	t.Helper()
	if err := sendValues(addrs, topic, values...); err != nil {
		t.Fatal(err)
	}
}

// sendValues produces values to topic, round robin over its partitions, and
// waits for their acknowledgement. Unlike produceTo, it may be called from
// any goroutine.
func sendValues(addrs []string, topic string, values ...[]byte) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

func bytesOf(lines []string) [][]byte {
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = []byte(l)
	}
	return out
}

type runOpts struct {
	maxOffsets  int64
	partitions  int
	checkpoint  string
	failOnLoss  *bool
	startOffset string
	sql         bool // written as the seed's Spark job: selectExpr and SQL strings
}

// countTopic runs the word count over everything in topic (available-now)
// and returns the final table.
func countTopic(t *testing.T, addrs []string, topic string, o runOpts) (map[string]int64, error) {
	t.Helper()
	s := engine.NewSession()
	ko := engine.KafkaOptions{BootstrapServers: strings.Join(addrs, ","), Subscribe: []string{topic}, StartingOffsets: "earliest",
		MaxOffsetsPerTrigger: o.maxOffsets, FailOnDataLoss: o.failOnLoss}
	words := s.ReadKafka(ko).Select(engine.Col("value").Cast(engine.String)).
		Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word"))
	if o.sql {
		words = s.ReadKafka(ko).SelectExpr("CAST(value AS STRING)").SelectExpr("explode(split(value, ' ')) AS word")
	}
	counts := words.GroupBy(engine.Col("word")).Count()
	w := counts.WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("wc").
		Trigger(engine.AvailableNow()).ShufflePartitions(o.partitions)
	if o.checkpoint != "" {
		w.Option("checkpointLocation", o.checkpoint)
	}
	q, err := w.Start(context.Background())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := q.AwaitTermination(ctx); err != nil {
		return nil, err
	}
	return table(s.Table("wc")), nil
}

// countsAre runs the word count over topic and checks the final table.
func countsAre(t *testing.T, addrs []string, topic string, o runOpts, want map[string]int64) {
	t.Helper()
	got, err := countTopic(t, addrs, topic, o)
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, got, want)
}

func sameCounts(t *testing.T, got, want map[string]int64) {
	t.Helper()
	for w, n := range want {
		if got[w] != n {
			t.Errorf("count of %q = %d, want %d", w, got[w], n)
		}
	}
	for w, n := range got {
		if _, ok := want[w]; !ok {
			t.Errorf("unexpected word %q (count %d)", w, n)
		}
	}
}

func TestIntegrationWordCountExact(t *testing.T) {
	c, topic := realKafka(t)
	lines := corpus(20000, 1)
	produceTo(t, c.Addrs(), topic, bytesOf(lines)...)
	// Tombstones (null values) yield no words; invalid UTF-8 decodes to U+FFFD
	// per maximal invalid subpart, as Java does for CAST(value AS STRING).
	produceTo(t, c.Addrs(), topic, nil, nil, []byte("bad\xe2\x82 \xff\xfe"))
	want := expected(lines)
	want["bad\uFFFD"]++
	want["\uFFFD\uFFFD"]++
	countsAre(t, c.Addrs(), topic, runOpts{}, want)
}

// TestIntegrationSelectExpr: the word count written as the seed's Spark job
// (selectExpr("CAST(value AS STRING)"), explode(split(value, ' ')) in SQL)
// counts exactly, tombstones and invalid UTF-8 included.
func TestIntegrationSelectExpr(t *testing.T) {
	c, topic := realKafka(t)
	lines := corpus(5000, 3)
	produceTo(t, c.Addrs(), topic, bytesOf(lines)...)
	produceTo(t, c.Addrs(), topic, nil, []byte("bad\xe2\x82 \xff\xfe"))
	want := expected(lines)
	want["bad\uFFFD"]++
	want["\uFFFD\uFFFD"]++
	countsAre(t, c.Addrs(), topic, runOpts{sql: true, partitions: 3}, want)
}

// TestIntegrationMetamorphic: batch sizes and shuffle partitions change the
// batches, never the final table.
func TestIntegrationMetamorphic(t *testing.T) {
	c, topic := realKafka(t)
	lines := corpus(5000, 2)
	produceTo(t, c.Addrs(), topic, bytesOf(lines)...)
	want := expected(lines)
	for _, o := range []runOpts{{maxOffsets: 0, partitions: 4}, {maxOffsets: 997, partitions: 1}, {maxOffsets: 3001, partitions: 7}} {
		t.Run(fmt.Sprintf("max%d-p%d", o.maxOffsets, o.partitions), func(t *testing.T) {
			countsAre(t, c.Addrs(), topic, o, want)
		})
	}
}

func TestIntegrationCompressionCodecs(t *testing.T) {
	c, _ := realKafka(t)
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := kafkatest.UniqueTopic(t, "codec")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := c.CreateTopic(ctx, topic, 3, 2); err != nil {
				t.Fatal(err)
			}
			lines := corpus(3000, 3)
			path := filepath.Join(t.TempDir(), "in.log")
			if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := kafkasrc.ProduceLines(ctx, kafkasrc.ProduceConfig{Brokers: c.Addrs(), Topic: topic, Compression: codec}, path)
			if err != nil || st.Acked != int64(len(lines)) {
				t.Fatalf("produce: %v (acked %d of %d)", err, st.Acked, len(lines))
			}
			countsAre(t, c.Addrs(), topic, runOpts{}, expected(lines))
		})
	}
}

// TestIntegrationConsoleProducer counts records written by Kafka's own
// console producer, a client we did not write.
func TestIntegrationConsoleProducer(t *testing.T) {
	c, topic := realKafka(t)
	lines := []string{"hello world", "  spaced  out ", "한국어 텍스트 🚀", "", "hello"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.ConsoleProduce(ctx, topic, strings.NewReader(strings.Join(lines, "\n")+"\n"), map[string]string{"compression.type": "gzip"}); err != nil {
		t.Fatal(err)
	}
	countsAre(t, c.Addrs(), topic, runOpts{}, expected(lines))
}

// TestIntegrationFirstBatchWithoutData runs Spark's rule for batches
// without data on real Kafka: a query started with nothing new (from
// "latest", Spark's default) prints batch 0 as an empty table, as Spark
// does, and its next data is batch 1; a restart with nothing new runs no
// batch; trigger once on an empty topic prints batch 0 too.
func TestIntegrationFirstBatchWithoutData(t *testing.T) {
	c, topic := realKafka(t)
	produceTo(t, c.Addrs(), topic, []byte("before the start"))
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := func(topic string, trig engine.Trigger, dir string, out io.Writer) *engine.StreamingQuery {
		t.Helper()
		q, err := latestWordCounts(c.Addrs(), topic).WriteStream().OutputMode(engine.Complete).To(&engine.ConsoleSink{W: out, NumRows: 20, Truncate: 20}).
			Trigger(trig).Option("checkpointLocation", dir).Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}

	var out logbuf.Buffer
	q := start(topic, engine.Trigger{}, dir, &out)
	if err := q.ProcessAllAvailable(ctx); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != emptyBatch0 {
		t.Fatalf("a query started at the end of %s printed\n%q\nwant Spark's\n%q", topic, got, emptyBatch0)
	}
	produceTo(t, c.Addrs(), topic, []byte("a b a"))
	if err := q.ProcessAllAvailable(ctx); err != nil {
		t.Fatal(err)
	}
	q.Stop()
	if err := q.AwaitTermination(ctx); err != nil {
		t.Fatal(err)
	}
	batch1 := strings.TrimPrefix(out.String(), emptyBatch0)
	if !strings.HasPrefix(batch1, "-------------------------------------------\nBatch: 1\n") ||
		!strings.Contains(batch1, "|   a|    2|\n") || !strings.Contains(batch1, "|   b|    1|\n") || strings.Contains(batch1, "before") {
		t.Fatalf("after batch 0, the new line printed\n%s\nwant batch 1 with a=2, b=1 alone", batch1)
	}

	var again logbuf.Buffer
	q = start(topic, engine.Once(), dir, &again)
	if err := q.AwaitTermination(ctx); err != nil {
		t.Fatal(err)
	}
	if again.String() != "" {
		t.Fatalf("a restart with nothing new printed\n%s\nwant nothing, as Spark runs no batch", again.String())
	}

	empty := kafkatest.UniqueTopic(t, "empty")
	if err := c.CreateTopic(ctx, empty, 3, 2); err != nil {
		t.Fatal(err)
	}
	var once logbuf.Buffer
	q = start(empty, engine.Once(), t.TempDir(), &once)
	if err := q.AwaitTermination(ctx); err != nil {
		t.Fatal(err)
	}
	if once.String() != emptyBatch0 {
		t.Fatalf("trigger once on an empty topic printed\n%q\nwant Spark's\n%q", once.String(), emptyBatch0)
	}
}

func TestIntegrationFailOnDataLoss(t *testing.T) {
	c, topic := realKafka(t)
	first := corpus(300, 4)
	produceTo(t, c.Addrs(), topic, bytesOf(first)...)
	dir := t.TempDir()
	if _, err := countTopic(t, c.Addrs(), topic, runOpts{checkpoint: dir}); err != nil {
		t.Fatal(err)
	}
	// More data arrives and is deleted by retention before the query runs again.
	produceTo(t, c.Addrs(), topic, bytesOf(corpus(300, 5))...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, latest, err := offsetsOf(ctx, c.Addrs(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range latest[topic] {
		if err := c.DeleteRecords(ctx, topic, p, end-50); err != nil {
			t.Fatal(err)
		}
	}
	_, err = countTopic(t, c.Addrs(), topic, runOpts{checkpoint: dir})
	if !errors.Is(err, kafkasrc.ErrDataLoss) || !strings.Contains(err.Error(), "failOnDataLoss") {
		t.Fatalf("failOnDataLoss=true: err = %v, want a data-loss error naming the option", err)
	}
	no := false
	got, err := countTopic(t, c.Addrs(), topic, runOpts{checkpoint: dir, failOnLoss: &no})
	if err != nil {
		t.Fatalf("failOnDataLoss=false: %v", err)
	}
	var total, want int64
	for _, n := range got {
		total += n
	}
	for _, n := range expected(first) {
		want += n
	}
	// The first 300 lines plus the 150 surviving ones (50 per partition).
	if total <= want {
		t.Fatalf("after data loss: %d words counted, want more than the first run's %d", total, want)
	}
}

func offsetsOf(ctx context.Context, addrs []string, topic string) (kafkasrc.Offsets, kafkasrc.Offsets, error) {
	src, err := kafkasrc.NewSource(kafkasrc.Config{Brokers: addrs})
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	return src.Offsets(ctx, []string{topic})
}

func TestIntegrationErrors(t *testing.T) {
	c, _ := realKafka(t)
	t.Run("missing topic", func(t *testing.T) {
		_, err := countTopic(t, c.Addrs(), "no-such-topic", runOpts{})
		if !errors.Is(err, kafkasrc.ErrUnknownTopic) || !strings.Contains(err.Error(), "gostream topics create") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unreachable brokers", func(t *testing.T) {
		start := time.Now()
		_, err := countTopic(t, []string{"127.0.0.1:1"}, "logs", runOpts{})
		if !errors.Is(err, kafkasrc.ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Fatalf("err = %v", err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("took %s to report unreachable brokers", d)
		}
	})
}

// TestIntegrationKillRestart runs `gostream submit wordcount` as a separate
// process, kills it with SIGKILL at random moments while lines keep
// arriving, restarts it on the same checkpoint, and checks the final table
// is exactly right: nothing lost, nothing counted twice. The kill delays
// and the lines come from the logged seed (GOSTREAM_SEED replays them);
// where in a batch each kill lands depends on the machine's timing too.
func TestIntegrationKillRestart(t *testing.T) {
	c, topic := realKafka(t)
	bin := buildGostream(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "counts.jsonl")
	args := []string{"submit", "wordcount", "--brokers", c.BootstrapServers(), "--topic", topic,
		"--checkpoint", filepath.Join(dir, "cp"), "--starting-offsets", "earliest", "--max-offsets-per-trigger", "700",
		"--sink", "jsonl:" + out, "--quiet"}
	seed := testseed.Seed(t)
	r := rand.New(rand.NewPCG(seed, 2))

	var all []string // owned by the producer until it has stopped
	stop := make(chan struct{})
	produced := make(chan error, 1)
	go func() { // lines keep arriving while the job is killed and restarted
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				produced <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			batch := corpus(200, seed+i)
			if err := sendValues(c.Addrs(), topic, bytesOf(batch)...); err != nil {
				produced <- fmt.Errorf("producing lines while gostream is killed: %w", err)
				return
			}
			all = append(all, batch...)
		}
	}()
	stopProducing := sync.OnceValue(func() error { close(stop); return <-produced })
	t.Cleanup(func() { stopProducing() })

	var stderr bytes.Buffer // of every run, also copied to the test's stderr
	kills := 6
	for range kills {
		cmd := exec.Command(bin, append(args, "--trigger", "100ms")...)
		cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(300+r.IntN(1500)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	if err := stopProducing(); err != nil {
		t.Fatal(err)
	}
	final := exec.Command(bin, append(args, "--trigger", "available-now")...)
	final.Stderr = io.MultiWriter(os.Stderr, &stderr)
	if err := final.Run(); err != nil {
		t.Fatalf("final run: %v", err)
	}
	if bytes.Contains(stderr.Bytes(), []byte("WARNING: DATA RACE")) {
		t.Error("the race detector reported a data race in gostream submit (its report is above)")
	}
	got := lastBatch(t, out)
	sameCounts(t, got, expected(all))
}

// lastBatch reads a complete-mode jsonl output and returns its last batch.
func lastBatch(t *testing.T, path string) map[string]int64 {
	t.Helper()
	batches, last := readBatches(t, path)
	return batches[last]
}

// readBatches reads a jsonl output and returns its batches' counts and the
// last batch id. Batches must follow each other in order, each word at most
// once in a batch.
func readBatches(t *testing.T, path string) (map[int64]map[string]int64, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	batches := map[int64]map[string]int64{}
	last := int64(-1)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Batch int64  `json:"batch"`
			Word  string `json:"word"`
			Count int64  `json:"count"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("bad jsonl line %q: %v", sc.Text(), err)
		}
		if rec.Batch < last {
			t.Fatalf("batch %d written after batch %d: a re-run batch was not replaced", rec.Batch, last)
		}
		if batches[rec.Batch] == nil {
			batches[rec.Batch] = map[string]int64{}
		}
		if _, dup := batches[rec.Batch][rec.Word]; dup {
			t.Fatalf("word %q twice in batch %d", rec.Word, rec.Batch)
		}
		batches[rec.Batch][rec.Word] = rec.Count
		last = rec.Batch
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return batches, last
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func buildGostream(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gostream-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gostream")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/gostream/gostream/cmd/gostream")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}
