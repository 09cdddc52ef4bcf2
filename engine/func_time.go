package engine

import (
	"time"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// CurrentTimestamp is Spark's current_timestamp(): the batch's timestamp,
// the same for every row of a batch (and again when the batch is re-run).
func CurrentTimestamp() Column { return call("current_timestamp", "current_timestamp()") }

// ToTimestamp is Spark's to_timestamp(str, format): str parsed with a Spark
// datetime pattern such as "dd/MMM/yyyy:HH:mm:ss Z", in UTC unless the text
// has a zone; null if it does not parse. An empty format parses as
// CAST(str AS TIMESTAMP) does ("2026-12-05 14:00:00", "2026-12-05T14:00Z").
func ToTimestamp(c Column, format string) Column {
	if format == "" {
		return call("to_timestamp", "to_timestamp("+c.name+")", c)
	}
	return call("to_timestamp", "to_timestamp("+c.name+", "+format+")", c, Lit(format))
}

// DateFormat is Spark's date_format(ts, format): the timestamp formatted in
// UTC with a Spark datetime pattern such as "yyyy-MM-dd HH:mm".
func DateFormat(c Column, format string) Column {
	return call("date_format", "date_format("+c.name+", "+format+")", c, Lit(format))
}

// WithTimeZone sets the session time zone, Spark's
// spark.sql.session.timeZone (default UTC): a region such as
// "Europe/Paris", "UTC" or an offset such as "+01:00". Timestamps without a
// zone are read in it (to_timestamp, CAST, from_json), date_format, to_json
// and CAST to string write in it, and the console shows timestamps in it.
// The zone travels with the plan; an unknown one is an analysis error.
func WithTimeZone(name string) SessionOption { return func(s *Session) { s.timeZone = name } }

// zone is the session time zone for display (UTC when unset or unknown;
// an unknown zone fails the query's analysis).
func (s *Session) zone() *time.Location {
	if s.timeZone == "" {
		return time.UTC
	}
	if loc, ok := operators.TimeZone(s.timeZone); ok {
		return loc
	}
	return time.UTC
}

// zoned wraps the expressions of plan node p in the session time zone
// (with_time_zone), so that they carry it to wherever the plan runs. Plain
// column references, which do not depend on it, are left as they are.
func (s *Session) zoned(p *planpb.Plan) {
	if s.timeZone == "" {
		return
	}
	wrap := func(e **planpb.Expr) {
		if *e == nil || (*e).GetColumn() != "" {
			return
		}
		zone := &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: &planpb.Literal{
			Value: &planpb.Literal_String_{String_: s.timeZone}, Type: planpb.DataType_STRING}}}
		*e = &planpb.Expr{Kind: &planpb.Expr_Call{Call: &planpb.Call{Function: operators.WithTimeZone, Args: []*planpb.Expr{zone, *e}}}}
	}
	switch n := p.GetNode().(type) {
	case *planpb.Plan_Project:
		for _, ne := range n.Project.GetExprs() {
			wrap(&ne.Expr)
		}
	case *planpb.Plan_Filter:
		wrap(&n.Filter.Condition)
	case *planpb.Plan_Explode:
		for _, ne := range n.Explode.GetKeep() {
			wrap(&ne.Expr)
		}
		wrap(&n.Explode.Generator)
	case *planpb.Plan_Aggregate:
		for _, ne := range n.Aggregate.GetGroupBy() {
			wrap(&ne.Expr)
		}
		for _, a := range n.Aggregate.GetAggregates() {
			wrap(&a.Arg)
		}
	}
}
