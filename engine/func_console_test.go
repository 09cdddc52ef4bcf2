package engine

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// TestConsoleShowsTimestampsAndStructs checks the console's cells for the
// types the functions make, as Spark's show() prints them: timestamps in
// the session time zone (UTC) without trailing zeros, structs in braces.
func TestConsoleShowsTimestampsAndStructs(t *testing.T) {
	schema := operators.Schema{
		{Name: "ts", Type: planpb.DataType_TIMESTAMP},
		{Name: "j", Type: planpb.DataType_STRUCT},
	}
	j := operators.Value{Kind: operators.KindStruct, A: []operators.Value{operators.Str("INFO"), operators.Long(200), operators.Null}}
	rows := []operators.Row{
		{operators.Timestamp(time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)), j},
		{operators.Timestamp(time.Date(2026, 12, 5, 14, 0, 0, 120e6, time.FixedZone("x", 3600))), operators.Null},
	}
	var buf bytes.Buffer
	c := &ConsoleSink{W: &buf, NumRows: 20, Truncate: 20}
	if err := c.AddBatch(context.Background(), &Batch{ID: 0, Schema: schema, each: eachRow([][]operators.Row{rows})}); err != nil {
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
