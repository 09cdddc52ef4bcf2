// Package embedtest starts the in-process Kafka broker (kfake, through
// kafkasrc.StartEmbedded) for fast unit tests and writes lines to it.
// Integration tests run on Apache Kafka (kafkatest) instead.
package embedtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/kafkasrc"
)

// Start starts a broker with topic in partitions partitions, stopped when
// t ends, and returns its bootstrap servers (host:port,...).
func Start(t testing.TB, topic string, partitions int32) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := kafkasrc.StartEmbedded(ctx, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return strings.Join(e.Addrs(), ",")
}

// Produce writes lines, as record values, to topic on brokers, round-robin
// over its partitions, and fails t unless all were written.
func Produce(t testing.TB, brokers, topic string, lines ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(l)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
