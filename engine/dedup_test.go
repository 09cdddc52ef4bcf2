package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gostream/gostream/engine"
)

// distinctLines is CAST(key AS STRING) AS k, CAST(value AS STRING) AS line,
// without duplicates of cols, from the earliest offsets.
func distinctLines(s *engine.Session, addrs []string, cols ...string) *engine.DataFrame {
	return distinctLinesFrom(s, addrs, "earliest", cols...)
}

// distinctLinesFrom is distinctLines from startingOffsets starting.
func distinctLinesFrom(s *engine.Session, addrs []string, starting string, cols ...string) *engine.DataFrame {
	return s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", "logs").
		Option("startingOffsets", starting).
		Load().
		Select(engine.Col("key").Cast(engine.String).As("k"), engine.Col("value").Cast(engine.String).As("line")).
		DropDuplicates(cols...)
}

// runDedup runs df to the end of the topic with ForeachBatch on checkpoint
// dir and returns each batch's rows as sorted "k|line" strings.
func runDedup(t *testing.T, df *engine.DataFrame, dir string) map[int64][]string {
	t.Helper()
	out := map[int64][]string{}
	q, err := df.WriteStream().OutputMode(engine.Append).
		ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
			var got []string
			for _, r := range rows {
				got = append(got, fmt.Sprintf("%v|%v", r.Get("k"), r.Get("line")))
			}
			slices.Sort(got)
			out[id] = got
			return nil
		}).Trigger(engine.AvailableNow()).Option("checkpointLocation", dir).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDropDuplicates checks a dropDuplicates query across batches and
// restarts: duplicates within a batch and of earlier batches are dropped,
// a restart from the checkpoint (with another startingOffsets) emits
// nothing twice, a restart with other columns is refused, and a batch re-run
// after its state committed (a crash before its commit-log entry) emits the
// same rows again.
func TestDropDuplicates(t *testing.T) {
	addrs := embedded(t, "a", "b", "a", "", "b")
	dir := t.TempDir()
	df := func() *engine.DataFrame { return distinctLines(engine.NewSession(), addrs, "line") }
	first := runDedup(t, df(), dir)
	if want := []string{"<nil>|", "<nil>|a", "<nil>|b"}; len(first) != 1 || !slices.Equal(first[0], want) {
		t.Fatalf("first run emitted %v, want batch 0: %v", first, want)
	}
	produce(t, addrs, "a", "c", "c", "")
	// startingOffsets, which the checkpoint overrides, may change between runs.
	second := runDedup(t, distinctLinesFrom(engine.NewSession(), addrs, "latest", "line"), dir)
	if want := []string{"<nil>|c"}; len(second) != 1 || !slices.Equal(second[1], want) {
		t.Fatalf("second run emitted %v, want batch 1: %v", second, want)
	}
	dropLastCommit(t, dir, 1) // a crash before batch 1's commit-log entry
	if again := runDedup(t, df(), dir); len(again) != 1 || !slices.Equal(again[1], second[1]) {
		t.Fatalf("re-run of batch 1 emitted %v, want %v", again, second)
	}
	q, err := distinctLines(engine.NewSession(), addrs, "k").WriteStream().Format("memory").QueryName("d").
		Option("checkpointLocation", dir).Start(context.Background())
	if err == nil {
		q.Stop()
		t.Fatal("a restart with dropDuplicates(k) on dropDuplicates(line)'s checkpoint started")
	}
	produce(t, addrs, "d", "a")
	if next := runDedup(t, df(), dir); len(next) != 1 || !slices.Equal(next[2], []string{"<nil>|d"}) {
		t.Fatalf("batch after the re-run emitted %v, want batch 2: [<nil>|d]", next)
	}
}

// TestDropDuplicatesNullKeys checks Spark's rule that null keys equal each
// other, and that no columns means all columns.
func TestDropDuplicatesNullKeys(t *testing.T) {
	addrs := embedded(t, "a", "b", "a")
	if got := runDedup(t, distinctLines(engine.NewSession(), addrs, "k"), t.TempDir()); len(got) != 1 || len(got[0]) != 1 || !strings.HasPrefix(got[0][0], "<nil>|") {
		t.Fatalf("dropDuplicates(k) over keyless records emitted %v, want one row with a null k", got)
	}
	if got := runDedup(t, distinctLines(engine.NewSession(), addrs), t.TempDir()); !slices.Equal(got[0], []string{"<nil>|a", "<nil>|b"}) {
		t.Fatalf("dropDuplicates() emitted %v, want a and b", got)
	}
}

// TestDropDuplicatesAnalysis checks the analysis errors: complete mode (as
// Spark), an unknown column, and an operator after it.
func TestDropDuplicatesAnalysis(t *testing.T) {
	addrs := embedded(t)
	s := engine.NewSession()
	_, err := distinctLines(s, addrs, "line").WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("d").
		Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if !errors.Is(err, engine.ErrAnalysis) {
		t.Fatalf("complete mode: %v", err)
	}
	if err := distinctLines(s, addrs, "nope").Err(); !errors.Is(err, engine.ErrAnalysis) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown column: %v", err)
	}
	if err := distinctLines(s, addrs, "line").Select(engine.Col("line")).Err(); !errors.Is(err, engine.ErrAnalysis) || !strings.Contains(err.Error(), "dropDuplicates") {
		t.Fatalf("select after dropDuplicates: %v", err)
	}
}
