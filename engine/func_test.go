package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
)

// runToTable runs df to completion (available-now, complete mode when
// aggregated) into a memory table and returns its rows.
func runToTable(t *testing.T, s *engine.Session, df *engine.DataFrame, mode engine.OutputMode) []engine.Row {
	t.Helper()
	q, err := df.WriteStream().OutputMode(mode).Format("memory").QueryName("out").
		Trigger(engine.AvailableNow()).Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s.Table("out")
}

func logLines(s *engine.Session, addrs []string) *engine.DataFrame {
	return s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", "logs").
		Option("startingOffsets", "earliest").
		Load().
		Select(engine.Col("value").Cast(engine.String).As("line"))
}

// TestHTTPErrorsPerStatus is the nginx program without a UDF: 4xx and 5xx
// responses counted per status, the status taken with regexp_extract.
func TestHTTPErrorsPerStatus(t *testing.T) {
	addrs := embedded(t,
		`10.0.0.1 - - [05/Dec/2026:14:00:00 +0000] "GET / HTTP/1.1" 200 612 "-" "curl"`,
		`10.0.0.2 - - [05/Dec/2026:14:00:01 +0000] "GET /x HTTP/1.1" 404 153 "-" "curl"`,
		`10.0.0.3 - - [05/Dec/2026:14:00:02 +0000] "POST /api HTTP/1.1" 502 157 "-" "curl"`,
		`10.0.0.2 - - [05/Dec/2026:14:00:03 +0000] "GET /y HTTP/1.1" 404 153 "-" "curl"`,
		`not a log line`,
	)
	s := engine.NewSession()
	status := engine.RegexpExtract(engine.Col("line"), `" (\d{3}) `, 1)
	df := logLines(s, addrs).
		Select(status.As("status"), engine.Substring(engine.Col("line"), 1, 8).As("ip")).
		Filter(engine.Col("status").StartsWith("4").Or(engine.Col("status").Like("5__"))).
		GroupBy(engine.Col("status")).Count()
	got := map[string]int64{}
	for _, r := range runToTable(t, s, df, engine.Complete) {
		got[r.Get("status").(string)] = r.Get("count").(int64)
	}
	if len(got) != 2 || got["404"] != 2 || got["502"] != 1 {
		t.Fatalf("errors per status = %v, want 404: 2, 502: 1", got)
	}
}

// TestStringColumnsInAQuery runs the Column API's string functions through
// a query, in plans as workers receive them.
func TestStringColumnsInAQuery(t *testing.T) {
	addrs := embedded(t, "INFO  a.b.c  ")
	s := engine.NewSession()
	line := engine.Col("line")
	df := logLines(s, addrs).Select(
		engine.ElementAt(engine.Split(engine.Trim(line), " +"), 1).As("level"),
		engine.Split(engine.Trim(line), " +").GetItem(1).As("path"),
		engine.SubstringIndex(engine.Trim(line), ".", -2).As("tail"),
		engine.RegexpReplace(line, `\s+`, "_").As("squashed"),
		engine.ConcatWs("/", engine.LTrim(line), engine.Lit(nil), engine.RTrim(line)).As("both"),
		engine.Concat(engine.Lower(engine.Substring(line, 1, 4)), engine.Lit("!")).As("lower"),
		line.Contains("a.b").As("has"),
		line.EndsWith("  ").As("ends"),
		line.RLike(`^INFO\b`).As("info"),
	)
	rows := runToTable(t, s, df, engine.Append)
	if len(rows) != 1 {
		t.Fatalf("rows %v", rows)
	}
	want := map[string]any{
		"level": "INFO", "path": "a.b.c", "tail": "b.c", "squashed": "INFO_a.b.c_",
		"both": "INFO  a.b.c  /INFO  a.b.c", "lower": "info!", "has": true, "ends": true, "info": true,
	}
	for col, w := range want {
		if got := rows[0].Get(col); got != w {
			t.Errorf("%s = %#v, want %#v", col, got, w)
		}
	}
}

// TestCurrentTimestampPerBatch runs batches of several rows: every row of a
// batch has its batch's timestamp (the progress report's), as in Spark, and
// to_timestamp and date_format work on the stream's text.
func TestCurrentTimestampPerBatch(t *testing.T) {
	var recs []string
	for i := range 12 {
		recs = append(recs, fmt.Sprintf("05/Dec/2026:14:00:%02d +0000", i))
	}
	addrs := embedded(t, recs...)
	s := engine.NewSession()
	df := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").
		Option("maxOffsetsPerTrigger", "5").
		Load().
		Select(engine.Col("value").Cast(engine.String).As("line")).
		Select(engine.CurrentTimestamp().As("now"),
			engine.ToTimestamp(engine.Col("line"), "dd/MMM/yyyy:HH:mm:ss Z").As("ts")).
		Select(engine.Col("now"), engine.Col("ts"), engine.DateFormat(engine.Col("ts"), "HH:mm:ss").As("hms"))
	batches := map[int64][]engine.Row{}
	q, err := df.WriteStream().Trigger(engine.AvailableNow()).Option("checkpointLocation", t.TempDir()).
		ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
			batches[id] = rows
			return nil
		}).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	progress := q.RecentProgress()
	if len(progress) < 3 {
		t.Fatalf("%d batches, want at least 3 of at most 5 records", len(progress))
	}
	seen := 0
	for _, p := range progress {
		for _, r := range batches[p.BatchID] {
			now, _ := r.Get("now").(time.Time)
			if !now.Equal(p.Timestamp.Truncate(time.Millisecond)) {
				t.Fatalf("batch %d: current_timestamp %v, want the batch's %v", p.BatchID, now, p.Timestamp)
			}
			ts, _ := r.Get("ts").(time.Time)
			if got, want := r.Get("hms").(string), ts.UTC().Format("15:04:05"); got != want || ts.Year() != 2026 {
				t.Fatalf("row %v: date_format %q, want %q", r.Values(), got, want)
			}
			seen++
		}
	}
	if seen != 12 {
		t.Fatalf("%d rows, want 12", seen)
	}
}
