package kafkatest_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/kafkatest"
)

// TestCluster runs one real 3-broker cluster and checks each feature on it
// in subtests (a cluster takes tens of seconds to start on a small machine).
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real Kafka brokers; skipped with -short")
	}
	begin := time.Now()
	c := kafkatest.Start(t, kafkatest.Brokers(3), kafkatest.Topic("logs", 3, 2))
	t.Logf("3-broker cluster with topic logs ready in %v", time.Since(begin).Round(time.Millisecond))

	if got := c.Addrs(); len(got) != 3 {
		t.Fatalf("Addrs() = %v, want 3 addresses", got)
	}
	if got, want := c.BootstrapServers(), strings.Join(c.Addrs(), ","); got != want {
		t.Fatalf("BootstrapServers() = %q, want %q", got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm := newAdmin(t, c)

	t.Run("Metadata", func(t *testing.T) {
		m, err := adm.Metadata(ctx, "logs")
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Brokers) != 3 {
			t.Errorf("metadata lists %d brokers, want 3", len(m.Brokers))
		}
		td := m.Topics["logs"]
		if len(td.Partitions) != 3 {
			t.Fatalf("topic logs has %d partitions, want 3", len(td.Partitions))
		}
		for _, p := range td.Partitions {
			if len(p.Replicas) != 2 || p.Leader < 0 {
				t.Errorf("partition %d: replicas %v leader %d, want 2 replicas and a leader", p.Partition, p.Replicas, p.Leader)
			}
		}
	})

	t.Run("ProduceConsume", func(t *testing.T) {
		topic := kafkatest.UniqueTopic(t, "pc")
		if err := c.CreateTopic(ctx, topic, 3, 2); err != nil {
			t.Fatal(err)
		}
		var want []string
		var recs []*kgo.Record
		for i := range 300 {
			v := "record-" + string(rune('a'+i%26)) + "-" + time.Duration(i).String()
			want = append(want, v)
			recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(v)})
		}
		prod := newClient(t, c, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		got := consume(ctx, t, c, topic, len(want))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("consumed %d records that differ from the %d produced", len(got), len(want))
		}
		parts := map[int32]bool{}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				parts[o.Partition] = true
			}
		})
		if len(parts) != 3 {
			t.Errorf("records landed in %d partitions, want all 3 (round robin)", len(parts))
		}
	})

	t.Run("CreateTopicErrors", func(t *testing.T) {
		topic := kafkatest.UniqueTopic(t, "dup")
		if err := c.CreateTopic(ctx, topic, 1, 1); err != nil {
			t.Fatal(err)
		}
		err := c.CreateTopic(ctx, topic, 1, 1)
		if !errors.Is(err, kafkatest.ErrTopic) || !errors.Is(err, kerr.TopicAlreadyExists) {
			t.Errorf("second CreateTopic: %v, want ErrTopic and TopicAlreadyExists", err)
		}
		err = c.CreateTopic(ctx, kafkatest.UniqueTopic(t, "rf"), 1, 4)
		if !errors.Is(err, kerr.InvalidReplicationFactor) || !strings.Contains(err.Error(), "Brokers(n)") {
			t.Errorf("CreateTopic with rf 4 on 3 brokers: %v, want InvalidReplicationFactor and a hint", err)
		}
	})

	t.Run("ConsoleProduce", func(t *testing.T) {
		for _, codec := range []string{"", "gzip", "lz4"} {
			t.Run("codec="+codec, func(t *testing.T) {
				topic := kafkatest.UniqueTopic(t, "console")
				if err := c.CreateTopic(ctx, topic, 1, 2); err != nil {
					t.Fatal(err)
				}
				want := []string{"hello world", "ünïcödé façade", "日本語 テキスト", "emoji 🚀 ok", "", "  spaced  out  "}
				props := map[string]string{"linger.ms": "5"}
				if codec != "" {
					props["compression.type"] = codec
				}
				input := strings.NewReader(strings.Join(want, "\n") + "\n")
				if err := c.ConsoleProduce(ctx, topic, input, props); err != nil {
					t.Fatal(err)
				}
				recs := consumeRecords(ctx, t, c, topic, len(want))
				var got []string
				for _, r := range recs {
					got = append(got, string(r.Value))
					wantCodec := map[string]uint8{"": 0, "gzip": 1, "lz4": 3}[codec]
					if ct := r.Attrs.CompressionType(); ct != wantCodec {
						t.Errorf("record %q has compression type %d, want %d (%s)", r.Value, ct, wantCodec, codec)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("consumed %q, want %q", got, want)
				}
			})
		}
	})

	t.Run("ConsoleProduceMissingTopic", func(t *testing.T) {
		err := c.ConsoleProduce(ctx, kafkatest.UniqueTopic(t, "missing"), strings.NewReader("x\n"), nil)
		if !errors.Is(err, kafkatest.ErrConsoleProducer) {
			t.Errorf("ConsoleProduce to a missing topic: %v, want ErrConsoleProducer", err)
		}
	})

	t.Run("DeleteRecords", func(t *testing.T) {
		topic := kafkatest.UniqueTopic(t, "del")
		if err := c.CreateTopic(ctx, topic, 2, 2); err != nil {
			t.Fatal(err)
		}
		prod := newClient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for i := range 10 {
			r := &kgo.Record{Topic: topic, Partition: 1, Value: []byte{byte('0' + i)}}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.DeleteRecords(ctx, topic, 1, 7); err != nil {
			t.Fatal(err)
		}
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := starts.Lookup(topic, 1); o.Offset != 7 {
			t.Errorf("log start offset of partition 1 = %d, want 7", o.Offset)
		}
		if o, _ := starts.Lookup(topic, 0); o.Offset != 0 {
			t.Errorf("log start offset of partition 0 = %d, want 0", o.Offset)
		}
		if err := c.DeleteRecords(ctx, topic, 1, 50); !errors.Is(err, kafkatest.ErrTopic) {
			t.Errorf("DeleteRecords past the end: %v, want ErrTopic", err)
		}
	})

	t.Run("KillRestartBroker", func(t *testing.T) {
		topic := kafkatest.UniqueTopic(t, "kill")
		if err := c.CreateTopic(ctx, topic, 1, 3); err != nil {
			t.Fatal(err)
		}
		leaderOf := func() int32 {
			m, err := adm.Metadata(ctx, topic)
			if err != nil {
				return -2
			}
			return m.Topics[topic].Partitions[0].Leader
		}
		victim := leaderOf()
		if victim < 1 || victim > 3 {
			t.Fatalf("partition 0 of %s has leader %d, want one of the brokers 1-3", topic, victim)
		}
		addr := c.Addrs()[victim-1]
		if err := c.KillBroker(int(victim)); err != nil {
			t.Fatal(err)
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("killed broker %d still accepts connections at %s", victim, addr)
		}
		if err := c.KillBroker(int(victim)); !errors.Is(err, kafkatest.ErrBackend) {
			t.Errorf("second KillBroker(%d): %v, want ErrBackend", victim, err)
		}
		// A crash, not a controlled shutdown: the leadership moves only
		// once the controller notices the broker is gone.
		waitFor(ctx, t, "a new leader", func() bool { l := leaderOf(); return l > 0 && l != victim })
		prod := newClient(t, c)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("during")}).FirstErr(); err != nil {
			t.Fatalf("produce with broker %d down: %v", victim, err)
		}
		if err := c.RestartBroker(ctx, int(victim)); err != nil {
			t.Fatal(err)
		}
		if err := c.RestartBroker(ctx, int(victim)); !errors.Is(err, kafkatest.ErrBackend) {
			t.Errorf("RestartBroker of running broker %d: %v, want ErrBackend", victim, err)
		}
		if err := c.WaitInSync(ctx, topic); err != nil {
			t.Fatal(err)
		}
		// The restarted broker answers and lists the whole cluster; the
		// record written while it was down is there.
		one, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer one.Close()
		bm, err := kadm.NewClient(one).BrokerMetadata(ctx)
		if err != nil || len(bm.Brokers) != 3 {
			t.Fatalf("restarted broker %d lists %v (%v), want 3 brokers", victim, bm.Brokers, err)
		}
		if got := consume(ctx, t, c, topic, 1); got[0] != "during" {
			t.Errorf("consumed %q after the restart, want [during]", got)
		}
		for _, id := range []int{0, 4} {
			if err := c.KillBroker(id); !errors.Is(err, kafkatest.ErrBackend) {
				t.Errorf("KillBroker(%d): %v, want ErrBackend", id, err)
			}
		}
	})

	t.Run("ExternalBackend", func(t *testing.T) {
		// The failed start below keeps its directory; under the test's own
		// temporary directory it goes with the test.
		t.Setenv("TMPDIR", t.TempDir())
		t.Setenv(kafkatest.BackendEnv, "external")
		t.Setenv(kafkatest.BrokersEnv, c.BootstrapServers())
		topic := kafkatest.UniqueTopic(t, "ext")
		ext, err := kafkatest.StartCluster(ctx, kafkatest.Topic(topic, 1, 3), kafkatest.Logf(t.Logf))
		if err != nil {
			t.Fatal(err)
		}
		if err := ext.KillBroker(1); !errors.Is(err, kafkatest.ErrBackend) {
			t.Errorf("KillBroker on the external backend: %v, want ErrBackend", err)
		}
		if got := ext.BootstrapServers(); got != c.BootstrapServers() {
			t.Errorf("external BootstrapServers() = %q, want %q", got, c.BootstrapServers())
		}
		if err := ext.Close(); err != nil {
			t.Fatal(err)
		}
		if err := ext.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := ext.CreateTopic(ctx, "after-close", 1, 1); !errors.Is(err, kafkatest.ErrClosed) {
			t.Errorf("CreateTopic after Close: %v, want ErrClosed", err)
		}
		// Close deleted the topic it created; the brokers are still up.
		waitFor(ctx, t, "topic "+topic+" deleted", func() bool {
			ts, err := adm.ListTopics(ctx)
			return err == nil && !ts.Has(topic) && len(ts) > 0
		})
		// Asking for more brokers than the external cluster has fails clearly.
		short, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := kafkatest.StartCluster(short, kafkatest.Brokers(4)); !errors.Is(err, kafkatest.ErrNotReady) {
			t.Errorf("StartCluster(Brokers(4)) on 3 external brokers: %v, want ErrNotReady", err)
		}
	})
}

func newClient(t *testing.T, c *kafkatest.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Addrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t *testing.T, c *kafkatest.Cluster) *kadm.Client {
	return kadm.NewClient(newClient(t, c))
}

// consumeRecords reads n records of topic from the start, in offset order
// per partition.
func consumeRecords(ctx context.Context, t *testing.T, c *kafkatest.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, c, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records of %s: %v", len(recs), n, topic, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s[%d]: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	if len(recs) != n {
		t.Fatalf("consumed %d records of %s, want %d", len(recs), topic, n)
	}
	return recs
}

func consume(ctx context.Context, t *testing.T, c *kafkatest.Cluster, topic string, n int) []string {
	t.Helper()
	var vs []string
	for _, r := range consumeRecords(ctx, t, c, topic, n) {
		vs = append(vs, string(r.Value))
	}
	return vs
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
