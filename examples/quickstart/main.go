// Command quickstart is Spark's kafka_wordcount.py as a Go program on
// gostream's embedded broker, so that
//
//	go run ./examples/quickstart
//
// needs no setup. For the same query on a real Kafka cluster, drop the
// embedded broker and set kafka.bootstrap.servers to the cluster's brokers.
package main

import (
	"context"
	"log"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/kafkasrc"
)

func main() {
	ctx := context.Background()
	broker, err := kafkasrc.StartEmbedded(ctx, "logs", 3) // a Kafka-protocol broker in this process
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	brokers := strings.Join(broker.Addrs(), ",")
	produce(ctx, brokers, "logs", "GET /index.html 200", "GET /missing 404", "POST /login 200")

	s := engine.NewSession()
	lines := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").
		Option("startingOffsets", "earliest").
		Load().
		SelectExpr("CAST(value AS STRING)")
	words := lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word"))
	wordCounts := words.GroupBy(engine.Col("word")).Count()

	q, err := wordCounts.WriteStream().
		OutputMode(engine.Complete).
		Format("console").
		Trigger(engine.AvailableNow()). // stop once every record is counted
		Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := q.AwaitTermination(ctx); err != nil {
		log.Fatal(err)
	}
}

// produce writes lines to topic, a record each, and waits until the
// broker acknowledged them.
func produce(ctx context.Context, brokers, topic string, lines ...string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	for _, l := range lines {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(l)).FirstErr(); err != nil {
			log.Fatal(err)
		}
	}
}
