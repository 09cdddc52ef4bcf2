package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/kafkatest"
)

// wordCountQuery starts the word count of topic into the memory table name,
// in complete mode, with the checkpoint dir and extra source options.
func wordCountQuery(t *testing.T, s *engine.Session, addrs []string, topic, name, dir string, trig engine.Trigger, opts map[string]string) (*engine.StreamingQuery, error) {
	t.Helper()
	r := s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", topic).Option("startingOffsets", "earliest")
	for k, v := range opts {
		r.Option(k, v)
	}
	lines := r.Load().Select(engine.Col("value").Cast(engine.String))
	counts := lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word")).GroupBy(engine.Col("word")).Count()
	return counts.WriteStream().OutputMode(engine.Complete).Format("memory").QueryName(name).Trigger(trig).
		Option("checkpointLocation", dir).Start(context.Background())
}

// lineProducer writes batches of corpus lines to a topic until stopped.
// A batch that fails (a crash can fail a producer's initialization) is
// written again, so some lines may be in the topic twice: the expected
// counts come from what the topic holds (topicLines).
type lineProducer struct {
	cl      *kgo.Client
	stop    context.CancelFunc
	done    chan struct{}
	logf    func(string, ...any)
	mu      sync.Mutex
	acked   []string // lines Kafka acknowledged
	retries int
	err     error // a batch no broker took within producerPatience

	closeOnce sync.Once
}

func startProducer(t *testing.T, addrs []string, topic string, seed uint64) *lineProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &lineProducer{cl: cl, stop: stop, done: make(chan struct{}), logf: t.Logf}
	go func() {
		defer close(p.done)
		for i := uint64(0); ctx.Err() == nil; i++ {
			batch := corpus(100, seed+i)
			recs := make([]*kgo.Record, len(batch))
			for j, l := range batch {
				recs[j] = &kgo.Record{Value: []byte(l)}
			}
			for began := time.Now(); ; {
				// Not ctx: a batch begun is finished.
				pctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := cl.ProduceSync(pctx, recs...).FirstErr()
				cancel()
				if err == nil {
					break
				}
				p.mu.Lock()
				p.retries++
				if time.Since(began) > producerPatience {
					p.err = fmt.Errorf("producer: batch %d not acknowledged within %v: %w", i, producerPatience, err)
					p.mu.Unlock()
					return
				}
				p.mu.Unlock()
				p.logf("producer: batch %d failed, writing it again: %v", i, err)
				select { // a failure may come at once: no spinning
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				// Fresh records for the partitioner, and for kgo, which
				// keeps a record's first context: a retry would otherwise
				// fail at once with the canceled pctx, forever.
				for _, r := range recs {
					r.Partition, r.Offset, r.Context = 0, 0, nil
				}
			}
			p.mu.Lock()
			p.acked = append(p.acked, batch...)
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return p
}

// producerPatience bounds the retries of one batch: a broker restarted
// after a kill takes seconds to lead again, never minutes.
const producerPatience = 2 * time.Minute

// finish stops the producer and returns every line Kafka acknowledged, or
// why it stopped before. It may be called again.
func (p *lineProducer) finish() ([]string, error) {
	p.stop()
	<-p.done
	p.closeOnce.Do(p.cl.Close)
	return p.acked, p.err
}

func (p *lineProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// topicLines reads every record of topic with a plain franz-go consumer.
func topicLines(ctx context.Context, t *testing.T, addrs []string, topic string) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	ends.Each(func(end kadm.ListedOffset) {
		rd, err := kgo.NewClient(kgo.SeedBrokers(addrs...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {end.Partition: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		for next := int64(0); next < end.Offset; {
			fs := rd.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatalf("reading %s/%d back: %v", topic, end.Partition, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				lines = append(lines, string(r.Value))
				next = r.Offset + 1
			})
		}
	})
	return lines
}

// leaderOf returns the current leader of a partition, or -1.
func leaderOf(ctx context.Context, adm *kadm.Client, topic string, partition int32) int32 {
	m, err := adm.Metadata(ctx, topic)
	if err != nil {
		return -1
	}
	p, ok := m.Topics[topic].Partitions[partition]
	if !ok {
		return -1
	}
	return p.Leader
}

// TestIntegrationBrokerCrash kills each broker of the 3-broker cluster in
// turn with SIGKILL (in every round, first the leader of one partition),
// holds it down for a random while, restarts it and waits until its
// replicas are in sync, for several rounds, while a producer writes known
// lines to a topic of 3 partitions with replication factor 2. Meanwhile a
// continuous query counts the words (its partition readers follow moving
// leaders) and another is restarted on its checkpoint again and again with
// the available-now trigger (restarts during leader elections, and the
// values-only reads). Neither may stop with an error, and both final tables
// must be exact.
func TestIntegrationBrokerCrash(t *testing.T) {
	c, topic := realKafka(t)
	seed := testseed.Seed(t) // the kill schedule, the lines, the restarts' pauses
	rng := rand.New(rand.NewPCG(seed, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	adminCl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)

	var logs logbuf.Buffer
	s := engine.NewSession(engine.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	prod := startProducer(t, c.Addrs(), topic, seed)
	defer prod.finish() // stops it if the test ends early; its result is checked below
	continuous, err := wordCountQuery(t, s, c.Addrs(), topic, "continuous", t.TempDir(), engine.Trigger{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer continuous.Stop()

	// The restarted query: one available-now run after another until the
	// kills end.
	restartDir := t.TempDir()
	pauses := rand.New(rand.NewPCG(seed, 4))
	killsDone, restartsDone := make(chan struct{}), make(chan struct{})
	var (
		endKills   sync.Once
		runs       int
		restartErr error // set before restartsDone closes
	)
	go func() {
		defer close(restartsDone)
		for {
			q, err := wordCountQuery(t, s, c.Addrs(), topic, "restarted", restartDir, engine.AvailableNow(), nil)
			if err == nil {
				err = q.AwaitTermination(ctx)
			}
			runs++
			if err != nil {
				restartErr = fmt.Errorf("run %d of the restarted query: %w", runs, err)
				return
			}
			select {
			case <-killsDone:
				return
			case <-time.After(time.Duration(200+pauses.IntN(800)) * time.Millisecond):
			}
		}
	}()
	stopRestarts := func() {
		endKills.Do(func() { close(killsDone) })
		<-restartsDone
	}
	defer stopRestarts()
	running := func(when string) {
		t.Helper()
		if !continuous.IsActive() {
			t.Fatalf("%s: the continuous query stopped: %v\nwarnings:\n%s", when, continuous.Exception(), logs.String())
		}
		select {
		case <-restartsDone:
			t.Fatalf("%s: %v\nwarnings:\n%s", when, restartErr, logs.String())
		default:
		}
	}

	const rounds = 2
	kills := 0
	for round := range rounds {
		// First the leader of one partition, then the other brokers.
		part := int32(round % 3)
		first := leaderOf(ctx, adm, topic, part)
		if first < 1 {
			t.Fatalf("round %d: partition %d has no leader before the kills", round, part)
		}
		order := []int{int(first)}
		for _, id := range rng.Perm(3) {
			if id+1 != int(first) {
				order = append(order, id+1)
			}
		}
		for _, id := range order {
			down := time.Duration(1000+rng.IntN(10000)) * time.Millisecond
			t.Logf("round %d: killing broker %d (leader of %s/%d: %v) for %v; %d lines produced",
				round, id, topic, part, id == int(first), down, prod.count())
			if err := c.KillBroker(id); err != nil {
				t.Fatal(err)
			}
			kills++
			time.Sleep(down) // the query and the producer run on meanwhile
			running(fmt.Sprintf("broker %d down", id))
			if err := c.RestartBroker(ctx, id); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitInSync(ctx, topic); err != nil {
				t.Fatal(err)
			}
			running(fmt.Sprintf("broker %d back", id))
		}
	}
	stopRestarts()
	if restartErr != nil {
		t.Fatalf("%v\nwarnings:\n%s", restartErr, logs.String())
	}
	t.Logf("the restarted query ran %d times", runs)
	acked, err := prod.finish()
	if err != nil {
		t.Fatal(err)
	}
	lines := topicLines(ctx, t, c.Addrs(), topic)
	t.Logf("%d kills; %d lines acknowledged (%d batches written again), %d in the topic", kills, len(acked), prod.retries, len(lines))
	want := expected(lines)
	for w, n := range expected(acked) {
		if want[w] < n {
			t.Errorf("Kafka lost acknowledged lines: the topic has %q %d times, %d were acknowledged", w, want[w], n)
		}
	}

	if err := continuous.ProcessAllAvailable(ctx); err != nil {
		t.Fatalf("continuous query: %v\nwarnings:\n%s", err, logs.String())
	}
	sameCounts(t, table(s.Table("continuous")), want)
	q, err := wordCountQuery(t, s, c.Addrs(), topic, "restarted", restartDir, engine.AvailableNow(), nil)
	if err == nil {
		err = q.AwaitTermination(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, table(s.Table("restarted")), want)
	if t.Failed() {
		t.Logf("warnings:\n%s", logs.String())
	}
}

// TestIntegrationRestartWithoutLeader restarts a query on its checkpoint
// while a partition of its topic has no leader (replication factor 1, its
// only broker killed): with a short kafkaRetryTimeout the query stops with
// an error naming the partition and the brokers; with the default it
// waits, warning, and once the broker is back it goes on and counts
// exactly.
func TestIntegrationRestartWithoutLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs real Kafka (run without -short)")
	}
	c := cluster
	topic := kafkatest.UniqueTopic(t, "logs")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	first := corpus(3000, 41)
	produceTo(t, c.Addrs(), topic, bytesOf(first)...)
	dir := t.TempDir()
	var logs logbuf.Buffer
	s := engine.NewSession(engine.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	run := func(opts map[string]string) (*engine.StreamingQuery, error) {
		return wordCountQuery(t, s, c.Addrs(), topic, "wc", dir, engine.AvailableNow(), opts)
	}
	q, err := run(nil)
	if err == nil {
		err = q.AwaitTermination(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	second := corpus(2000, 42) // for the restarted query to read
	produceTo(t, c.Addrs(), topic, bytesOf(second)...)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	victim := leaderOf(ctx, kadm.NewClient(cl), topic, 0)
	if victim < 1 {
		t.Fatalf("partition 0 of %s has no leader", topic)
	}
	if err := c.KillBroker(int(victim)); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			if err := c.RestartBroker(context.Background(), int(victim)); err != nil {
				t.Error(err)
			}
		}
	}()

	// Short patience: a precise error.
	q, err = run(map[string]string{"kafkaRetryTimeout": "3s"})
	if err == nil {
		err = q.AwaitTermination(ctx)
	}
	if !errors.Is(err, kafkasrc.ErrUnavailable) {
		t.Fatalf("with partition 0's only broker %d down: err = %v, want ErrUnavailable", victim, err)
	}
	victimAddr := c.Addrs()[victim-1]
	for _, want := range []string{topic + "/0 (", "brokers answering: ", "not answering: ", victimAddr, "kafkaRetryTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}

	// Default patience: the query waits, then goes on.
	q, err = run(nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(logs.String(), "waiting for Kafka to recover") {
		if time.Now().After(deadline) || !q.IsActive() {
			t.Fatalf("no warning while the partition has no leader (query active: %v, err %v); logs:\n%s", q.IsActive(), q.Exception(), logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !q.IsActive() {
		t.Fatalf("the query stopped while waiting: %v", q.Exception())
	}
	if err := c.RestartBroker(ctx, int(victim)); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := q.AwaitTermination(ctx); err != nil {
		t.Fatalf("after broker %d came back: %v\nlogs:\n%s", victim, err, logs.String())
	}
	sameCounts(t, table(s.Table("wc")), expected(first, second))
	t.Logf("warnings:\n%s", logs.String())
}
