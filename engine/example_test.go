package engine_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/kafkasrc"
)

// send produces lines to topic, a record each, and waits for the broker's
// acknowledgement.
func send(ctx context.Context, addrs []string, topic string, lines ...string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = kgo.StringRecord(l)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		log.Fatal(err)
	}
}

// printBatch prints a batch's rows in order, as PySpark prints Rows.
func printBatch(id int64, rows []engine.Row) {
	lines := make([]string, len(rows))
	for i, r := range rows {
		lines[i] = r.String()
	}
	slices.Sort(lines)
	fmt.Printf("batch %d: %s\n", id, strings.Join(lines, " "))
}

// Example is the quickstart, with zero setup: Spark's kafka_wordcount.py on
// gostream's embedded broker, printed as Spark's console sink prints it.
// Point kafka.bootstrap.servers at a real Kafka cluster for the same query
// on it.
func Example() {
	ctx := context.Background()
	broker, err := kafkasrc.StartEmbedded(ctx, "logs", 3)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	send(ctx, broker.Addrs(), "logs", "GET /index.html 200", "GET /missing 404", "POST /login 200")

	s := engine.NewSession()
	lines := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(broker.Addrs(), ",")).
		Option("subscribe", "logs").
		Option("startingOffsets", "earliest").
		Load().
		SelectExpr("CAST(value AS STRING)")
	words := lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word"))
	wordCounts := words.GroupBy(engine.Col("word")).Count()

	q, err := wordCounts.WriteStream().OutputMode(engine.Complete).Format("console").
		Trigger(engine.AvailableNow()).Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := q.AwaitTermination(ctx); err != nil {
		log.Fatal(err)
	}
	// Unordered output:
	// -------------------------------------------
	// Batch: 0
	// -------------------------------------------
	// +-----------+-----+
	// |       word|count|
	// +-----------+-----+
	// |        GET|    2|
	// |       POST|    1|
	// |/index.html|    1|
	// |   /missing|    1|
	// |     /login|    1|
	// |        200|    2|
	// |        404|    1|
	// +-----------+-----+
}

// ExampleDataStreamWriter_ForeachBatch hands each batch's rows to a Go
// function (Spark's foreachBatch): here the requests per HTTP status of
// access-log lines.
func ExampleDataStreamWriter_ForeachBatch() {
	ctx := context.Background()
	broker, err := kafkasrc.StartEmbedded(ctx, "access", 3)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	send(ctx, broker.Addrs(), "access", "GET /index.html 200", "GET /missing 404", "POST /login 200")

	s := engine.NewSession()
	requests := s.ReadKafka(engine.KafkaOptions{
		BootstrapServers: strings.Join(broker.Addrs(), ","),
		Subscribe:        []string{"access"},
		StartingOffsets:  "earliest",
	}).SelectExpr("CAST(value AS STRING)")
	perStatus := requests.Select(engine.Split(engine.Col("value"), " ").GetItem(2).As("status")).
		GroupBy(engine.Col("status")).Count()

	q, err := perStatus.WriteStream().OutputMode(engine.Complete).
		ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
			printBatch(id, rows)
			return nil
		}).
		Trigger(engine.AvailableNow()).Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := q.AwaitTermination(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// batch 0: Row(status='200', count=2) Row(status='404', count=1)
}

// ExampleDataStreamWriter_OutputMode counts the lines per log level in
// update mode: each batch outputs only the rows its data changed. The
// query runs twice on one checkpoint, as a scheduled job would, and the
// second run resumes where the first stopped.
func ExampleDataStreamWriter_OutputMode() {
	ctx := context.Background()
	broker, err := kafkasrc.StartEmbedded(ctx, "app", 3)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	checkpoint, err := os.MkdirTemp("", "levels-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(checkpoint)

	run := func() {
		s := engine.NewSession()
		lines := s.ReadKafka(engine.KafkaOptions{
			BootstrapServers: strings.Join(broker.Addrs(), ","),
			Subscribe:        []string{"app"},
			StartingOffsets:  "earliest",
		}).SelectExpr("CAST(value AS STRING)")
		perLevel := lines.Select(engine.ElementAt(engine.Split(engine.Col("value"), " "), 1).As("level")).
			GroupBy(engine.Col("level")).Count()
		q, err := perLevel.WriteStream().OutputMode(engine.Update).
			ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
				printBatch(id, rows)
				return nil
			}).
			Option("checkpointLocation", checkpoint).
			Trigger(engine.AvailableNow()).Start(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if err := q.AwaitTermination(ctx); err != nil {
			log.Fatal(err)
		}
	}
	send(ctx, broker.Addrs(), "app", "INFO started", "WARN slow disk", "INFO ready")
	run()
	send(ctx, broker.Addrs(), "app", "ERROR disk full", "INFO retrying")
	run()
	// Output:
	// batch 0: Row(level='INFO', count=2) Row(level='WARN', count=1)
	// batch 1: Row(level='ERROR', count=1) Row(level='INFO', count=3)
}
