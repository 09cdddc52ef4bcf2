package operators

import (
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/planpb"
)

// Each case is a call with Spark SQL's documented result (the examples of
// Spark 3.5's built-in function reference, with nulls, empty strings,
// out-of-range indexes and invalid patterns added).

// typedNull is a null literal of a type.
type typedNull planpb.DataType

func arg(v any) *planpb.Expr {
	l := &planpb.Literal{}
	switch x := v.(type) {
	case *planpb.Expr:
		return x
	case string:
		l.Value, l.Type = &planpb.Literal_String_{String_: x}, planpb.DataType_STRING
	case int:
		l.Value, l.Type = &planpb.Literal_Long{Long: int64(x)}, planpb.DataType_LONG
	case float64:
		l.Value, l.Type = &planpb.Literal_Double{Double: x}, planpb.DataType_DOUBLE
	case bool:
		l.Value, l.Type = &planpb.Literal_Boolean{Boolean: x}, planpb.DataType_BOOLEAN
	case nil:
		l.Value, l.Type = &planpb.Literal_Null{Null: true}, planpb.DataType_STRING
	case typedNull:
		l.Value, l.Type = &planpb.Literal_Null{Null: true}, planpb.DataType(x)
	default:
		panic("lit: unsupported type")
	}
	return &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: l}}
}

func fn(name string, args ...any) *planpb.Expr {
	c := &planpb.Call{Function: name}
	for _, a := range args {
		c.Args = append(c.Args, arg(a))
	}
	return &planpb.Expr{Kind: &planpb.Expr_Call{Call: c}}
}

func colRef(name string) *planpb.Expr { return &planpb.Expr{Kind: &planpb.Expr_Column{Column: name}} }

func binVal(s string) Value { return Value{Kind: KindBinary, B: []byte(s)} }

// funcCase is a call and its result: a Go value (nil for null) or, for
// want of type error, the text the analysis error contains.
type funcCase struct {
	expr *planpb.Expr
	want any
}

type wantErr string

// testSchema is the row the cases may refer to: s is a string column, b a
// binary one, n a null string.
var testSchema = Schema{
	{Name: "s", Type: planpb.DataType_STRING, Nullable: true},
	{Name: "b", Type: planpb.DataType_BINARY, Nullable: true},
	{Name: "n", Type: planpb.DataType_STRING, Nullable: true},
}

var testRow = Row{Str("Spark SQL"), binVal("Spark SQL"), Null}

func runFuncCases(t *testing.T, cases []funcCase) {
	t.Helper()
	for _, c := range cases {
		name := exprString(c.expr)
		x, err := CompileExpr(c.expr, testSchema)
		if w, ok := c.want.(wantErr); ok {
			if err == nil || !strings.Contains(err.Error(), string(w)) {
				t.Errorf("%s: error %v, want one containing %q", name, err, w)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		v := x.Eval(testRow)
		got := v.Go()
		if v.Kind == KindTimestamp || v.Kind == KindStruct { // as the console shows it
			got = string(v.AppendText(nil))
		}
		if b, ok := got.([]byte); ok {
			got = "x'" + string(b) + "'"
		}
		if !equalGo(got, c.want) {
			t.Errorf("%s = %#v, want %#v", name, got, c.want)
		}
	}
}

func equalGo(a, b any) bool {
	switch x := b.(type) {
	case int:
		b = int64(x)
	case time.Time:
		t, ok := a.(time.Time)
		return ok && t.Equal(x)
	case []any:
		y, ok := a.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalGo(y[i], x[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// exprString renders e in SQL-like text for test names.
func exprString(e *planpb.Expr) string {
	switch k := e.GetKind().(type) {
	case *planpb.Expr_Column:
		return k.Column
	case *planpb.Expr_Literal:
		if k.Literal.GetNull() {
			return "NULL"
		}
		if s, ok := k.Literal.GetValue().(*planpb.Literal_String_); ok {
			return "'" + s.String_ + "'"
		}
		return literalText(k.Literal)
	case *planpb.Expr_Call:
		var args []string
		for _, a := range k.Call.GetArgs() {
			args = append(args, exprString(a))
		}
		return k.Call.GetFunction() + "(" + strings.Join(args, ", ") + ")"
	case *planpb.Expr_Cast:
		return "CAST(" + exprString(k.Cast.GetExpr()) + " AS " + TypeName(k.Cast.GetTo()) + ")"
	}
	return "?"
}

func literalText(l *planpb.Literal) string {
	x, err := compileLiteral(l)
	if err != nil {
		return "?"
	}
	return string(x.Eval(nil).AppendText(nil))
}

var null = typedNull(planpb.DataType_STRING)
var nullInt = typedNull(planpb.DataType_LONG)

func TestStringFunctions(t *testing.T) {
	arr := fn("split", "a b c", " ")
	runFuncCases(t, []funcCase{
		// lower, upper
		{fn("lower", "SparkSql"), "sparksql"},
		{fn("upper", "SparkSql"), "SPARKSQL"},
		{fn("lcase", "ÄÖÜ Spark"), "äöü spark"},
		{fn("upper", null), nil},
		{fn("lower", ""), ""},
		// length counts characters, or a binary's bytes
		{fn("length", "Spark SQL "), 10},
		{fn("char_length", "Spark SQL "), 10},
		{fn("character_length", "Spark SQL "), 10},
		{fn("length", "héllo"), 5},
		{fn("length", colRef("b")), 9},
		{fn("length", ""), 0},
		{fn("length", null), nil},
		{fn("length", 123), 3},
		// trim, ltrim, rtrim: spaces, or the characters of trimStr
		{fn("trim", "    SparkSQL   "), "SparkSQL"},
		{fn("trim", "SSparkSQLS", "SL"), "parkSQ"},
		{fn("ltrim", "    SparkSQL   "), "SparkSQL   "},
		{fn("ltrim", "SSparkSQLS", "SL"), "parkSQLS"},
		{fn("rtrim", "    SparkSQL   "), "    SparkSQL"},
		{fn("rtrim", "SSparkSQLS", "SL"), "SSparkSQ"},
		{fn("trim", "\tSpark\t"), "\tSpark\t"},
		{fn("trim", null), nil},
		{fn("trim", "SSparkSQLS", null), nil},
		{fn("trim", "   "), ""},
		// substring: 1-based, a negative pos counts from the end
		{fn("substring", "Spark SQL", 5), "k SQL"},
		{fn("substring", "Spark SQL", -3), "SQL"},
		{fn("substring", "Spark SQL", 5, 1), "k"},
		{fn("substr", "Spark SQL", 5, 1), "k"},
		{fn("substring", "Spark SQL", 0, 3), "Spa"},
		{fn("substring", "Spark SQL", 1, 3), "Spa"},
		{fn("substring", "Spark SQL", 100), ""},
		{fn("substring", "Spark SQL", -100, 3), ""},
		{fn("substring", "abc", -5, 3), "a"},
		{fn("substring", "abc", 2, -1), ""},
		{fn("substring", "abc", 2, 0), ""},
		{fn("substring", "héllo wörld", 2, 4), "éllo"},
		{fn("substring", "héllo wörld", -5), "wörld"},
		{fn("substring", colRef("b"), 1, 5), "x'Spark'"},
		{fn("substring", null, 1), nil},
		{fn("substring", "abc", nullInt), nil},
		{fn("substring", "abc", "x"), wantErr("not an integer")},
		// substring_index
		{fn("substring_index", "www.apache.org", ".", 2), "www.apache"},
		{fn("substring_index", "a.b.c.d", ".", 2), "a.b"},
		{fn("substring_index", "a.b.c.d", ".", -3), "b.c.d"},
		{fn("substring_index", "www.apache.org", ".", -1), "org"},
		{fn("substring_index", "www.apache.org", ".", 10), "www.apache.org"},
		{fn("substring_index", "www.apache.org", ".", -10), "www.apache.org"},
		{fn("substring_index", "www.apache.org", ".", 0), ""},
		{fn("substring_index", "www.apache.org", "", 1), ""},
		{fn("substring_index", "www.apache.org", "#", 1), "www.apache.org"},
		{fn("substring_index", ".a.", ".", 1), ""},
		{fn("substring_index", ".a.", ".", -1), ""},
		{fn("substring_index", "aaa", "aa", 2), "a"},
		{fn("substring_index", "", ".", 1), ""},
		{fn("substring_index", null, ".", 1), nil},
		{fn("substring_index", "a.b", null, 1), nil},
		// concat: null if any argument is null
		{fn("concat", "Spark", "SQL"), "SparkSQL"},
		{fn("concat", "Spark", null), nil},
		{fn("concat", "Spark", 1), "Spark1"},
		{fn("concat"), ""},
		{fn("concat", "", ""), ""},
		{fn("concat", colRef("b"), colRef("b")), "x'Spark SQLSpark SQL'"},
		// concat_ws skips nulls, and joins the elements of arrays
		{fn("concat_ws", " ", "Spark", "SQL"), "Spark SQL"},
		{fn("concat_ws", "s"), ""},
		{fn("concat_ws", "/", "foo", null, "bar"), "foo/bar"},
		{fn("concat_ws", null, "Spark", "SQL"), nil},
		{fn("concat_ws", ",", arr, "d"), "a,b,c,d"},
		{fn("concat_ws", ",", null, null), ""},
		// contains, startswith, endswith
		{fn("contains", "Spark SQL", "Spark"), true},
		{fn("contains", "Spark SQL", "SPARK"), false},
		{fn("contains", "Spark SQL", null), nil},
		{fn("contains", "Spark SQL", ""), true},
		{fn("contains", colRef("b"), colRef("b")), true},
		{fn("startswith", "Spark SQL", "Spark"), true},
		{fn("startswith", "Spark SQL", "SQL"), false},
		{fn("startswith", "Spark SQL", null), nil},
		{fn("startswith", "Spark SQL", ""), true},
		{fn("endswith", "Spark SQL", "SQL"), true},
		{fn("endswith", "Spark SQL", "Spark"), false},
		{fn("endswith", "Spark SQL", null), nil},
		{fn("endswith", null, "SQL"), nil},
		// like: whole-string match; _ one character, % any run
		{fn("like", "Spark", "_park"), true},
		{fn("like", `%SystemDrive%\Users\John`, `\%SystemDrive\%\\Users%`), true},
		{fn("like", "%SystemDrive%/Users/John", "/%SYSTEMDrive/%//Users%", "/"), false},
		{fn("like", "%SystemDrive%/Users/John", "/%SystemDrive/%//Users%", "/"), true},
		{fn("like", "Spark", "Spark"), true},
		{fn("like", "Spark", "Spar"), false},
		{fn("like", "Spark", "%"), true},
		{fn("like", "", "%"), true},
		{fn("like", "", "_"), false},
		{fn("like", "a\nb", "a_b"), true},
		{fn("like", "héllo", "h_llo"), true},
		{fn("like", "a.c", "a.c"), true},
		{fn("like", "abc", "a.c"), false},
		{fn("like", "abcbc", "a%bc"), true},
		{fn("like", "abc", "%b%c%"), true},
		{fn("like", "ab", "a%b%b"), false},
		{fn("like", "aXbXc", "a%X%c"), true},
		{fn("like", "aXc", "a%X%X%c"), false},
		{fn("like", "", ""), true},
		{fn("like", "a", ""), false},
		{fn("like", "50%", `50\%`), true},
		{fn("like", "500", `50\%`), false},
		{fn("like", "a_c", `a\_c`), true},
		{fn("like", "abc", `a\_c`), false},
		{fn("like", null, "%"), nil},
		{fn("like", "Spark", null), nil},
		{fn("like", "Spark", `a\b`), wantErr("the escape character is not allowed to precede 'b'")},
		{fn("like", "Spark", `ab\`), wantErr("not allowed to end with the escape character")},
		{fn("like", "Spark", colRef("s")), wantErr("must be a string literal")},
		// rlike: a Java regex found anywhere
		{fn("rlike", `%SystemDrive%\Users\John`, `%SystemDrive%\\Users.*`), true},
		{fn("rlike", "Spark SQL", "^S.*L$"), true},
		{fn("rlike", "Spark SQL", "park"), true},
		{fn("regexp", "Spark SQL", "^park"), false},
		{fn("regexp_like", "Spark SQL", `\s`), true},
		{fn("rlike", null, "x"), nil},
		{fn("rlike", "x", null), nil},
		{fn("rlike", "x", "("), wantErr("missing closing )")},
		// regexp_extract
		{fn("regexp_extract", "100-200", `(\d+)-(\d+)`, 1), "100"},
		{fn("regexp_extract", "100-200", `(\d+)-(\d+)`, 2), "200"},
		{fn("regexp_extract", "100-200", `(\d+)-(\d+)`, 0), "100-200"},
		{fn("regexp_extract", "100-200", `(\d+)-(\d+)`), "100"},
		{fn("regexp_extract", "foo", `(\d+)`, 1), ""},
		{fn("regexp_extract", "aaaac", "(a+)(b)?(c)", 2), ""},
		{fn("regexp_extract", "aaaac", "(a+)(b)?(c)", 3), "c"},
		{fn("regexp_extract", "", `(\d*)`, 1), ""},
		{fn("regexp_extract", null, `(\d+)`, 1), nil},
		{fn("regexp_extract", "100", null, 1), nil},
		{fn("regexp_extract", "100-200", `(\d+)-(\d+)`, 3), wantErr("has 2 groups, so the group index 3 is out of range")},
		{fn("regexp_extract", "100-200", `(\d+)`, -1), wantErr("group index -1 is out of range")},
		{fn("regexp_extract", "x", "[a-", 1), wantErr("unclosed character class")},
		{fn("regexp_extract", "aa", `(a)\1`, 1), wantErr(`the backreference \1 is not supported`)},
		{fn("regexp_extract", "ab", `a(?=b)`, 0), wantErr("lookahead (?=...) is not supported")},
		{fn("regexp_extract", "ab", `(?<!x)a`, 0), wantErr("lookbehind (?<!...) is not supported")},
		{fn("regexp_extract", "ab", `a++`, 0), wantErr("possessive quantifier ++ is not supported")},
		{fn("regexp_extract", "key=val", `(?<k>\w+)=(?<v>\w+)`, 2), "val"},
		{fn("regexp_extract", "a\u000Bb", `a\sb`, 0), "a\u000Bb"},
		{fn("regexp_extract", "x: 42", `\p{Alpha}: (\p{Digit}+)`, 1), "42"},
		{fn("regexp_extract", "a.b", `\Q.\E(\w)`, 1), "b"},
		{fn("regexp_extract", "aaa", `a{2}+`, 0), wantErr("possessive quantifier }+ is not supported")},
		{fn("regexp_extract", "aaa", `a*?`, 0), ""},
		{fn("regexp_extract", "a+", `a\++`, 0), "a+"},
		{fn("regexp_extract", "a{b}", `a{b}+`, 0), "a{b}"},
		// regexp_replace: Java's replacement syntax
		{fn("regexp_replace", "100-200", `(\d+)`, "num"), "num-num"},
		{fn("regexp_replace", "100-200", `(\d+)-(\d+)`, "$2-$1"), "200-100"},
		{fn("regexp_replace", "abc", "(b)", "[$1]"), "a[b]c"},
		{fn("regexp_replace", "abc", "(b)", "$10"), "ab0c"},
		{fn("regexp_replace", "abc", "(?<x>b)", "<${x}>"), "a<b>c"},
		{fn("regexp_replace", "abc", "b", `\$`), "a$c"},
		{fn("regexp_replace", "abc", "x*", "-"), "-a-b-c-"},
		{fn("regexp_replace", "", "x", "y"), ""},
		{fn("regexp_replace", null, "x", "y"), nil},
		{fn("regexp_replace", "abc", null, "y"), nil},
		{fn("regexp_replace", "abc", "b", null), nil},
		{fn("regexp_replace", "abc", "(b)", "$2"), wantErr("no group 2")},
		{fn("regexp_replace", "abc", "b", "$"), wantErr("group index is missing")},
		{fn("regexp_replace", "abc", "(b)", "${y}"), wantErr("no group with name {y}")},
		// element_at is 1-based; get_item (split(...)[i], getItem) 0-based
		{fn("element_at", arr, 2), "b"},
		{fn("element_at", arr, -1), "c"},
		{fn("element_at", arr, -3), "a"},
		{fn("element_at", arr, 4), nil},
		{fn("element_at", arr, -4), nil},
		{fn("element_at", arr, nullInt), nil},
		{fn("element_at", typedNull(planpb.DataType_ARRAY_STRING), 1), nil},
		{fn("element_at", arr, 0), wantErr("SQL array indexes start at 1")},
		{fn("element_at", "abc", 1), wantErr("needs an array, got string")},
		{fn("get_item", arr, 0), "a"},
		{fn("get_item", arr, 2), "c"},
		{fn("get_item", arr, 3), nil},
		{fn("get_item", arr, -1), nil},
		{fn("get_item", fn("split", colRef("s"), " "), 1), "SQL"},
		{fn("get_item", fn("split", colRef("n"), " "), 0), nil},
		{fn("get_item", fn("split", "", " "), 0), ""},
	})
}

func TestTimeFunctions(t *testing.T) {
	ts := fn("to_timestamp", "2026-12-05 14:03:09.120")
	tsZ := fn("to_timestamp", "2026-12-05 14:03:09.120Z")
	runFuncCases(t, []funcCase{
		{fn("to_timestamp", "2016-12-31 00:12:00"), "2016-12-31 00:12:00"},
		{fn("to_timestamp", "2016-12-31", "yyyy-MM-dd"), "2016-12-31 00:00:00"},
		{fn("to_timestamp", "2016-12-31"), "2016-12-31 00:00:00"},
		{fn("to_timestamp", "2016-12"), "2016-12-01 00:00:00"},
		{fn("to_timestamp", " 2016-12-31T00:12:00.5Z "), "2016-12-31 00:12:00.5"},
		{fn("to_timestamp", "2016-12-31 01:12:00+01:00"), "2016-12-31 00:12:00"},
		{fn("to_timestamp", "2016-12-31 01:12:00 Europe/Paris"), "2016-12-31 00:12:00"},
		{fn("to_timestamp", "2016-12-31 00:12"), "2016-12-31 00:12:00"},
		{fn("to_timestamp", "2016-02-30"), nil},
		{fn("to_timestamp", "2016-12-31 25:00:00"), nil},
		{fn("to_timestamp", "bad"), nil},
		{fn("to_timestamp", ""), nil},
		{fn("to_timestamp", null), nil},
		{fn("to_timestamp", "05/Dec/2026:14:00:00 +0000", "dd/MMM/yyyy:HH:mm:ss Z"), "2026-12-05 14:00:00"},
		{fn("to_timestamp", "05/Dec/2026:15:00:00 +0100", "dd/MMM/yyyy:HH:mm:ss Z"), "2026-12-05 14:00:00"},
		{fn("to_timestamp", "20261205", "yyyyMMdd"), "2026-12-05 00:00:00"},
		{fn("to_timestamp", "2026-12-05 02:30 PM", "yyyy-MM-dd hh:mm a"), "2026-12-05 14:30:00"},
		{fn("to_timestamp", "2026-12-05 12:30 AM", "yyyy-MM-dd hh:mm a"), "2026-12-05 00:30:00"},
		{fn("to_timestamp", "2026-12-05T14:00:00.123", "yyyy-MM-dd'T'HH:mm:ss.SSS"), "2026-12-05 14:00:00.123"},
		{fn("to_timestamp", "2026-9-5", "yyyy-M-d"), "2026-09-05 00:00:00"},
		{fn("to_timestamp", "2026-9-5", "yyyy-MM-dd"), nil},
		{fn("to_timestamp", "2016-02-30", "yyyy-MM-dd"), nil},
		{fn("to_timestamp", "2016-12-31 trailing", "yyyy-MM-dd"), nil},
		{fn("to_timestamp", "2016-12-31", null), nil},
		{fn("to_timestamp", "2016", "YYYY"), wantErr("the pattern letter 'Y' is not supported (week-based fields are unsupported, as in Spark 3)")},
		{fn("to_timestamp", "2016", "yyyy-qq"), wantErr("the pattern letter 'q' is not supported")},
		{fn("to_timestamp", "2016", "yyyy'"), wantErr("unclosed quote")},
		{fn("to_timestamp", "2016", "yyyy[-MM]"), wantErr("optional sections are not supported")},
		{fn("to_timestamp", "2016", "ddd"), wantErr("too many pattern letters: ddd")},
		{fn("date_format", "2016-04-08", "y"), "2016"},
		{fn("date_format", ts, "yyyy-MM-dd HH:mm:ss"), "2026-12-05 14:03:09"},
		{fn("date_format", ts, "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"), "2026-12-05T14:03:09.120Z"},
		{fn("date_format", ts, "dd/MMM/yyyy:HH:mm:ss Z"), "05/Dec/2026:14:03:09 +0000"},
		{fn("date_format", ts, "EEEE, MMMM d, yy h:mm a 'at' D"), "Saturday, December 5, 26 2:03 PM at 339"},
		{fn("date_format", ts, "E MMM dd HH 'o''clock' z"), "Sat Dec 05 14 o'clock UTC"},
		{fn("date_format", ts, "xxx O"), "+00:00 GMT"},
		{fn("date_format", null, "y"), nil},
		{fn("date_format", "bad", "y"), nil},
		{fn("date_format", ts, "uuuu"), wantErr("the pattern letter 'u' is not supported")},
		{fn("date_format", 1, "y"), wantErr("needs a timestamp")},
		// a session time zone: zone-less text is read in it, text is written in it
		{fn(WithTimeZone, "Europe/Paris", fn("to_timestamp", "2026-12-05 15:00:00")), "2026-12-05 14:00:00"},
		{fn(WithTimeZone, "Europe/Paris", fn("to_timestamp", "2026-12-05 15:00", "yyyy-MM-dd HH:mm")), "2026-12-05 14:00:00"},
		{fn(WithTimeZone, "Europe/Paris", fn("to_timestamp", "2026-12-05 15:00:00Z")), "2026-12-05 15:00:00"},
		{fn(WithTimeZone, "Europe/Paris", fn("date_format", tsZ, "yyyy-MM-dd HH:mm:ss z XXX")), "2026-12-05 15:03:09 CET +01:00"},
		{fn(WithTimeZone, "Europe/Paris", fn("date_format", ts, "HH:mm:ss")), "14:03:09"},
		{fn(WithTimeZone, "+05:30", &planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: tsZ, To: planpb.DataType_STRING}}}), "2026-12-05 19:33:09.12"},
		{fn(WithTimeZone, "Europe/Paris", fn("to_json", fn("named_struct", "t", tsZ))), `{"t":"2026-12-05T15:03:09.120+01:00"}`},
		{fn(WithTimeZone, "Europe/Paris", fn("get_field", fn("from_json", `{"t":"2026-12-05 15:00:00"}`, "t TIMESTAMP"), "t")), "2026-12-05 14:00:00"},
		{fn(WithTimeZone, "Mars/Olympus_Mons", fn("current_timestamp")), wantErr(`unknown time zone "Mars/Olympus_Mons"`)},
		{fn(WithTimeZone, "", fn("current_timestamp")), wantErr(`unknown time zone ""`)},
		{&planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: arg("2026-12-05 14:00:00"), To: planpb.DataType_TIMESTAMP}}}, "2026-12-05 14:00:00"},
		{&planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: ts, To: planpb.DataType_LONG}}}, int64(1796479389)},
		{&planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: arg(1796479389), To: planpb.DataType_TIMESTAMP}}}, "2026-12-05 14:03:09"},
		{&planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: ts, To: planpb.DataType_STRING}}}, "2026-12-05 14:03:09.12"},
	})
}

// TestCurrentTimestampIsTheBatchs checks that every instance of a chain
// (every task) sees the batch clock's one value, and the next batch's after
// it is set again.
func TestCurrentTimestampIsTheBatchs(t *testing.T) {
	scan := &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: &planpb.KafkaScan{}}}
	p := &planpb.Plan{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: scan,
		Exprs: []*planpb.NamedExpr{{Expr: fn("current_timestamp"), Name: "now"}}}}}
	n, err := CompileNarrow(p)
	if err != nil {
		t.Fatal(err)
	}
	if typ := n.Schema()[0].Type; typ != planpb.DataType_TIMESTAMP {
		t.Fatalf("current_timestamp is %s", TypeName(typ))
	}
	var got []int64
	in := make(Row, len(KafkaSchema(false)))
	run := func() {
		for range 2 { // two tasks
			emit, err := n.New(func(r Row) error { got = append(got, r[0].I); return nil })
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := emit(in); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	batch1, batch2 := time.UnixMilli(1796479389120), time.UnixMilli(1796479390000)
	n.Clock().Set(batch1)
	run()
	n.Clock().Set(batch2)
	run()
	for i, v := range got {
		want := batch1
		if i >= 6 {
			want = batch2
		}
		if v != want.UnixMicro() {
			t.Fatalf("row %d: current_timestamp %v, want %v", i, time.UnixMicro(v).UTC(), want.UTC())
		}
	}
}

// storeJSON is the document of Spark's (and Hive's) get_json_object tests.
const storeJSON = `{"store":{"fruit":[{"weight":8,"type":"apple"},{"weight":9,"type":"pear"}],` +
	`"basket":[[1,2,{"b":"y","a":"x"}],[3,4],[5,6]],"book":[{"author":"Nigel Rees",` +
	`"title":"Sayings of the Century","category":"reference","price":8.95},` +
	`{"author":"Herman Melville","title":"Moby Dick","category":"fiction","price":8.99,` +
	`"isbn":"0-553-21311-3"},{"author":"J. R. R. Tolkien","title":"The Lord of the Rings",` +
	`"category":"fiction","reader":[{"age":25,"name":"bob"},{"age":26,"name":"jack"}],` +
	`"price":22.99,"isbn":"0-395-19395-8"}],"bicycle":{"price":19.95,"color":"red"}},` +
	`"email":"amy@only_for_json_udf_test.net","owner":"amy","zip code":"94025","fb:testid":"1234"}`

func TestJSONFunctions(t *testing.T) {
	get := func(path string) *planpb.Expr { return fn("get_json_object", storeJSON, path) }
	log := fn("from_json", `{"level":"WARN","status":503,"msg":"upstream \"api\" down","extra":[1]}`, "level STRING, status INT, msg STRING")
	runFuncCases(t, []funcCase{
		// from_json: PERMISSIVE, partial results, nulls
		{fn("from_json", `{"a":1, "b":0.8}`, "a INT, b DOUBLE"), "{1, 0.8}"},
		{fn("from_json", `{"a": 1}`, "a INT"), "{1}"},
		{log, `{WARN, 503, upstream "api" down}`},
		{fn("from_json", `{"a" 1}`, "a INT"), "{NULL}"},
		{fn("from_json", `{"a":1,"b":2`, "a INT, b INT"), "{NULL, NULL}"},
		{fn("from_json", `[1, 2]`, "a INT"), "{NULL}"},
		{fn("from_json", ``, "a INT"), "{NULL}"},
		{fn("from_json", `{"a":"x","b":2}`, "a INT, b INT"), "{NULL, 2}"},
		{fn("from_json", `{"a":1.5,"b":3000000000}`, "a INT, b INT"), "{NULL, NULL}"},
		{fn("from_json", `{"a":3000000000}`, "a BIGINT"), "{3000000000}"},
		{fn("from_json", `{"a":200,"b":{"c":[1, "x"]},"c":true,"d":null}`, "a STRING, b STRING, c STRING, d STRING"), `{200, {"c":[1,"x"]}, true, NULL}`},
		{fn("from_json", `{"A":1,"a":2}`, "a INT"), "{2}"},
		{fn("from_json", `{"a":1,"a":2}`, "a INT"), "{2}"},
		{fn("from_json", `{'a':'single'}`, "a STRING"), "{single}"},
		{fn("from_json", `{"a":"\u00e9\ud83d\ude00\n"}`, "a STRING"), "{é😀\n}"},
		{fn("from_json", `{"a":"NaN","b":"x","c":1}`, "a DOUBLE, b DOUBLE, c DOUBLE"), "{NaN, NULL, 1.0}"},
		{fn("from_json", `{"t":"2026-12-05T14:00:00Z","u":1796479389}`, "t TIMESTAMP, u TIMESTAMP"), "{2026-12-05 14:00:00, 2026-12-05 14:03:09}"},
		{fn("from_json", `{"ok":true,"no":"true"}`, "ok BOOLEAN, no BOOLEAN"), "{true, NULL}"},
		{fn("from_json", `{"s":{"x":1,"y":"z"},"tags":["a",null,"b"]}`, "s STRUCT<x: INT, y: STRING>, tags ARRAY<STRING>"), "{{1, z}, [a, NULL, b]}"},
		{fn("from_json", `{"a":1}`, "STRUCT<a: INT>"), "{1}"},
		{fn("from_json", `{"a b":1}`, "`a b` INT NOT NULL COMMENT 'x'"), "{1}"},
		{fn("from_json", `{"a":1,"b":`+strings.Repeat("[", 999)+strings.Repeat("]", 999)+`}`, "a INT, b STRING"), "{1, " + strings.Repeat("[", 999) + strings.Repeat("]", 999) + "}"},
		{fn("from_json", `{"a":1,"b":`+strings.Repeat("[", 1000)+strings.Repeat("]", 1000)+`}`, "a INT, b STRING"), "{NULL, NULL}"},
		{fn("get_json_object", strings.Repeat("[", 1001)+strings.Repeat("]", 1001), "$"), nil},
		{fn("from_json", null, "a INT"), nil},
		{fn("from_json", `{"a":1}`, "a MAP<STRING,INT>"), wantErr(`the type "map" is not supported`)},
		{fn("from_json", `{"a":1}`, "a ARRAY<STRUCT<b: INT>>"), wantErr("array<struct> is not supported yet")},
		{fn("from_json", `{"a":1}`, "a"), wantErr("a type is missing")},
		{fn("from_json", `{"a":1}`, "a INT,"), wantErr(`expected a field name, got ""`)},
		{fn("from_json", `{"a":1}`, colRef("s")), wantErr("schema (argument 2) must be a string literal")},
		// struct fields
		{fn("get_field", log, "status"), 503},
		{fn("get_field", log, "LEVEL"), "WARN"},
		{fn("get_field", fn("from_json", `{"s":{"x":7}}`, "s STRUCT<x: INT>"), "s"), "{7}"},
		{fn("get_field", fn("get_field", fn("from_json", `{"s":{"x":7}}`, "s STRUCT<x: INT>"), "s"), "x"), 7},
		{fn("get_field", fn("from_json", `bad`, "a INT"), "a"), nil},
		{fn("get_field", fn("from_json", null, "a INT"), "a"), nil},
		{fn("get_field", log, "nope"), wantErr(`no field "nope" in the struct: its fields are [level, status, msg]`)},
		{fn("get_field", "x", "a"), wantErr("it is not a struct")},
		// to_json: null fields left out
		{fn("to_json", log), `{"level":"WARN","status":503,"msg":"upstream \"api\" down"}`},
		{fn("to_json", fn("from_json", `{"a":1}`, "a INT, b STRING")), `{"a":1}`},
		{fn("to_json", fn("named_struct", "a", 1, "b", 2)), `{"a":1,"b":2}`},
		{fn("to_json", fn("named_struct", "time", fn("to_timestamp", "2015-08-26", "yyyy-MM-dd"))), `{"time":"2015-08-26T00:00:00.000Z"}`},
		{fn("to_json", fn("named_struct", "d", 1.5, "ok", true, "s", fn("split", "a b", " "), "n", null)), `{"d":1.5,"ok":true,"s":["a","b"]}`},
		{fn("to_json", fn("named_struct", "c", "tab\there\u0001")), `{"c":"tab\there\u0001"}`},
		{fn("to_json", fn("split", "a b", " ")), `["a","b"]`},
		{fn("to_json", fn("from_json", null, "a INT")), nil},
		{fn("to_json", "x"), wantErr("to_json takes a struct or an array, got string")},
		// get_json_object: Spark's documented example, then its test suite's paths
		{fn("get_json_object", `{"a":"b"}`, "$.a"), "b"},
		{get("$.owner"), "amy"},
		{get("$.store.bicycle"), `{"price":19.95,"color":"red"}`},
		{get("$['store'].bicycle"), `{"price":19.95,"color":"red"}`},
		{get("$.store['bicycle']"), `{"price":19.95,"color":"red"}`},
		{get("$['store']['bicycle']"), `{"price":19.95,"color":"red"}`},
		{get("$.store.book[0]"), `{"author":"Nigel Rees","title":"Sayings of the Century","category":"reference","price":8.95}`},
		{get("$.store.book[*].category"), `["reference","fiction","fiction"]`},
		{get("$.store.book[*].isbn"), `["0-553-21311-3","0-395-19395-8"]`},
		{get("$.store.book[*].reader"), `[{"age":25,"name":"bob"},{"age":26,"name":"jack"}]`},
		{get("$.store.basket[0][1]"), "2"},
		{get("$.store.basket[*]"), `[[1,2,{"b":"y","a":"x"}],[3,4],[5,6]]`},
		{get("$.store.basket[*][0]"), "[1,3,5]"},
		{get("$.store.basket[0][*]"), `[1,2,{"b":"y","a":"x"}]`},
		{get("$.store.basket[*][*]"), `[1,2,{"b":"y","a":"x"},3,4,5,6]`},
		{get("$.store.basket[0][2].b"), "y"},
		{get("$.store.basket[0][*].b"), `["y"]`},
		{get("$.store.fruit[*].weight"), "[8,9]"},
		{get("$.store.bicycle.price"), "19.95"},
		{get("$.zip code"), "94025"},
		{get("$.fb:testid"), "1234"},
		{get("$.store.book[10]"), nil},
		{get("$.store.book[0].foo"), nil},
		{get("$.non_exist_key"), nil},
		{get("$..no_recursive"), nil},
		{get("store.book"), nil},
		{get("$.store.book[-1]"), nil},
		{fn("get_json_object", `{"key with spaces": "it works"}`, "$['key with spaces']"), "it works"},
		{fn("get_json_object", `{"a":null}`, "$.a"), nil},
		{fn("get_json_object", `{"a":null,"a":1}`, "$.a"), "1"},
		{fn("get_json_object", `{"a":[1,2]}`, "$.a"), "[1,2]"},
		{fn("get_json_object", `{"a": { "b" : 1e2 , "c":-0} }`, "$.a"), `{"b":100.0,"c":0}`},
		{fn("get_json_object", `{"a":"x\"y"}`, "$.a"), `x"y`},
		{fn("get_json_object", `[{"a":1},{"a":2}]`, "$[1].a"), "2"},
		{fn("get_json_object", `{"a":1}`, "$"), `{"a":1}`},
		{fn("get_json_object", `{"a":1} trailing`, "$.a"), "1"},
		{fn("get_json_object", `{"a":1,"b":[}`, "$.a"), nil},
		{fn("get_json_object", `{"a":1`, "$.a"), nil},
		{fn("get_json_object", ``, "$.a"), nil},
		{fn("get_json_object", null, "$.a"), nil},
		{fn("get_json_object", `{"a":1}`, null), nil},
	})
}
