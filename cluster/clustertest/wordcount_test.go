package clustertest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkatest"
)

// words are the words of the lines produced: a small vocabulary, so that
// every batch updates groups the state holds already.
var words = []string{"INFO", "WARN", "ERROR", "GET", "POST", "/index.html", "/api/v1", "200", "404", "500", "été", "日本"}

// produceLines produces n random lines to topic, round-robin over its
// partitions, and adds their words to truth as Spark's split(value, ' ')
// counts them (a double space, a leading or a trailing one gives an empty
// word).
func produceLines(t testing.TB, kc *kafkatest.Cluster, topic string, rng *rand.Rand, n int, truth map[string]int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Addrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for n > 0 {
		recs := make([]*kgo.Record, min(n, 100_000))
		n -= len(recs)
		if err := batch(ctx, cl, recs, rng, topic, truth); err != nil {
			t.Fatal(err)
		}
	}
}

// batch fills recs with random lines of topic, adds their words to truth
// and produces them. After an error truth is unknown: some lines may have
// been written.
func batch(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, rng *rand.Rand, topic string, truth map[string]int64) error {
	for i := range recs {
		ws := make([]string, 1+rng.IntN(8))
		for j := range ws {
			if rng.IntN(20) > 0 {
				ws[j] = words[rng.IntN(len(words))]
			}
		}
		line := strings.Join(ws, " ")
		for _, w := range strings.Split(line, " ") {
			truth[w]++
		}
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(line)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("producing %d lines: %w", len(recs), err)
	}
	return nil
}

// startTopic starts Apache Kafka with 3 brokers and creates a topic of 3
// partitions, replicated twice.
func startTopic(t testing.TB) (*kafkatest.Cluster, string) {
	t.Helper()
	kc := kafkatest.Start(t, kafkatest.Brokers(3))
	topic := kafkatest.UniqueTopic(t, "wc")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kc.CreateTopic(ctx, topic, 3, 2); err != nil {
		t.Fatal(err)
	}
	return kc, topic
}

// lastCounts reads the jsonl rows of a word count (complete mode) and
// returns the counts of its last batch.
func lastCounts(t testing.TB, out string) (int64, map[string]int64) {
	t.Helper()
	last, counts := int64(-1), map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `{"batch":`) {
			continue
		}
		var row struct {
			Batch int64  `json:"batch"`
			Word  string `json:"word"`
			Count int64  `json:"count"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("a jsonl row %q: %v", line, err)
		}
		if row.Batch > last {
			last, counts = row.Batch, map[string]int64{}
		}
		counts[row.Word] = row.Count
	}
	return last, counts
}

// submit runs `gostream submit wordcount` to completion (available-now,
// complete mode, the jsonl sink on its standard output) and returns the
// counts of its last batch.
func submit(t testing.TB, c *clustertest.Cluster, master string, args ...string) map[string]int64 {
	t.Helper()
	_, counts := lastCounts(t, submitOut(t, c, master, append([]string{"--sink", "jsonl:-"}, args...)...))
	return counts
}

// submitOut runs `gostream submit wordcount` to completion (available-now,
// complete mode) and returns its standard output.
func submitOut(t testing.TB, c *clustertest.Cluster, master string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args = append([]string{"submit", "wordcount", "--master", master, "--trigger", "available-now", "--starting-offsets", "earliest",
		"--output-mode", "complete"}, args...)
	cmd := c.Command(ctx, args...)
	cmd.Env = os.Environ()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("gostream %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	if err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	return string(out)
}

// consoleCounts reads the console sink's output of a word count and
// returns the counts of the last batch's table.
func consoleCounts(t testing.TB, out string) map[string]int64 {
	t.Helper()
	i := strings.LastIndex(out, "\nBatch: ")
	if i < 0 {
		t.Fatalf("no batch in the console output:\n%s", out)
	}
	counts := map[string]int64{}
	header := true
	for _, line := range strings.Split(out[i:], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 4 {
			continue
		}
		if header {
			header = false
			continue
		}
		var n int64
		if _, err := fmt.Sscan(cells[2], &n); err != nil {
			t.Fatalf("a console row %q: %v", line, err)
		}
		counts[strings.TrimSpace(cells[1])] = n
	}
	return counts
}

func wantCounts(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	for w, n := range want {
		if got[w] != n {
			t.Errorf("%s: %q counted %d times; want %d", what, w, got[w], n)
		}
	}
	for w, n := range got {
		if _, ok := want[w]; !ok {
			t.Errorf("%s: %q counted %d times; it is in no line", what, w, n)
		}
	}
}

// TestClusterWordCount: `gostream submit wordcount --master gostream://`
// against three worker processes counts the words of a real 3-broker
// Kafka topic exactly (the map tasks on the workers the topic's partitions
// are assigned to, the state on its partitions' owners and standbys, the
// rows gathered by the leader and streamed to the submitter); submitted
// again after more lines, the job resumes from its batch log and its
// state and counts exactly; and so it does after the whole cluster was
// stopped with SIGTERM and started again; the console sink's table that
// submit prints holds them too. The same topic counted by local mode, by
// one worker with 2 shuffle partitions and by two with 4, gives the same
// counts.
func TestClusterWordCount(t *testing.T) {
	skipShort(t)
	rng := testseed.Rand(t)
	kc, topic := startTopic(t)
	truth := map[string]int64{}
	produceLines(t, kc, topic, rng, 5000, truth)

	c := clustertest.Start(t, 3)
	job := []string{"--brokers", kc.BootstrapServers(), "--topic", topic}
	wantCounts(t, "3 workers", submit(t, c, c.Master(), job...), truth)

	produceLines(t, kc, topic, rng, 3000, truth)
	wantCounts(t, "3 workers, submitted again", submit(t, c, c.Master(), job...), truth)

	for _, w := range c.Workers {
		w.Stop(t)
	}
	produceLines(t, kc, topic, rng, 2000, truth)
	for _, w := range c.Workers {
		w.Start(t)
	}
	c.WaitLeader(t)
	wantCounts(t, "3 workers restarted", submit(t, c, c.Master(), job...), truth)

	// The console sink's tables, printed by submit as the leader wrote them.
	produceLines(t, kc, topic, rng, 1000, truth)
	out := submitOut(t, c, c.Master(), append(job, "--sink", "console", "--num-rows", "100")...)
	wantCounts(t, "3 workers, console", consoleCounts(t, out), truth)

	local := submit(t, c, "local[*]", append(job, "--checkpoint", t.TempDir(), "-q")...)
	wantCounts(t, "local mode", local, truth)
	for _, m := range []struct{ workers, parts int }{{1, 2}, {2, 4}} {
		other := clustertest.Start(t, m.workers)
		got := submit(t, other, other.Master(), append(job, "--shuffle-partitions", fmt.Sprint(m.parts))...)
		wantCounts(t, fmt.Sprintf("%d workers, %d shuffle partitions", m.workers, m.parts), got, truth)
	}
}

// BenchmarkClusterWordCount counts the same topic of 3 partitions (on a
// real 3-broker Kafka) with local mode and with three worker processes,
// each from the earliest offsets with trigger available-now, in rounds
// that alternate the two (the machine's speed drifts: compare within a
// run), and reports each one's median records per second over the whole
// submit (start, all batches, output), the ratio of the medians and each
// one's median CPU time (the submitter's, and the workers' during the
// submit: where other work shares the machine, three processes may get a
// larger share of its cores than one, which the CPU time shows). Each
// cluster round runs on three fresh workers, started (and their leader
// awaited) before the clock starts and stopped after it; no worker runs
// during a local round. The batches=1 case counts the topic
// in one batch, batches=10 caps each batch at a tenth of it
// (maxOffsetsPerTrigger), as the bench suite's throughput run does:
//
//	flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process \
//	  go test -run '^$' -bench BenchmarkClusterWordCount -benchtime 1x ./cluster/clustertest
//
// GOSTREAM_BENCH_LINES sets the lines produced (default 4000000),
// GOSTREAM_BENCH_ROUNDS the rounds of each (default 3).
func BenchmarkClusterWordCount(b *testing.B) {
	lines, rounds := benchEnv(b, "GOSTREAM_BENCH_LINES", 4_000_000), benchEnv(b, "GOSTREAM_BENCH_ROUNDS", 3)
	rng := testseed.Rand(b)
	kc, topic := startTopic(b)
	truth := map[string]int64{}
	produceLines(b, kc, topic, rng, lines, truth)
	for _, batches := range []int{1, 10} {
		b.Run(fmt.Sprintf("batches=%d", batches), func(b *testing.B) {
			if b.N != 1 {
				b.Fatalf("run with -benchtime 1x: the job counts the topic once")
			}
			job := []string{"--brokers", kc.BootstrapServers(), "--topic", topic, "-q"}
			if batches > 1 {
				job = append(job, "--max-offsets-per-trigger", fmt.Sprint((lines+batches-1)/batches))
			}
			// run submits the job to master and returns its records/s
			// and the CPU time it took: the submitter's, and the
			// workers' during the submit.
			run := func(master string, args ...string) (rate, cpu float64) {
				var c *clustertest.Cluster
				if master == "" {
					c = clustertest.Start(b, 3)
					master = c.Master()
				} else {
					c = clustertest.New(b, 0) // runs the binary only
				}
				workersCPU := func() (d time.Duration) {
					for _, w := range c.Workers {
						d += processCPU(b, w.Pid())
					}
					return d
				}
				cpu0, workers0 := childrenCPU(b), workersCPU()
				t := time.Now()
				counts := submit(b, c, master, append(job, args...)...)
				rate = float64(lines) / time.Since(t).Seconds()
				cpu = (childrenCPU(b) - cpu0 + workersCPU() - workers0).Seconds()
				c.Stop(b)
				if !maps.Equal(counts, truth) {
					b.Fatalf("%s: the counts differ from the lines produced", master)
				}
				return rate, cpu
			}
			var local, clustered, localCPU, clusterCPU []float64
			for range rounds {
				r, cpu := run("local[*]", "--checkpoint", b.TempDir())
				local, localCPU = append(local, r), append(localCPU, cpu)
				r, cpu = run("")
				clustered, clusterCPU = append(clustered, r), append(clusterCPU, cpu)
			}
			b.Logf("rounds: records/s local %.0f, cluster %.0f; CPU s local %.2f, cluster %.2f", local, clustered, localCPU, clusterCPU)
			l, c := median(local), median(clustered)
			b.ReportMetric(l, "local-records/s")
			b.ReportMetric(c, "cluster-records/s")
			b.ReportMetric(c/l, "cluster/local")
			b.ReportMetric(median(localCPU), "local-cpu-s")
			b.ReportMetric(median(clusterCPU), "cluster-cpu-s")
		})
	}
}

// childrenCPU is the CPU time of this process's children that ended and
// were waited for.
func childrenCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the CPU time a running process took so far, from
// /proc/PID/stat (its utime and stime, in clock ticks of 10 ms).
func processCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("the CPU time of worker process %d: %v", pid, err)
	}
	// The fields after the command's closing parenthesis, from the state
	// (field 3): utime and stime are fields 14 and 15.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// benchEnv is the positive integer environment variable name sets, def
// if it is not set.
func benchEnv(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// median is the median of xs.
func median(xs []float64) float64 {
	xs = slices.Sorted(slices.Values(xs))
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// TestClusterResumesAfterSIGTERM: the whole cluster stopped with SIGTERM
// while a job runs batch after batch (a batch may be in flight), and
// started again, resumes the job by itself (the new leader's driver runs
// the batch the log planned and did not commit again, with the same
// ranges) and its jsonl file, written by the leader, ends with the exact
// counts of every line produced, before and after the stop.
func TestClusterResumesAfterSIGTERM(t *testing.T) {
	skipShort(t)
	rng := testseed.Rand(t)
	kc, topic := startTopic(t)
	truth := map[string]int64{}
	produceLines(t, kc, topic, rng, 30000, truth)

	c := clustertest.Start(t, 3)
	path := filepath.Join(t.TempDir(), "counts.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	follow := c.Command(ctx, "submit", "wordcount", "--master", c.Master(), "--brokers", kc.BootstrapServers(), "--topic", topic,
		"--starting-offsets", "earliest", "--trigger", "100ms", "--max-offsets-per-trigger", "2000", "--output-mode", "complete",
		"--sink", "jsonl:"+path, "-q")
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	f := &countsFile{t: t, path: path}
	counted, waitCounts := f.counted, f.wait
	waitCounts("running", func(batch int64, _ map[string]int64) bool { return batch >= 2 })
	c.Stop(t)
	cancel()
	_ = follow.Wait()
	stopped, _ := counted()
	produceLines(t, kc, topic, rng, 5000, truth)
	for _, w := range c.Workers {
		w.Start(t)
	}
	waitCounts("resumed", func(batch int64, counts map[string]int64) bool { return batch > stopped && maps.Equal(counts, truth) })
}
