package kafkasrc

// Integration tests against a real Apache Kafka cluster started by
// kafkatest (3 brokers, KRaft). They run unless -short is given; the cluster
// is started once for the package, on first use, and stopped by TestMain.
//
//	go test ./kafkasrc              # unit and integration tests
//	go test -short ./kafkasrc       # unit tests only

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gostream/gostream/kafkatest"
	"github.com/twmb/franz-go/pkg/kgo"
)

var shared struct {
	once    sync.Once
	cluster *kafkatest.Cluster
	err     error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if shared.cluster != nil {
		if err := shared.cluster.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "kafkatest: close:", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

// realKafka returns the shared cluster, starting it on first use; it skips
// the test under -short and fails it when Kafka cannot start.
func realKafka(t *testing.T) *kafkatest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against real Kafka; run without -short")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.cluster, shared.err = kafkatest.StartCluster(ctx, kafkatest.Brokers(3))
	})
	if shared.err != nil {
		t.Fatalf("starting real Kafka: %v", shared.err)
	}
	return shared.cluster
}

func realTopic(t *testing.T, c *kafkatest.Cluster, prefix string, partitions int32, rf int16) string {
	t.Helper()
	topic := kafkatest.UniqueTopic(t, prefix)
	if err := c.CreateTopic(testCtx(t), topic, partitions, rf); err != nil {
		t.Fatal(err)
	}
	return topic
}

func TestIntegrationExactRanges(t *testing.T) {
	c := realKafka(t)
	ctx := testCtx(t)
	topic := realTopic(t, c, "ranges", 3, 2)
	for p := range int32(3) {
		produceN(t, c.Addrs(), topic, p, 0, 1000*int(p+1))
	}
	s := newTestSource(t, c.Addrs(), nil)

	in := PlanInput{Starting: StartingOffsets{Earliest: true}, MaxOffsetsPerTrigger: 700, MinPartitions: 5, FailOnDataLoss: true}
	got := drainBatches(t, ctx, s, topic, in, func(batch int) {
		if batch == 2 {
			produceN(t, c.Addrs(), topic, 1, 2000, 333)
		}
	})
	for p, n := range map[int32]int{0: 1000, 1: 2333, 2: 3000} {
		if want := values(fmt.Sprintf("p%d-", p), 0, n); !slices.Equal(got[p], want) {
			t.Errorf("partition %d: got %d records, want %d", p, len(got[p]), n)
		}
	}
	// Non-contiguous and repeated ranges (a re-run batch).
	for _, r := range []Range{{topic, 2, 2500, 2600}, {topic, 2, 10, 11}, {topic, 2, 10, 3000}, {topic, 2, 2999, 3000}} {
		if _, vals, err := readAll(t, ctx, s, r); err != nil || !slices.Equal(vals, values("p2-", int(r.From), int(r.Until))) {
			t.Fatalf("range %s: %d records, %v", r, len(vals), err)
		}
	}
}

// TestIntegrationFollow runs the fetch-ahead checks of
// TestFollowFetchesAhead on real Kafka, with replicated partitions.
func TestIntegrationFollow(t *testing.T) {
	c := realKafka(t)
	testFollow(t, c.Addrs(), realTopic(t, c, "follow", 2, 2))
}

// TestReadValuesKeptSlices on real Kafka, with replicated partitions.
func TestIntegrationReadValuesKeptSlices(t *testing.T) {
	c := realKafka(t)
	testReadValuesKeptSlices(t, c.Addrs(), realTopic(t, c, "kept", int32(len(keptCodecs)), 2))
}

func TestIntegrationCompression(t *testing.T) {
	c := realKafka(t)
	codecIDs := map[string]uint8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
	var lines strings.Builder
	var want []string
	for i := range 5000 {
		fmt.Fprintf(&lines, "line %d: the quick brown fox jumps over the lazy dog\n", i)
		want = append(want, fmt.Sprintf("line %d: the quick brown fox jumps over the lazy dog", i))
	}
	slices.Sort(want)
	for _, codec := range Compressions {
		t.Run(codec, func(t *testing.T) {
			topic := realTopic(t, c, "codec-"+codec, 3, 2)
			stats, err := ProduceLines(testCtx(t), ProduceConfig{
				Brokers: c.Addrs(), Topic: topic, Compression: codec, Stdin: strings.NewReader(lines.String()),
			}, "-")
			if err != nil || stats.Acked != int64(len(want)) {
				t.Fatalf("ProduceLines = %+v, %v", stats, err)
			}
			got, codecs := readTopic(t, c.Addrs(), topic)
			if !slices.Equal(got, want) {
				t.Fatalf("read back %d records, want %d", len(got), len(want))
			}
			if !codecs[codecIDs[codec]] || len(codecs) != 1 {
				t.Fatalf("batches used codecs %v, want only %s", codecs, codec)
			}
		})
	}
}

// TestIntegrationConsoleProducer reads records written by Kafka's own Java
// console producer, compressed with gzip and with lz4 (Kafka's lz4 frames,
// which kafkasrc decodes itself).
func TestIntegrationConsoleProducer(t *testing.T) {
	c := realKafka(t)
	for _, codec := range []string{"gzip", "lz4"} {
		t.Run(codec, func(t *testing.T) {
			topic := realTopic(t, c, "console-"+codec, 1, 2)
			want := values("j", 0, 2000)
			input := strings.Join(want, "\n") + "\n"
			if err := c.ConsoleProduce(testCtx(t), topic, strings.NewReader(input), map[string]string{"compression.type": codec}); err != nil {
				t.Fatal(err)
			}
			got, codecs := readTopic(t, c.Addrs(), topic)
			slices.Sort(want)
			if !slices.Equal(got, want) || len(codecs) != 1 {
				t.Fatalf("read %d records with codecs %v, want %d", len(got), codecs, len(want))
			}
		})
	}
}

// TestIntegrationTransactions ends ranges at commit and abort markers:
// ReadRange must return without waiting for a record at the marker's offset.
func TestIntegrationTransactions(t *testing.T) {
	c := realKafka(t)
	ctx := testCtx(t)
	topic := realTopic(t, c, "txn", 1, 2)
	txn := func(first, n int, commit kgo.TransactionEndTry) {
		produceTxn(t, ctx, c.Addrs(), topic, first, n, commit)
	}
	txn(0, 5, kgo.TryCommit) // 0-4, marker 5
	txn(5, 3, kgo.TryAbort)  // 6-8, marker 9
	txn(8, 2, kgo.TryCommit) // 10-11, marker 12

	for _, tc := range []struct {
		isolation string
		want      []string
	}{
		{"read_uncommitted", values("p0-", 0, 10)},
		{"read_committed", append(values("p0-", 0, 5), values("p0-", 8, 10)...)},
	} {
		s := newTestSource(t, c.Addrs(), map[string]string{"isolation.level": tc.isolation})
		var latest Offsets
		waitFor(t, 30*time.Second, "the last marker to be visible", func() bool {
			var err error
			_, latest, err = s.Offsets(ctx, []string{topic})
			return err == nil && latest[topic][0] == 13
		})
		got := readValues(t, ctx, s, tc.isolation, 20*time.Second, Range{topic, 0, 0, 6}, Range{topic, 0, 6, 10}, Range{topic, 0, 10, 13})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.isolation, got, tc.want)
		}
	}
}

func TestIntegrationDeleteRecords(t *testing.T) {
	c := realKafka(t)
	ctx := testCtx(t)
	topic := realTopic(t, c, "deleted", 2, 2)
	produceN(t, c.Addrs(), topic, 0, 0, 100)
	produceN(t, c.Addrs(), topic, 1, 0, 10)
	if err := c.DeleteRecords(ctx, topic, 0, 60); err != nil {
		t.Fatal(err)
	}
	s := newTestSource(t, c.Addrs(), nil)
	earliest, latest, err := s.Offsets(ctx, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	if earliest[topic][0] != 60 || latest[topic][0] != 100 || earliest[topic][1] != 0 {
		t.Fatalf("offsets = %v %v, want partition 0 at [60, 100)", earliest, latest)
	}
	in := PlanInput{Prev: Offsets{topic: {0: 10, 1: 10}}, Earliest: earliest, Latest: latest, FailOnDataLoss: true}
	_, err = PlanBatch(in)
	if !errors.Is(err, ErrDataLoss) || !strings.Contains(err.Error(), fmt.Sprintf("%s/0: offsets [10, 60) were deleted", topic)) || !strings.Contains(err.Error(), "set failOnDataLoss=false") {
		t.Fatalf("PlanBatch error = %v", err)
	}
	in.FailOnDataLoss = false
	plan, err := PlanBatch(in)
	if err != nil || len(plan.Warnings) != 1 || rangesString(plan.Ranges) != topic+"/0[60,100)" {
		t.Fatalf("plan = %+v, %v", plan, err)
	}
	if _, vals, err := readAll(t, ctx, s, plan.Ranges[0]); err != nil || !slices.Equal(vals, values("p0-", 60, 100)) {
		t.Fatalf("read %d records, %v", len(vals), err)
	}
	// A range planned before the deletion reads what is left of it with
	// failOnDataLoss=false, and fails naming the offsets with true, by
	// either read (before, both delivered what was left).
	if _, vals, err := readAll(t, ctx, s, Range{topic, 0, 10, 70}); err != nil || !slices.Equal(vals, values("p0-", 60, 70)) {
		t.Fatalf("read %q, %v", head(vals), err)
	}
	strict, err := NewSource(Config{Brokers: c.Addrs(), Timeout: 5 * time.Second, FailOnDataLoss: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	lost := fmt.Sprintf("kafka: data loss: %s/0: offsets [10, 60) of the range %[1]s/0[10,70) were deleted (retention or DeleteRecords) before they were read; the query stops here", topic)
	if _, vals, err := readAll(t, ctx, strict, Range{topic, 0, 10, 70}); !errors.Is(err, ErrDataLoss) || !strings.Contains(err.Error(), lost) {
		t.Fatalf("ReadRange with FailOnDataLoss read %d records, %v; want %q", len(vals), err, lost)
	}
	if vals, err := readDirect(ctx, strict, Range{topic, 0, 10, 70}); !errors.Is(err, ErrDataLoss) || !strings.Contains(err.Error(), lost) {
		t.Fatalf("ReadValues with FailOnDataLoss read %d records, %v; want %q", len(vals), err, lost)
	}
}

func TestIntegrationAdmin(t *testing.T) {
	c := realKafka(t)
	ctx := testCtx(t)
	a, err := NewAdmin(c.Addrs(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	topic := kafkatest.UniqueTopic(t, "admin")
	if err := a.CreateTopic(ctx, topic, 3, 2, map[string]string{"retention.ms": "3600000"}); err != nil {
		t.Fatal(err)
	}
	// Listed right after its creation, while brokers may still learn of
	// it, the topic is there and the listing does not fail.
	infos, err := a.ListTopics(ctx)
	if err != nil || !slices.ContainsFunc(infos, func(i TopicInfo) bool { return i.Name == topic }) {
		t.Fatalf("ListTopics right after CreateTopic: %v, %d topics without %s", err, len(infos), topic)
	}
	if err := a.CreateTopic(ctx, topic, 3, 2, nil); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("create twice: %v, want ErrTopicExists", err)
	}
	if err := a.CreateTopic(ctx, topic+"-rf", 1, 5, nil); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "use at most the number of brokers") {
		t.Fatalf("rf 5 on 3 brokers: %v", err)
	}
	produceN(t, c.Addrs(), topic, 1, 0, 4)
	info, err := a.DescribeTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Partitions) != 3 || info.ReplicationFactor != 2 || info.Partitions[1].Latest != 4 || len(info.Partitions[1].ISR) != 2 {
		t.Fatalf("describe = %+v", info)
	}
	if err := a.DeleteTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DescribeTopic(ctx, topic); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("describe deleted: %v, want ErrUnknownTopic", err)
	}
}

// TestIntegrationBatchLimits fills batches to BatchMaxBytes with small lines
// and sends one line of DefaultMaxRecordBytes: both must fit a broker with
// default limits.
func TestIntegrationBatchLimits(t *testing.T) {
	c := realKafka(t)
	topic := realTopic(t, c, "limits", 1, 2)
	var b strings.Builder
	for i := range 200_000 {
		fmt.Fprintf(&b, "%d the quick brown fox jumps over the lazy dog\n", i)
	}
	b.WriteString(strings.Repeat("x", DefaultMaxRecordBytes) + "\n")
	stats, err := ProduceLines(testCtx(t), ProduceConfig{Brokers: c.Addrs(), Topic: topic, Stdin: strings.NewReader(b.String())}, "-")
	if err != nil || stats.Acked != 200_001 {
		t.Fatalf("ProduceLines = %+v, %v", stats, err)
	}
}
