package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gostream/gostream/engine"
)

func kafkaLines(s *engine.Session, addrs []string) *engine.DataFrame {
	return s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", "logs").
		Option("startingOffsets", "earliest").
		Load()
}

// TestSelectExprSamePlan checks that the seed job's selectExpr("CAST(value
// AS STRING)"), and the rest of the word count written in SQL, build
// exactly the plan of the Column API.
func TestSelectExprSamePlan(t *testing.T) {
	s := engine.NewSession()
	in := kafkaLines(s, []string{"localhost:9092"})
	for _, tc := range []struct {
		name      string
		sql, cols *engine.DataFrame
	}{
		{"cast", in.SelectExpr("CAST(value AS STRING)"), in.Select(engine.Col("value").Cast(engine.String))},
		{"explode", in.SelectExpr("CAST(value AS STRING)").SelectExpr("explode(split(value, ' ')) AS word"),
			in.Select(engine.Col("value").Cast(engine.String)).Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word"))},
		{"star", in.SelectExpr("*"), in.Select(engine.Col("key"), engine.Col("value"), engine.Col("topic"), engine.Col("partition"),
			engine.Col("offset"), engine.Col("timestamp"), engine.Col("timestampType"))},
		{"filter", in.Filter("partition IN (0, 2) AND offset >= 10"), in.Filter(engine.Col("partition").IsIn(0, 2).And(engine.Col("offset").Ge(10)))},
		{"like", in.SelectExpr("CAST(value AS STRING) v").Where("v LIKE 'GET %'"),
			in.Select(engine.Col("value").Cast(engine.String).As("v")).Where(engine.Col("v").Like("GET %"))},
		{"rlike", in.SelectExpr("CAST(value AS STRING) v").Where("v RLIKE ' 5[0-9]{2} '"),
			in.Select(engine.Col("value").Cast(engine.String).As("v")).Where(engine.Col("v").RLike(" 5[0-9]{2} "))},
		{"index", in.SelectExpr("split(CAST(value AS STRING), ' ')[8]"),
			in.Select(engine.Split(engine.Col("value").Cast(engine.String), " ").GetItem(8))},
		{"fields", in.SelectExpr("from_json(CAST(value AS STRING), 'level STRING, http STRUCT<status: INT>') AS j").SelectExpr("j.level", "j.http.status"),
			in.Select(engine.FromJSON(engine.Col("value").Cast(engine.String), "level STRING, http STRUCT<status: INT>").As("j")).
				Select(engine.Col("j").GetField("level").As("level"), engine.Col("j").GetField("http").GetField("status").As("status"))},
		{"when", in.SelectExpr("CASE WHEN partition = 0 THEN 'first' ELSE 'other' END AS which"),
			in.Select(engine.When(engine.Col("partition").Eq(0), "first").Otherwise("other").As("which"))},
	} {
		if err := errors.Join(tc.sql.Err(), tc.cols.Err()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !proto.Equal(tc.sql.Plan(), tc.cols.Plan()) {
			t.Errorf("%s: the SQL plan\n%v\ndiffers from the Column API's\n%v", tc.name, tc.sql.Plan(), tc.cols.Plan())
		}
		if got, want := tc.sql.Columns(), tc.cols.Columns(); !slicesEqual(got, want) {
			t.Errorf("%s: columns %v, want %v", tc.name, got, want)
		}
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestSelectExprQuery runs a query written in SQL strings, and the same one
// with the Column API, over the same topic: HTTP statuses counted by kind,
// with empty and non-numeric lines dropped.
func TestSelectExprQuery(t *testing.T) {
	addrs := embedded(t, "200", "404", "503", "", "oops", "500", " 301 ", "418")
	sql := func(s *engine.Session) *engine.DataFrame {
		return kafkaLines(s, addrs).
			SelectExpr("CAST(value AS STRING) AS line").
			SelectExpr("*", "CAST(line AS INT) status").
			Where("status IS NOT NULL AND NOT status < 300").
			SelectExpr("CASE WHEN status >= 500 THEN 'server' WHEN status >= 400 THEN 'client' ELSE 'other' END AS kind").
			GroupBy(engine.Col("kind")).Count()
	}
	cols := func(s *engine.Session) *engine.DataFrame {
		status := engine.Col("line").Cast(engine.Int)
		return kafkaLines(s, addrs).
			Select(engine.Col("value").Cast(engine.String).As("line")).
			Select(engine.Col("line"), status.As("status")).
			Where(engine.Col("status").IsNotNull().And(engine.Not(engine.Col("status").Lt(300)))).
			Select(engine.When(engine.Col("status").Ge(500), "server").When(engine.Col("status").Ge(400), "client").Otherwise("other").As("kind")).
			GroupBy(engine.Col("kind")).Count()
	}
	want := map[string]int64{"server": 2, "client": 2, "other": 1}
	for name, build := range map[string]func(*engine.Session) *engine.DataFrame{"sql": sql, "columns": cols} {
		s := engine.NewSession()
		q, err := build(s).WriteStream().OutputMode(engine.Complete).Format("memory").QueryName("kinds").
			Trigger(engine.AvailableNow()).Option("checkpointLocation", t.TempDir()).Start(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := q.AwaitTermination(context.Background()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := map[string]int64{}
		for _, r := range s.Table("kinds") {
			got[r.Get("kind").(string)] = r.Get("count").(int64)
		}
		if len(got) != len(want) || got["server"] != 2 || got["client"] != 2 || got["other"] != 1 {
			t.Errorf("%s: counts %v, want %v", name, got, want)
		}
	}
}

// TestSelectExprErrors checks that a construct gostream does not run is an
// analysis error naming it and its position, returned by Err and by Start.
func TestSelectExprErrors(t *testing.T) {
	s := engine.NewSession()
	in := kafkaLines(s, []string{"localhost:9092"})
	for _, tc := range []struct {
		df   *engine.DataFrame
		want string
	}{
		{in.SelectExpr("value", "count(*) OVER (PARTITION BY key)"), `selectExpr "count(*) OVER (PARTITION BY key)": window functions are not supported (at 9: OVER)`},
		{in.SelectExpr("CAST(value AS DECIMAL)"), `selectExpr "CAST(value AS DECIMAL)": CAST to DECIMAL is not supported (types: STRING, BINARY, BIGINT, INT, DOUBLE, BOOLEAN, TIMESTAMP) (at 14: DECIMAL)`},
		{in.Filter("offset >"), `filter "offset >": expected an expression (at 8: end of input)`},
		{in.Where(42), "Filter takes a Column or a SQL condition string, not int"},
		{in.Select(engine.Expr("nope + 1")), `unknown column "nope"`},
		{in.Select(engine.Expr("partition +")), `expr "partition +": expected an expression`},
		{in.GroupBy(engine.Expr("lower(")).Count(), `expr "lower(": expected an expression`},
		{in.SelectExpr("sum(offset)"), "aggregate function sum is not supported in an expression"},
	} {
		err := tc.df.Err()
		if !errors.Is(err, engine.ErrAnalysis) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want ErrAnalysis with %q", err, tc.want)
			continue
		}
		_, err = tc.df.WriteStream().Format("memory").QueryName("x").Start(context.Background())
		if !errors.Is(err, engine.ErrAnalysis) {
			t.Errorf("Start: %v, want the analysis error", err)
		}
	}
}
