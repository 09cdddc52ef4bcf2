package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gostream/gostream/engine"
)

// TestOptionNamesAnyCase checks that option names match in any case, as in
// Spark: a query started with "checkpointlocation" resumes from it. Before,
// the name was ignored and each run counted from scratch on a temporary
// checkpoint.
func TestOptionNamesAnyCase(t *testing.T) {
	addrs := embedded(t, "x y", "x")
	dir := t.TempDir()
	run := func() *engine.Progress {
		s := engine.NewSession()
		df := s.ReadStream().Format("kafka").Options(map[string]string{
			"KAFKA.BOOTSTRAP.SERVERS": strings.Join(addrs, ","), "Subscribe": "logs", "STARTINGOFFSETS": "earliest",
		}).Load()
		q, err := df.WriteStream().Format("memory").QueryName("t").Trigger(engine.AvailableNow()).
			Option("checkpointlocation", dir).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := q.AwaitTermination(context.Background()); err != nil {
			t.Fatal(err)
		}
		return q.LastProgress()
	}
	if p := run(); p == nil || p.BatchID != 0 || p.NumInputRows != 2 {
		t.Fatalf("first run: progress %+v, want batch 0 of 2 records", p)
	}
	produce(t, addrs, "z")
	if p := run(); p == nil || p.BatchID != 1 || p.NumInputRows != 1 {
		t.Fatalf("second run: progress %+v, want batch 1 of the 1 new record (resumed from the checkpoint)", p)
	}
}

// TestUnknownOptionRefused checks that a misspelt option is an error
// listing the known ones, for the source, each sink and the query, instead
// of being ignored (a misspelt checkpointLocation lost a user's progress).
func TestUnknownOptionRefused(t *testing.T) {
	s := engine.NewSession()
	src := func() *engine.DataStreamReader {
		return s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", "localhost:1").Option("subscribe", "logs")
	}
	df := src().Load()
	// kafka.* passes through to the Kafka client, lower-cased as Spark does.
	pass := src().Option("KAFKA.Client.Id", "me").Load()
	if err := pass.Err(); err != nil || pass.Plan().GetKafkaScan().GetKafkaOptions()["client.id"] != "me" {
		t.Fatalf("kafka.* passthrough: %v, options %v", err, pass.Plan().GetKafkaScan().GetKafkaOptions())
	}
	counts := df.GroupBy(engine.Col("topic")).Count()
	for _, tc := range []struct {
		name string
		df   func() error
		want []string
	}{
		{"query", func() error {
			_, err := df.WriteStream().Option("checkpointLocaton", t.TempDir()).Start(context.Background())
			return err
		}, []string{`unknown option "checkpointLocaton" for the console sink`, "checkpointLocation, numRows, truncate"}},
		{"memory sink", func() error {
			_, err := df.WriteStream().Format("memory").QueryName("m").Option("numRows", "5").Start(context.Background())
			return err
		}, []string{`unknown option "numRows" for the memory sink`, "known ones are checkpointLocation ("}},
		{"jsonl sink", func() error {
			_, err := df.WriteStream().Format("JSONL").Options(map[string]string{"PATH": "x", "paths": "y"}).Start(context.Background())
			return err
		}, []string{`unknown option "paths" for the jsonl sink`, "checkpointLocation, path"}},
		{"foreachBatch", func() error {
			_, err := counts.WriteStream().OutputMode(engine.Update).Option("truncate", "false").
				ForeachBatch(func(context.Context, int64, []engine.Row) error { return nil }).Start(context.Background())
			return err
		}, []string{`unknown option "truncate" for a Go sink`}},
		{"source", func() error {
			return src().Option("startingOffset", "earliest").Load().Err()
		}, []string{`unknown option "startingOffset" for the Kafka source`, "startingOffsets", "kafka.*"}},
	} {
		err := tc.df()
		if !errors.Is(err, engine.ErrAnalysis) {
			t.Fatalf("%s: %v, want ErrAnalysis", tc.name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
	}
}
