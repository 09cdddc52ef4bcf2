package engine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// tsAndStruct is a batch of the types the functions make: a timestamp and a
// struct of from_json's schema, with a null row.
func tsAndStruct() *Batch {
	schema := operators.Schema{
		{Name: "ts", Type: planpb.DataType_TIMESTAMP},
		{Name: "j", Type: planpb.DataType_STRUCT, Fields: operators.Schema{
			{Name: "level", Type: planpb.DataType_STRING}, {Name: "status", Type: planpb.DataType_INT}, {Name: "msg", Type: planpb.DataType_STRING}}},
	}
	j := operators.Value{Kind: operators.KindStruct, A: []operators.Value{operators.Str("INFO"), operators.Long(200), operators.Null}}
	rows := []operators.Row{
		{operators.Timestamp(time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)), j},
		{operators.Timestamp(time.Date(2026, 12, 5, 14, 0, 0, 120e6, time.FixedZone("x", 3600))), operators.Null},
	}
	return &Batch{ID: 0, Schema: schema, each: eachRow([][]operators.Row{rows})}
}

// TestJSONLWritesStructsAsObjects checks that a struct column is a JSON
// object named by its fields, and that timestamps are written in the
// session time zone.
func TestJSONLWritesStructsAsObjects(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		zone     *time.Location
		ts1, ts2 string
	}{{nil, "2026-12-05 14:00:00", "2026-12-05 13:00:00.12"}, {paris, "2026-12-05 15:00:00", "2026-12-05 14:00:00.12"}} {
		path := filepath.Join(t.TempDir(), "out.jsonl")
		s := &JSONLSink{Path: path, TimeZone: c.zone}
		if err := s.AddBatch(context.Background(), tsAndStruct()); err != nil {
			t.Fatal(err)
		}
		s.Close()
		got, _ := os.ReadFile(path)
		want := `{"batch":0,"ts":"` + c.ts1 + `","j":{"level":"INFO","status":200,"msg":null}}` + "\n" +
			`{"batch":0,"ts":"` + c.ts2 + `","j":null}` + "\n"
		if string(got) != want {
			t.Fatalf("zone %v: got\n%s\nwant\n%s", c.zone, got, want)
		}
	}
}

// TestConsoleShowsTimestampsAndStructs checks the console's cells for the
// types the functions make, as Spark's show() prints them: timestamps in
// the session time zone (UTC) without trailing zeros, structs in braces.
func TestConsoleShowsTimestampsAndStructs(t *testing.T) {
	var buf bytes.Buffer
	c := &ConsoleSink{W: &buf, NumRows: 20, Truncate: 20}
	if err := c.AddBatch(context.Background(), tsAndStruct()); err != nil {
		t.Fatal(err)
	}
	want := "+--------------------+-----------------+\n" +
		"|                  ts|                j|\n" +
		"+--------------------+-----------------+\n" +
		"| 2026-12-05 14:00:00|{INFO, 200, NULL}|\n" +
		"|2026-12-05 13:00:...|             NULL|\n" +
		"+--------------------+-----------------+\n\n"
	if got := buf.String(); !bytes.HasSuffix([]byte(got), []byte(want)) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestConsoleShowsTheSessionTimeZone checks that timestamps, nested ones
// too, show in the session time zone.
func TestConsoleShowsTheSessionTimeZone(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	ts := operators.Timestamp(time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC))
	schema := operators.Schema{{Name: "ts", Type: planpb.DataType_TIMESTAMP}, {Name: "s", Type: planpb.DataType_STRUCT}}
	rows := []operators.Row{{ts, operators.Value{Kind: operators.KindStruct, A: []operators.Value{ts}}}}
	var buf bytes.Buffer
	c := &ConsoleSink{W: &buf, NumRows: 20, TimeZone: paris}
	if err := c.AddBatch(context.Background(), &Batch{Schema: schema, each: eachRow([][]operators.Row{rows})}); err != nil {
		t.Fatal(err)
	}
	if want := "|2026-12-05 15:00:00|{2026-12-05 15:00:00}|"; !bytes.Contains(buf.Bytes(), []byte(want)) {
		t.Fatalf("got\n%s\nwant a row %s", buf.String(), want)
	}
}
