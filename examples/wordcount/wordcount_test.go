package wordcount_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
	_ "github.com/gostream/gostream/examples/wordcount" // registers the jobs
	"github.com/gostream/gostream/kafkasrc"
)

// TestJobs runs both registered jobs over the same lines on an embedded
// Kafka: wordcount splits on ' ' as Spark does (empty words counted),
// wordcount-words lowercases and splits on \W+ as Kafka Streams'
// WordCountDemo does (empty words dropped).
func TestJobs(t *testing.T) {
	lines := []string{"GET /Index.html 200", "get  /index.html", "[WARN] db_conn, retry", "", "Ünïcode çafé"}
	cases := map[string]map[string]int64{
		"wordcount": {"GET": 1, "get": 1, "/Index.html": 1, "/index.html": 1, "200": 1, "": 2,
			"[WARN]": 1, "db_conn,": 1, "retry": 1, "Ünïcode": 1, "çafé": 1},
		"wordcount-words": {"get": 2, "index": 2, "html": 2, "200": 1, "warn": 1, "db_conn": 1, "retry": 1, "n": 1, "code": 1, "af": 1},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := kafkasrc.StartEmbedded(ctx, "logs", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, l := range lines {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "logs", Value: []byte(l)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			job, err := engine.LookupJob(name)
			if err != nil {
				t.Fatal(err)
			}
			s := engine.NewSession()
			df := job.Build(s, engine.JobParams{Brokers: strings.Join(e.Addrs(), ","), Topic: "logs", StartingOffsets: "earliest"})
			q, err := df.WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("counts").
				Trigger(engine.AvailableNow()).Option("checkpointLocation", t.TempDir()).Start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.AwaitTermination(ctx); err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, r := range s.Table("counts") {
				got[r.Get("word").(string)] = r.Get("count").(int64)
			}
			if !maps.Equal(got, want) {
				t.Fatalf("counts %v, want %v", got, want)
			}
		})
	}
}
