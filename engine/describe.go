package engine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gostream/gostream/proto/planpb"
)

// describePlan says in words what a plan does, one step per node from the
// source on, the way a user wrote it: "read topic logs",
// "select CAST(value AS STRING) AS value", "explode(split(value, ' ')) AS word",
// "group by word: count(*) AS count". A checkpoint keeps it to say what
// differs when another query is started on it. Options a user may change
// between runs (brokers, rates, starting offsets) are left out, as from
// fingerprint.
func describePlan(p *planpb.Plan) []string {
	var steps []string
	for n := p; n != nil; {
		switch x := n.GetNode().(type) {
		case *planpb.Plan_KafkaScan:
			s := x.KafkaScan
			step := "read topic " + strings.Join(s.Subscribe, ", ")
			if len(s.Subscribe) != 1 {
				step = "read topics " + strings.Join(s.Subscribe, ", ")
			}
			if s.IncludeHeaders {
				step += " with headers"
			}
			steps, n = append(steps, step), nil
		case *planpb.Plan_Project:
			steps, n = append(steps, "select "+namedExprs(x.Project.Exprs)), x.Project.Input
		case *planpb.Plan_Filter:
			steps, n = append(steps, "where "+describeExpr(x.Filter.Condition)), x.Filter.Input
		case *planpb.Plan_Explode:
			e := x.Explode
			step := "explode(" + describeExpr(e.Generator) + ") AS " + e.Output
			if len(e.Keep) > 0 {
				step += " keeping " + namedExprs(e.Keep)
			}
			steps, n = append(steps, step), e.Input
		case *planpb.Plan_Aggregate:
			a := x.Aggregate
			aggs := make([]string, len(a.Aggregates))
			for i, ag := range a.Aggregates {
				arg := "*"
				if ag.Arg != nil {
					arg = describeExpr(ag.Arg)
				}
				aggs[i] = fmt.Sprintf("%s(%s) AS %s", strings.ToLower(ag.Function.String()), arg, ag.Name)
			}
			steps, n = append(steps, "group by "+namedExprs(a.GroupBy)+": "+strings.Join(aggs, ", ")), a.Input
		case *planpb.Plan_DropDuplicates:
			d := x.DropDuplicates
			cols := "all columns"
			if len(d.Columns) > 0 {
				cols = strings.Join(d.Columns, ", ")
			}
			steps, n = append(steps, "drop duplicates of "+cols), d.Input
		default:
			steps, n = append(steps, fmt.Sprintf("unknown step %T", x)), nil
		}
	}
	slices.Reverse(steps)
	return steps
}

func namedExprs(es []*planpb.NamedExpr) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = describeExpr(e.Expr)
		if e.Name != parts[i] {
			parts[i] += " AS " + e.Name
		}
	}
	return strings.Join(parts, ", ")
}

// infix are the functions written between their two arguments.
var infix = map[string]bool{"=": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true,
	"and": true, "or": true, "+": true, "-": true, "*": true, "/": true}

func describeExpr(e *planpb.Expr) string {
	switch k := e.GetKind().(type) {
	case *planpb.Expr_Column:
		return k.Column
	case *planpb.Expr_Cast:
		return "CAST(" + describeExpr(k.Cast.Expr) + " AS " + k.Cast.To.String() + ")"
	case *planpb.Expr_Literal:
		switch v := k.Literal.GetValue().(type) {
		case *planpb.Literal_String_:
			return "'" + strings.ReplaceAll(v.String_, "'", "\\'") + "'"
		case *planpb.Literal_Long:
			return strconv.FormatInt(v.Long, 10)
		case *planpb.Literal_Double:
			return strconv.FormatFloat(v.Double, 'g', -1, 64)
		case *planpb.Literal_Boolean:
			return strconv.FormatBool(v.Boolean)
		}
		return "NULL"
	case *planpb.Expr_Call:
		fn, args := k.Call.Function, k.Call.Args
		if infix[fn] && len(args) == 2 {
			return "(" + describeExpr(args[0]) + " " + fn + " " + describeExpr(args[1]) + ")"
		}
		if fn == "udf" && len(args) > 0 && args[0].GetLiteral() != nil {
			fn, args = args[0].GetLiteral().GetString_(), args[1:]
		}
		parts := make([]string, len(args))
		for i, a := range args {
			parts[i] = describeExpr(a)
		}
		return fn + "(" + strings.Join(parts, ", ") + ")"
	}
	return "?"
}
