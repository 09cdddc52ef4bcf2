package engine

import (
	"fmt"
	"strings"

	"github.com/gostream/gostream/internal/sqlexpr"
)

// Expr is a column written as a Spark SQL expression (Spark's
// functions.expr), such as Expr("CASE WHEN status >= 500 THEN 'error' END").
// It takes column names (`quoted` when they need it), literals, + - * / %,
// comparisons (= == != <> < <= > >= <=>), AND OR NOT, IS [NOT] NULL,
// [NOT] IN, [NOT] LIKE / RLIKE, [NOT] BETWEEN, CASE, CAST(x AS type), calls
// of built-in and registered functions, x[i], struct fields (j.level) and
// an alias (x AS name). A
// construct outside these, or a syntax error, is an analysis error of the
// DataFrame that uses the column, naming it and its byte offset.
func Expr(sql string) Column { return parseExpr("expr", sql) }

// SelectExpr is Select with Spark SQL expressions (Spark's selectExpr), as
// in SelectExpr("CAST(value AS STRING)") or SelectExpr("*", "upper(level)
// AS lvl"). Each string is one expression, as Expr reads it; "*" is all the
// columns.
func (df *DataFrame) SelectExpr(exprs ...string) *DataFrame {
	if df.err != nil {
		return df
	}
	cols := make([]Column, 0, len(exprs))
	for _, s := range exprs {
		n, err := sqlexpr.Parse(s)
		if err != nil {
			return df.s.failed(fmt.Errorf("%w: selectExpr %q: %w", ErrAnalysis, s, err))
		}
		if _, star := n.X.(*sqlexpr.Star); star && n.Alias == "" {
			for _, name := range df.Columns() {
				cols = append(cols, Col(name))
			}
			continue
		}
		c := fromSQL(s, n)
		if c.err != nil {
			return df.s.failed(fmt.Errorf("%w: selectExpr %q: %w", ErrAnalysis, s, c.err))
		}
		cols = append(cols, c)
	}
	return df.Select(cols...)
}

// parseExpr is Expr; what names the caller in errors.
func parseExpr(what, sql string) Column {
	n, err := sqlexpr.Parse(sql)
	if err == nil {
		c := fromSQL(sql, n)
		if err = c.err; err == nil {
			return c
		}
	}
	return Column{name: sql, err: fmt.Errorf("%s %q: %w", what, sql, err)}
}

// fromSQL builds the Column of a parsed expression with the functions of
// the Column API, so that an expression string and the same expression
// built in Go give the same plan.
func fromSQL(src string, n sqlexpr.Named) Column {
	b := sqlBuilder{src: src}
	c := b.column(n.X)
	if b.err != nil {
		return Column{name: src, err: b.err}
	}
	if n.Alias != "" {
		c = c.As(n.Alias)
	}
	return c
}

// sqlBuilder turns syntax into Columns; the first error stops it.
type sqlBuilder struct {
	src string
	err error
}

func (b *sqlBuilder) fail(n sqlexpr.Node, msg string) Column {
	if b.err == nil {
		b.err = sqlexpr.ErrorAt(b.src, n.Pos(), msg)
	}
	return Lit(nil)
}

func (b *sqlBuilder) columns(ns []sqlexpr.Node) []Column {
	out := make([]Column, len(ns))
	for i, n := range ns {
		out[i] = b.column(n)
	}
	return out
}

func (b *sqlBuilder) column(n sqlexpr.Node) Column {
	switch x := n.(type) {
	case *sqlexpr.Column:
		c := Col(x.Parts[0])
		for _, f := range x.Parts[1:] {
			c = c.GetField(f).As(f) // named by the field, as in Spark
		}
		return c
	case *sqlexpr.Field:
		return b.column(x.X).GetField(x.Name).As(x.Name)
	case *sqlexpr.Literal:
		return Lit(x.Value)
	case *sqlexpr.Star:
		return b.fail(x, "* stands alone in selectExpr, or in count(*)")
	case *sqlexpr.Unary:
		v := b.column(x.X)
		switch x.Op {
		case "NOT":
			return Not(v)
		case "-":
			return call("-", "(- "+v.name+")", Lit(0), v)
		}
		return v
	case *sqlexpr.Binary:
		return b.binary(x)
	case *sqlexpr.IsNull:
		if x.Not {
			return b.column(x.X).IsNotNull()
		}
		return b.column(x.X).IsNull()
	case *sqlexpr.In:
		list := b.columns(x.List)
		values := make([]any, len(list))
		for i, c := range list {
			values[i] = c
		}
		return negate(b.column(x.X).IsIn(values...), x.Not)
	case *sqlexpr.Like:
		v, pat := b.column(x.X), b.column(x.Pattern)
		if x.Regex {
			return negate(call("rlike", "RLIKE("+v.name+", "+pat.name+")", v, pat), x.Not)
		}
		args := []Column{v, pat}
		if x.Escape != "" {
			args = append(args, Lit(x.Escape))
		}
		return negate(call("like", v.name+" LIKE "+pat.name, args...), x.Not)
	case *sqlexpr.Between:
		v, lo, hi := b.column(x.X), b.column(x.Lo), b.column(x.Hi)
		return negate(v.Ge(lo).And(v.Le(hi)), x.Not)
	case *sqlexpr.Case:
		return b.caseWhen(x)
	case *sqlexpr.Cast:
		return b.column(x.X).Cast(x.To)
	case *sqlexpr.Call:
		return b.call(x)
	case *sqlexpr.Index:
		v, i := b.column(x.X), b.column(x.I)
		return call("get_item", v.name+"["+i.name+"]", v, i)
	}
	return b.fail(n, fmt.Sprintf("%T is not supported", n))
}

func negate(c Column, not bool) Column {
	if not {
		return Not(c)
	}
	return c
}

func (b *sqlBuilder) binary(x *sqlexpr.Binary) Column {
	l, r := b.column(x.L), b.column(x.R)
	switch x.Op {
	case "AND":
		return l.And(r)
	case "OR":
		return l.Or(r)
	case "||":
		return call("concat", "concat("+l.name+", "+r.name+")", l, r)
	}
	return l.binary(x.Op, r) // + - * / % and the comparisons: the Call's name is the operator
}

func (b *sqlBuilder) caseWhen(x *sqlexpr.Case) Column {
	var operand Column
	if x.Operand != nil {
		operand = b.column(x.Operand)
	}
	var c Column
	for i, w := range x.Whens {
		cond, then := b.column(w), b.column(x.Then[i])
		if x.Operand != nil {
			cond = operand.Eq(cond)
		}
		if i == 0 {
			c = When(cond, then)
		} else {
			c = c.When(cond, then)
		}
	}
	if x.Else != nil {
		c = c.Otherwise(b.column(x.Else))
	}
	return c
}

// aggregates are Spark's aggregate functions: they belong in GroupBy().Agg.
var aggregates = map[string]bool{
	"count": true, "sum": true, "min": true, "max": true, "avg": true, "mean": true, "first": true,
	"last": true, "collect_list": true, "collect_set": true, "count_distinct": true,
	"approx_count_distinct": true, "stddev": true, "variance": true, "any_value": true,
}

func (b *sqlBuilder) call(x *sqlexpr.Call) Column {
	name := strings.ToLower(x.Name)
	if aggregates[name] {
		return b.fail(x, "aggregate function "+name+" is not supported in an expression (use GroupBy(...).Agg(engine."+strings.ToUpper(name[:1])+name[1:]+"(...)))")
	}
	args := b.columns(x.Args)
	arity := func(n int) bool {
		if len(args) != n {
			b.fail(x, fmt.Sprintf("%s takes %d argument(s), got %d", name, n, len(args)))
			return false
		}
		return true
	}
	switch name {
	case "explode":
		if arity(1) {
			return Explode(args[0])
		}
	case "split":
		if p, ok := x.Args[len(x.Args)-1].(*sqlexpr.Literal); ok && len(args) == 2 {
			if s, ok := p.Value.(string); ok {
				return Split(args[0], s)
			}
		}
	case "coalesce":
		return Coalesce(args...)
	case "nvl", "ifnull":
		if arity(2) {
			return Coalesce(args...)
		}
	case "if":
		if arity(3) {
			return When(args[0], args[1]).Otherwise(args[2])
		}
	case "isnull":
		if arity(1) {
			return args[0].IsNull()
		}
	case "isnotnull":
		if arity(1) {
			return args[0].IsNotNull()
		}
	case "not":
		if arity(1) {
			return Not(args[0])
		}
	case "mod":
		if arity(2) {
			return args[0].Mod(args[1])
		}
	case "equal_null":
		if arity(2) {
			return args[0].EqNullSafe(args[1])
		}
	case "nullif":
		if arity(2) {
			return When(args[0].Eq(args[1]), Lit(nil)).Otherwise(args[0])
		}
	case "nvl2":
		if arity(3) {
			return When(args[0].IsNotNull(), args[1]).Otherwise(args[2])
		}
	}
	if b.err != nil {
		return Lit(nil)
	}
	// Any other function is resolved by name when the plan is analysed:
	// a built-in, else a registered Go function.
	return call(x.Name, name+"("+names(args)+")", args...)
}
