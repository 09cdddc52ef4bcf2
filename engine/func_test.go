package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
)

// runAvailable runs w's query over what the topic holds (available-now),
// with a new checkpoint, to its end.
func runAvailable(t *testing.T, w *engine.DataStreamWriter) *engine.StreamingQuery {
	t.Helper()
	q, err := w.Trigger(engine.AvailableNow()).Option("checkpointLocation", t.TempDir()).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		t.Fatal(err)
	}
	return q
}

// runToTable runs df into a memory table and returns its rows.
func runToTable(t *testing.T, s *engine.Session, df *engine.DataFrame, mode engine.OutputMode) []engine.Row {
	t.Helper()
	runAvailable(t, df.WriteStream().OutputMode(mode).Format("memory").QueryName("out"))
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
	q := runAvailable(t, df.WriteStream().ForeachBatch(func(_ context.Context, id int64, rows []engine.Row) error {
		batches[id] = rows
		return nil
	}))
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

// TestLinesPerLevelFromJSON is the log-level program without a UDF: JSON
// lines read with from_json, counted per level in update mode through
// foreachBatch; a malformed line counts under a null level, as in Spark.
func TestLinesPerLevelFromJSON(t *testing.T) {
	addrs := embedded(t,
		`{"level":"INFO","status":200,"msg":"ok"}`,
		`{"level":"WARN","status":"bad","msg":"slow"}`,
		`{"level":"INFO","status":201}`,
		`not json`,
	)
	s := engine.NewSession()
	df := logLines(s, addrs).
		Select(engine.FromJSON(engine.Col("line"), "level STRING, status INT, msg STRING").As("j")).
		Select(engine.Col("j.level").As("level"), engine.Col("j").GetField("status").As("status"),
			engine.ToJSON(engine.Col("j")).As("json"),
			engine.GetJSONObject(engine.Col("j").Cast(engine.String), "$.x").As("none")).
		GroupBy(engine.Col("level")).Agg(engine.CountAll(), engine.Max(engine.Col("status")).As("max"))
	got := map[any]string{}
	runAvailable(t, df.WriteStream().OutputMode(engine.Update).ForeachBatch(func(_ context.Context, _ int64, rows []engine.Row) error {
		for _, r := range rows {
			got[r.Get("level")] = fmt.Sprint(r.Get("count"), " ", r.Get("max"))
		}
		return nil
	}))
	want := map[any]string{"INFO": "2 201", "WARN": "1 <nil>", nil: "1 <nil>"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lines per level %v, want %v", got, want)
	}
}

// TestSessionTimeZone runs a query of a session in Europe/Paris: zone-less
// text is read in it and date_format writes in it, the word count beside it
// counts as without a zone, and an unknown zone is refused at analysis.
func TestSessionTimeZone(t *testing.T) {
	addrs := embedded(t, "2026-12-05 15:00:00", "2026-12-05T14:00:00Z")
	s := engine.NewSession(engine.WithTimeZone("Europe/Paris"))
	ts := engine.ToTimestamp(engine.Col("line"), "")
	df := logLines(s, addrs).Select(ts.As("ts"), engine.DateFormat(ts, "HH:mm z").As("local"))
	for _, r := range runToTable(t, s, df, engine.Append) {
		got, _ := r.Get("ts").(time.Time)
		if !got.Equal(time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)) || r.Get("local") != "15:00 CET" {
			t.Errorf("row %v: want 14:00 UTC shown as 15:00 CET", r.Values())
		}
	}
	counts := wordCounts(s, addrs)
	q := runAvailable(t, counts.WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("counts"))
	if got := table(s.Table("counts")); got["15:00:00"] != 1 || got["2026-12-05"] != 1 || q.LastProgress().NumInputRows != 2 {
		t.Fatalf("word counts %v", got)
	}
	bad := engine.NewSession(engine.WithTimeZone("Mars/Olympus_Mons"))
	_, err := logLines(bad, addrs).Select(ts).WriteStream().Format("memory").QueryName("x").Start(context.Background())
	if !errors.Is(err, engine.ErrAnalysis) || !strings.Contains(err.Error(), `unknown time zone "Mars/Olympus_Mons"`) {
		t.Fatalf("unknown zone: %v", err)
	}
}
