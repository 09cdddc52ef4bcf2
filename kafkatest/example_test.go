package kafkatest_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/kafkatest"
)

// A test starts a 3-broker cluster with a topic, produces to it with
// franz-go and feeds it lines through Kafka's own console producer. The
// cluster stops when the test ends.
func ExampleStart() {
	var t testing.TB // the *testing.T of your test

	c := kafkatest.Start(t, kafkatest.Topic("logs", 3, 2))

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	rec := &kgo.Record{Topic: "logs", Value: []byte("hello world")}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// A topic of its own for this test, fed through kafka-console-producer.
	topic := kafkatest.UniqueTopic(t, "lines")
	if err := c.CreateTopic(ctx, topic, 1, 1); err != nil {
		t.Fatal(err)
	}
	lines := strings.NewReader("to be or not to be\nthat is the question\n")
	if err := c.ConsoleProduce(ctx, topic, lines, map[string]string{"compression.type": "gzip"}); err != nil {
		t.Fatal(err)
	}
}

// TestMain, or a benchmark program, shares one cluster across many tests.
func ExampleStartCluster() {
	ctx := context.Background()
	c, err := kafkatest.StartCluster(ctx, kafkatest.Brokers(1))
	if err != nil {
		slog.Error("no Kafka", "err", err)
		os.Exit(1)
	}
	defer c.Close()
	slog.Info("Kafka up", "bootstrap.servers", c.BootstrapServers())
}

// A runnable round trip on whichever backend GOSTREAM_KAFKA_BACKEND
// selects: a one-broker cluster, a topic, two lines through Kafka's console
// producer, read back with franz-go.
func ExampleCluster_ConsoleProduce() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := kafkatest.StartCluster(ctx, kafkatest.Brokers(1), kafkatest.Topic("greetings", 1, 1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.ConsoleProduce(ctx, "greetings", strings.NewReader("hello\nworld\n"), nil); err != nil {
		fmt.Println(err)
		return
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumeTopics("greetings"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	for n := 0; n < 2 && ctx.Err() == nil; {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			fmt.Println(string(r.Value))
			n++
		})
	}
	// Prints:
	// hello
	// world
	// (Compiled, not run, by go test: starting Kafka has no place in the
	// -short loop. TestCluster runs the same round trip on every backend.)
}
