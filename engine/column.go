package engine

import (
	"fmt"
	"strings"

	"github.com/gostream/gostream/proto/planpb"
)

// DataType is the type of a column: String, Binary, Long, Int, Double,
// Boolean or Timestamp.
type DataType = planpb.DataType

// Data types for Cast.
const (
	String    = planpb.DataType_STRING
	Binary    = planpb.DataType_BINARY
	Long      = planpb.DataType_LONG
	Int       = planpb.DataType_INT
	Double    = planpb.DataType_DOUBLE
	Boolean   = planpb.DataType_BOOLEAN
	Timestamp = planpb.DataType_TIMESTAMP
)

// Column is an expression over the columns of a DataFrame, as in Spark's
// Column. Columns are values: every method returns a new Column.
type Column struct {
	expr      *planpb.Expr
	name      string // alias or derived name
	generator bool   // explode(...)
	err       error  // why the column cannot be built (Expr's parse error, ...); reported by the DataFrame using it
}

// Col refers to a column by name (case-insensitive, as in Spark).
func Col(name string) Column {
	return Column{expr: &planpb.Expr{Kind: &planpb.Expr_Column{Column: name}}, name: name}
}

// Lit is a literal: a string, int, int32, int64, float64, bool or nil
// (null). A value of another type makes a column whose DataFrame fails
// analysis with an error naming the type.
func Lit(v any) Column {
	l := &planpb.Literal{}
	switch x := v.(type) {
	case string:
		l.Value, l.Type = &planpb.Literal_String_{String_: x}, String
	case int:
		l.Value, l.Type = &planpb.Literal_Long{Long: int64(x)}, Long
	case int32:
		l.Value, l.Type = &planpb.Literal_Long{Long: int64(x)}, Long
	case int64:
		l.Value, l.Type = &planpb.Literal_Long{Long: x}, Long
	case float64:
		l.Value, l.Type = &planpb.Literal_Double{Double: x}, Double
	case bool:
		l.Value, l.Type = &planpb.Literal_Boolean{Boolean: x}, Boolean
	case nil:
		l.Value, l.Type = &planpb.Literal_Null{Null: true}, String
		return Column{expr: &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: l}}, name: "NULL"}
	default:
		return Column{name: fmt.Sprint(v), err: fmt.Errorf("Lit of a %T: use a string, int, int32, int64, float64, bool or nil", v)}
	}
	return Column{expr: &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: l}}, name: fmt.Sprint(v)}
}

func call(fn, name string, args ...Column) Column {
	c := &planpb.Call{Function: fn}
	for _, a := range args {
		if a.err != nil {
			return Column{name: name, err: a.err}
		}
		c.Args = append(c.Args, a.expr)
	}
	return Column{expr: &planpb.Expr{Kind: &planpb.Expr_Call{Call: c}}, name: name}
}

// columnsErr is the first error of cols.
func columnsErr(cols []Column) error {
	for _, c := range cols {
		if c.err != nil {
			return c.err
		}
	}
	return nil
}

// As names the column (Spark's alias).
func (c Column) As(name string) Column { c.name = name; return c }

// Cast converts the column to t, as CAST(col AS t). CAST(value AS STRING)
// reinterprets Kafka's bytes as UTF-8.
func (c Column) Cast(t DataType) Column {
	if c.err != nil {
		return c
	}
	return Column{expr: &planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: c.expr, To: t}}}, name: c.name}
}

// Split is Spark's split(str, pattern): a regex split that keeps empty
// strings, trailing ones included. Patterns without regex metacharacters
// split on the literal text.
func Split(c Column, pattern string) Column {
	return call("split", "split("+c.name+", "+pattern+", -1)", c, Lit(pattern))
}

// Explode yields one row per element of an array column (Spark's explode:
// a null or empty array yields no rows). Use it in Select.
func Explode(c Column) Column {
	return Column{expr: c.expr, name: "col", generator: true, err: c.err}
}

// Lower, Upper, Trim and Length are Spark's string functions.
func Lower(c Column) Column { return call("lower", "lower("+c.name+")", c) }

// Upper converts to upper case.
func Upper(c Column) Column { return call("upper", "upper("+c.name+")", c) }

// Trim removes leading and trailing spaces.
func Trim(c Column) Column { return call("trim", "trim("+c.name+")", c) }

// Length is the number of characters.
func Length(c Column) Column { return call("length", "length("+c.name+")", c) }

// Udf calls the Go function registered as name with RegisterUDF.
func Udf(name string, args ...Column) Column {
	return call("udf", name, append([]Column{Lit(name)}, args...)...)
}

func (c Column) binary(op string, other any) Column {
	o, ok := other.(Column)
	if !ok {
		o = Lit(other)
	}
	return call(op, "("+c.name+" "+strings.ToUpper(op)+" "+o.name+")", c, o)
}

// Eq, Ne, Lt, Le, Gt and Ge compare with a Column or a literal.
func (c Column) Eq(other any) Column { return c.binary("=", other) }

// Ne is c != other.
func (c Column) Ne(other any) Column { return c.binary("!=", other) }

// Lt is c < other.
func (c Column) Lt(other any) Column { return c.binary("<", other) }

// Le is c <= other.
func (c Column) Le(other any) Column { return c.binary("<=", other) }

// Gt is c > other.
func (c Column) Gt(other any) Column { return c.binary(">", other) }

// Ge is c >= other.
func (c Column) Ge(other any) Column { return c.binary(">=", other) }

// And and Or combine boolean columns with SQL's three-valued logic.
func (c Column) And(other Column) Column { return c.binary("and", other) }

// Or is c OR other.
func (c Column) Or(other Column) Column { return c.binary("or", other) }

// Not negates a boolean column.
func Not(c Column) Column { return call("not", "(NOT "+c.name+")", c) }

// IsNull and IsNotNull test for null.
func (c Column) IsNull() Column { return call("is_null", "("+c.name+" IS NULL)", c) }

// IsNotNull is c IS NOT NULL.
func (c Column) IsNotNull() Column { return call("is_not_null", "("+c.name+" IS NOT NULL)", c) }

// Plus, Minus, Multiply and Divide are arithmetic (Divide yields a double).
func (c Column) Plus(other any) Column { return c.binary("+", other) }

// Minus is c - other.
func (c Column) Minus(other any) Column { return c.binary("-", other) }

// Multiply is c * other.
func (c Column) Multiply(other any) Column { return c.binary("*", other) }

// Divide is c / other.
func (c Column) Divide(other any) Column { return c.binary("/", other) }

// Agg is an aggregate expression for GroupedData.Agg.
type Agg struct {
	fn   planpb.AggregateFunction
	arg  *planpb.Expr
	name string
	err  error // the argument's
}

// As names the aggregate's output column.
func (a Agg) As(name string) Agg { a.name = name; return a }

func agg(fn planpb.AggregateFunction, label string, c Column) Agg {
	return Agg{fn: fn, arg: c.expr, name: label + "(" + c.name + ")", err: c.err}
}

// Count counts the non-null values of c; CountAll counts rows.
func Count(c Column) Agg { return agg(planpb.AggregateFunction_COUNT, "count", c) }

// CountAll is count(*), named "count" as GroupBy().Count() names it.
func CountAll() Agg { return Agg{fn: planpb.AggregateFunction_COUNT, name: "count"} }

// Sum adds the values (long for integers, double for doubles; null for no values).
func Sum(c Column) Agg { return agg(planpb.AggregateFunction_SUM, "sum", c) }

// Min is the smallest value.
func Min(c Column) Agg { return agg(planpb.AggregateFunction_MIN, "min", c) }

// Max is the largest value.
func Max(c Column) Agg { return agg(planpb.AggregateFunction_MAX, "max", c) }

// Avg is the mean, as a double.
func Avg(c Column) Agg { return agg(planpb.AggregateFunction_AVG, "avg", c) }
