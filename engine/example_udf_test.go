package engine_test

import (
	"context"
	"fmt"
	"log"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/kafkasrc"
)

// Functions register in an init func, so that every binary that runs the
// query (every worker of a cluster) has them.
func init() {
	if err := engine.RegisterUDF("http_class", httpClass); err != nil {
		log.Fatal(err)
	}
}

// httpClass is the class of an HTTP status: "2xx", "4xx"... An error fails
// the batch, and the query, naming the function.
func httpClass(status int64) (string, error) {
	if status < 100 || status > 599 {
		return "", fmt.Errorf("HTTP status %d out of range", status)
	}
	return fmt.Sprintf("%dxx", status/100), nil
}

// ExampleRegisterUDF counts access-log requests per HTTP status class with
// a typed Go function. Its argument type is checked when the query starts:
// the status is cast to a long (bigint) to match httpClass's int64.
func ExampleRegisterUDF() {
	ctx := context.Background()
	broker, err := kafkasrc.StartEmbedded(ctx, "access", 3)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.Addrs()...), kgo.DefaultProduceTopic("access"))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	for _, line := range []string{"GET / 200", "GET /x 404", "POST /login 201", "GET /y 503"} {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(line)).FirstErr(); err != nil {
			log.Fatal(err)
		}
	}

	s := engine.NewSession()
	requests := s.ReadKafka(engine.KafkaOptions{
		BootstrapServers: strings.Join(broker.Addrs(), ","),
		Subscribe:        []string{"access"},
		StartingOffsets:  "earliest",
	}).SelectExpr("CAST(value AS STRING)")
	status := engine.Split(engine.Col("value"), " ").GetItem(2).Cast(engine.Long)
	perClass := requests.Select(engine.Udf("http_class", status).As("class")).
		GroupBy(engine.Col("class")).Count()

	q, err := perClass.WriteStream().OutputMode(engine.Complete).
		ForeachBatch(func(_ context.Context, _ int64, rows []engine.Row) error {
			slices.SortFunc(rows, func(a, b engine.Row) int { return strings.Compare(a.String(), b.String()) })
			for _, r := range rows {
				fmt.Println(r)
			}
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
	// Row(class='2xx', count=2)
	// Row(class='4xx', count=1)
	// Row(class='5xx', count=1)
}
