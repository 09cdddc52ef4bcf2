package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// sparkRow is the row the expressions below read: a string, an empty
// string, numbers, booleans, nulls of each kind and a Kafka-like binary
// value.
var (
	sparkSchema = operators.Schema{
		{Name: "s", Type: planpb.DataType_STRING, Nullable: true},
		{Name: "e", Type: planpb.DataType_STRING, Nullable: true},
		{Name: "ns", Type: planpb.DataType_STRING, Nullable: true},
		{Name: "n", Type: planpb.DataType_LONG, Nullable: true},
		{Name: "i", Type: planpb.DataType_INT, Nullable: true},
		{Name: "nn", Type: planpb.DataType_LONG, Nullable: true},
		{Name: "d", Type: planpb.DataType_DOUBLE, Nullable: true},
		{Name: "t", Type: planpb.DataType_BOOLEAN, Nullable: true},
		{Name: "nb", Type: planpb.DataType_BOOLEAN, Nullable: true},
		{Name: "value", Type: planpb.DataType_BINARY, Nullable: true},
		{Name: "my col", Type: planpb.DataType_LONG, Nullable: true},
		{Name: "ts", Type: planpb.DataType_TIMESTAMP, Nullable: true},
	}
	sparkRow = operators.Row{
		operators.Str("Spark"), operators.Str(""), operators.Null, operators.Long(5), operators.Long(7), operators.Null,
		operators.Double(2.5), operators.Bool(true), operators.Null, operators.Value{Kind: operators.KindBinary, B: []byte("hello world")},
		operators.Long(42), operators.Timestamp(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
)

// TestSQLRegisteredFunction checks that SQL calls a registered Go function
// by name, as the Column API's Udf does.
func TestSQLRegisteredFunction(t *testing.T) {
	r := NewRegistrations()
	t.Cleanup(r.Close)
	if err := r.RegisterUDF("sqlexpr_twice", func(n int64) int64 { return 2 * n }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Column{Expr("sqlexpr_twice(n) + 1"), Udf("sqlexpr_twice", Col("n")).Plus(1)} {
		if got, err := evalColumn(c); err != nil || got != int64(11) {
			t.Errorf("%s = %v, %v; want 11", c.name, got, err)
		}
	}
	if _, err := evalColumn(Expr("sqlexpr_twice(s)")); err == nil || !strings.Contains(err.Error(), `function "sqlexpr_twice" (bigint) -> bigint: argument 1 (s) is string`) {
		t.Errorf("sqlexpr_twice(s): %v, want the signature error", err)
	}
}

// evalColumn compiles c against sparkSchema and evaluates it over sparkRow.
func evalColumn(c Column) (any, error) {
	if c.err != nil {
		return nil, c.err
	}
	x, err := operators.CompileExpr(c.expr, sparkSchema)
	if err != nil {
		return nil, err
	}
	return x.Eval(sparkRow).Go(), nil
}

// TestSQLSparkDocumented checks expressions against the results Spark's SQL
// function reference documents for them (the "> SELECT ...;" examples of
// https://spark.apache.org/docs/latest/api/sql/), then null and empty-string
// cases of each construct, as Spark 3.5 (non-ANSI) evaluates them.
func TestSQLSparkDocumented(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want any
	}{
		// Documented examples.
		{"coalesce(NULL, 1, NULL)", int64(1)},
		{"CASE WHEN 1 > 0 THEN 1 WHEN 2 > 0 THEN 2.0 ELSE 1.2 END", 1.0},
		{"CASE WHEN 1 < 0 THEN 1 WHEN 2 > 0 THEN 2.0 ELSE 1.2 END", 2.0},
		{"CASE WHEN 1 < 0 THEN 1 WHEN 2 < 0 THEN 2.0 END", nil},
		{"1 in(1, 2, 3)", true},
		{"1 in(2, 3, 4)", false},
		{"2 <=> 2", true},
		{"1 <=> '1'", true},
		{"true <=> NULL", false},
		{"NULL <=> NULL", true},
		{"2 = 2", true},
		{"1 = '1'", true},
		{"true = NULL", nil},
		{"NULL = NULL", nil},
		{"2 == 2", true},
		{"1 != 2", true},
		{"1 != '2'", true},
		{"true != NULL", nil},
		{"NULL != NULL", nil},
		{"1 < 2", true},
		{"1.1 < '1'", false},
		{"1 < NULL", nil},
		{"2 <= 2", true},
		{"1 <= NULL", nil},
		{"2 > 1", true},
		{"2 > '1.1'", true},
		{"1 > NULL", nil},
		{"2 >= 1", true},
		{"1 >= NULL", nil},
		{"true and true", true},
		{"true and false", false},
		{"true and NULL", nil},
		{"false and NULL", false},
		{"true or false", true},
		{"false or false", false},
		{"true or NULL", true},
		{"false or NULL", nil},
		{"not true", false},
		{"not false", true},
		{"not NULL", nil},
		{"! true", false},
		{"! NULL", nil},
		{"isnull(1)", false},
		{"isnotnull(1)", true},
		{"if(1 < 2, 'a', 'b')", "a"},
		{"1 + 2", int64(3)},
		{"2 - 1", int64(1)},
		{"2 * 3", int64(6)},
		{"3 / 2", 1.5},
		{"2L / 2L", 1.0},
		{"cast('10' as int)", int64(10)},
		{"nvl(NULL, 2)", int64(2)},
		{"nullif(2, 2)", nil},
		{"nullif(3, 2)", int64(3)},
		{"nvl2(NULL, 2, 1)", int64(1)},
		{"nvl2(n, 2, 1)", int64(2)},
		{"mod(7, 3)", int64(1)},
		{"equal_null(3, 3)", true},
		{"equal_null(1, '11')", false},
		{"equal_null(true, NULL)", false},
		{"equal_null(NULL, 'abc')", false},
		{"equal_null(NULL, NULL)", true},
		{"ifnull(NULL, 'x')", "x"},

		{"like('Spark', '_park')", true},
		{`'%SystemDrive%\\Users\\John' like '\%SystemDrive\%\\\\Users%'`, true},
		{`'%SystemDrive%/Users/John' like '/%SystemDrive/%//Users%' ESCAPE '/'`, true},
		{`'%SystemDrive%\\Users\\John' rlike '%SystemDrive%\\\\Users.*'`, true},

		// Nulls and empty strings through each construct.
		{"ns LIKE 'a%'", nil},
		{"e LIKE ''", true},
		{"e LIKE '%'", true},
		{"s NOT LIKE 'S%'", false},
		{"s RLIKE 'ar'", true},
		{"ns RLIKE 'ar'", nil},
		{"split('a b c', ' ')[1]", "b"},
		{"split('a b c', ' ')[5]", nil},
		{"split(ns, ' ')[0]", nil},
		{"s || '!'", "Spark!"},
		{"s || ns", nil},
		{"e || e", ""},
		{"UPPER(s)", "SPARK"},
		{"substring(s, length(s) - 1, 1)", "r"}, // commas: not the SQL-standard form
		{"ns IS NULL", true},
		{"e IS NULL", false},
		{"e IS NOT NULL", true},
		{"e = ''", true},
		{"ns = ''", nil},
		{"ns <=> ''", false},
		{"e <=> ''", true},
		{"coalesce(ns, e, s)", ""},
		{"coalesce(ns, nn)", nil},
		{"coalesce(nn, d)", 2.5},
		{"coalesce(ns, n)", "5"},
		{"CASE WHEN nb THEN 'yes' ELSE 'no' END", "no"},
		{"CASE WHEN ns = 'x' THEN 1 END", nil},
		{"CASE s WHEN 'Spark' THEN 1 WHEN 'Flink' THEN 2 END", int64(1)},
		{"CASE ns WHEN 'Spark' THEN 1 ELSE 0 END", int64(0)},
		{"CASE WHEN n > 3 THEN i ELSE n END", int64(7)},
		{"ns IN ('a', 'b')", nil},
		{"s IN ('a', NULL)", nil},
		{"s IN ('Spark', NULL)", true},
		{"s NOT IN ('a', 'b')", true},
		{"e IN ('')", true},
		{"n IN (1, 5)", true},
		{"n IN ('5')", true},
		{"n NOT IN (1, NULL)", nil},
		{"nn + 1", nil},
		{"NULL + 1", nil},
		{"n * NULL", nil},
		{"-NULL", nil},
		{"'1' + 1", 2.0},
		{"s + 1", nil},
		{"e * 2", nil},
		{"n % 3", int64(2)},
		{"-n % 3", int64(-2)},
		{"n % 0", nil},
		{"d % 2", 0.5},
		{"n / 0", nil},
		{"n BETWEEN 1 AND 5", true},
		{"n NOT BETWEEN 1 AND 5", false},
		{"nn BETWEEN 1 AND 5", nil},
		{"-n", int64(-5)},
		{"- -n", int64(5)},
		{"n - -1", int64(6)},
		{"2 + 3 * 4", int64(14)},
		{"(2 + 3) * 4", int64(20)},
		{"1 + 1 = 2 AND NOT 2 < 1 OR false", true},
		{"t AND nb", nil},
		{"t OR nb", true},
		{"NOT nb", nil},
		{"`my col` + 1", int64(43)},
		{"S = 'Spark'", true}, // names ignore case, as Spark's
		{"CAST(value AS STRING)", "hello world"},
		{"CAST(ns AS BIGINT)", nil},
		{"CAST('x' AS INT)", nil},
		{"CAST(e AS DOUBLE)", nil},
		{"CAST(n AS STRING) = '5'", true},
		{"CAST('1.9' AS INT)", int64(1)},
		{"CAST('-1.9' AS BIGINT)", int64(-1)},
		{"CAST(' 12 ' AS BIGINT)", int64(12)},
		{"CAST('3000000000' AS INT)", nil},
		{"CAST('1.x' AS INT)", nil},
		{"CAST(3000000000 AS INT)", int64(-1294967296)},
		{"CAST(1e20 AS BIGINT)", int64(9223372036854775807)},
		{"CAST(e AS INT)", nil},
		{"'it''s'", "its"}, // adjacent literals concatenate
		{`"double" = 'double'`, true},
		{`'a\tb'`, "a\tb"},
		{`'\u0041\102\x'`, "ABx"},
		{`'\%\_'`, `\%\_`},
		{`r'\n'`, `\n`},
		{"1e2", 100.0},
		{".5", 0.5},
		{"9223372036854775807", int64(9223372036854775807)},
		{"-9223372036854775808", -9.223372036854776e18}, // Spark: a decimal
		{"TRUE", true},
		{`from_json('{"a": 1, "b": {"c": "x"}}', 'a INT, b STRUCT<c: STRING>').b.c`, "x"},
		{`from_json('{"a": 1}', 'a INT').a + 1`, int64(2)},
		{`from_json(ns, 'a INT').a`, nil},
		{"CAST(TIMESTAMP '2024-01-02 03:04:05' AS STRING)", "2024-01-02 03:04:05"},
		{"ts = TIMESTAMP '2024-01-02 03:04:05'", true},
		{"ts > '2024-01-01'", true},
		{"ts < '2024-01-02 03:04:05.000001'", true},
		{"coalesce(ts, 'x')", "2024-01-02 03:04:05"},
		{"current_timestamp IS NOT NULL", true},
		{"null", nil},
		{"-- a comment\n1 /* another */ + 1", int64(2)},
	} {
		got, err := evalColumn(Expr(tc.sql))
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %#v, Spark gives %#v", tc.sql, got, tc.want)
		}
	}
}

// TestSQLColumnAPISame checks that the conditional Column functions give
// what Spark's documented PySpark examples give, and the same as the SQL.
func TestSQLColumnAPISame(t *testing.T) {
	for _, tc := range []struct {
		col  Column
		sql  string
		want any
	}{
		{When(Col("n").Eq(2), 3).Otherwise(4), "CASE WHEN n = 2 THEN 3 ELSE 4 END", int64(4)},
		{When(Col("n").Eq(5), 3), "CASE WHEN n = 5 THEN 3 END", int64(3)},
		{When(Col("n").Eq(2), 3), "CASE WHEN n = 2 THEN 3 END", nil},
		{When(Col("nb"), "a").When(Col("t"), "b").Otherwise(Lit(nil)), "CASE WHEN nb THEN 'a' WHEN t THEN 'b' ELSE NULL END", "b"},
		{Coalesce(Col("nn"), Lit(0.0)), "coalesce(nn, 0.0)", 0.0},
		{Coalesce(Col("n"), Lit(0.0)), "coalesce(n, 0.0)", 5.0},
		{Col("s").IsIn("Bob", "Spark"), "s IN ('Bob', 'Spark')", true},
		{Col("ns").IsIn("Bob"), "ns IN ('Bob')", nil},
		{Col("ns").IsNull(), "ns IS NULL", true},
		{Col("e").IsNotNull(), "e IS NOT NULL", true},
		{Col("nn").EqNullSafe(nil), "nn <=> NULL", true},
		{Col("n").EqNullSafe(Col("nn")), "n <=> nn", false},
		{Col("n").Mod(2), "n % 2", int64(1)},
	} {
		got, err := evalColumn(tc.col)
		if err != nil {
			t.Errorf("%s: %v", tc.col.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %#v, Spark gives %#v", tc.col.name, got, tc.want)
		}
		if sql, err := evalColumn(Expr(tc.sql)); err != nil || sql != got {
			t.Errorf("%s = %#v, %v; the Column API gives %#v", tc.sql, sql, err, got)
		}
	}
}

// TestSQLErrors checks that what gostream does not run, and what is not
// valid, is an error naming the construct and its position.
func TestSQLErrors(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"count(*) OVER (PARTITION BY a)", "window functions are not supported (at 9: OVER)"},
		{"row_number() OVER (ORDER BY n)", "window functions are not supported (at 13: OVER)"},
		{"n IN (SELECT 1)", "subqueries are not supported (at 6: SELECT)"},
		{"CAST(n AS DECIMAL(10, 2))", "CAST to DECIMAL is not supported"},
		{"n DIV 2", "integral division (DIV) is not supported (use CAST(a / b AS BIGINT)) (at 2: DIV)"},
		{"n & 1", "unexpected & after the expression (at 2: &)"},
		{"~n", "bitwise operators are not supported (at 0: ~)"},
		{"transform(a, x -> x + 1)", "lambda functions are not supported (at 15: ->)"},
		{"INTERVAL 1 DAY", "interval literals are not supported (at 0: INTERVAL)"},
		{"DATE '2020-01-01'", "typed literals are not supported"},
		{"count(DISTINCT n)", "DISTINCT in a function call is not supported (at 6: DISTINCT)"},
		{"sum(n)", "aggregate function sum is not supported in an expression (use GroupBy(...).Agg(engine.Sum(...))) (at 0: sum)"},
		{"n +", "expected an expression (at 3: end of input)"},
		{"(n", "expected ) to close ( (at 2: end of input)"},
		{"'abc", "unterminated string (at 0: ')"},
		{"CASE WHEN n THEN 1", "expected END to close CASE (at 18: end of input)"},
		{"CASE END", "expected WHEN in CASE (at 5: END)"},
		{"n AS", "expected a name after AS (at 4: end of input)"},
		{"a b c", "unexpected c after the expression (at 4: c)"},
		{"n IS TRUE", "IS TRUE is not supported"},
		{"t.* ", "qualified * is not supported (use *) (at 2: *)"},
		{"1S", "SMALLINT and TINYINT literals are not supported"},
		{"n + *", "* stands alone in selectExpr, or in count(*) (at 4: *)"},
		{strings.Repeat("(", 1000) + "1" + strings.Repeat(")", 1000), "expression nested too deeply"},
		{strings.Repeat("- ", 1000) + "1", "expression nested too deeply"},
		{strings.Repeat("NOT ", 1000) + "true", "expression nested too deeply"},
		{"n + s.x", `cannot get field "x" from string: it is not a struct`},
		{"from_json('{}', 'a INT').b", `no field "b" in the struct: its fields are [a]`},
		{"nope(n)", `unknown function "nope"`},
		{"trim(BOTH 'x' FROM s)", "the SQL-standard form TRIM(... BOTH ...) is not supported (call it with commas: trim(str, trimStr), ltrim, rtrim, substring(str, pos, len)) (at 5: BOTH)"},
		{"substring(s FROM 2 FOR 3)", "the SQL-standard form SUBSTRING(... FROM ...) is not supported"},
		{"nullif(n)", "nullif takes 2 argument(s), got 1 (at 0: nullif)"},
		{"nope", `unknown column "nope"`},
		{"CASE WHEN n THEN 1 END", "a WHEN condition must be boolean, got bigint"},
		{"coalesce(n, t)", "coalesce cannot mix bigint and boolean"},
		{"n IN (t)", "IN cannot mix bigint and boolean"},
		{"t < n", "cannot compare boolean < bigint"},
	} {
		_, err := evalColumn(Expr(tc.sql))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.sql, err, tc.want)
		}
	}
}

// TestWhenChainMisuse checks Spark's rules for when(): it continues only a
// When, and not after Otherwise.
func TestWhenChainMisuse(t *testing.T) {
	for _, tc := range []struct {
		c    Column
		want string
	}{
		{Col("n").When(Col("t"), 1), "When applies to a Column made by engine.When, not to n"},
		{When(Col("t"), 1).Otherwise(2).When(Col("t"), 3), "When cannot follow Otherwise"},
		{When(Col("t"), 1).Otherwise(2).Otherwise(3), "Otherwise cannot follow Otherwise"},
		{When(Col("t"), 1).As("x").Otherwise(2), "Otherwise cannot follow As (x): call As last"},
		{Coalesce(), "coalesce takes at least one column"},
		{Col("n").IsIn(), "IsIn needs at least one value"},
		{When(Expr("n +"), 1), "expected an expression"},
	} {
		if _, err := evalColumn(tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
