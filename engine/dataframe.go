package engine

import (
	"fmt"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// DataFrame is a streaming table: a logical plan and its schema. Methods
// return new DataFrames; a DataFrame is immutable and safe to share.
type DataFrame struct {
	s      *Session
	plan   *planpb.Plan
	schema operators.Schema
	agg    bool
	err    error
}

// Err is the first error in building this DataFrame, if any.
func (df *DataFrame) Err() error { return df.err }

// Columns are the column names.
func (df *DataFrame) Columns() []string { return df.schema.Names() }

// Plan is the logical plan, as shipped to workers.
func (df *DataFrame) Plan() *planpb.Plan { return df.plan }

func (df *DataFrame) derive(p *planpb.Plan, aggregated bool) *DataFrame {
	if df.err != nil {
		return df
	}
	if df.agg {
		return df.s.failed(fmt.Errorf("%w: operators after an aggregation are not supported on a stream yet", ErrAnalysis))
	}
	df.s.zoned(p)
	schema, err := schemaOf(p)
	if err != nil {
		return df.s.failed(fmt.Errorf("%w: %w", ErrAnalysis, err))
	}
	return &DataFrame{s: df.s, plan: p, schema: schema, agg: aggregated}
}

// schemaOf compiles the plan to check it and find its output schema.
func schemaOf(p *planpb.Plan) (operators.Schema, error) {
	if a := p.GetAggregate(); a != nil {
		g, err := operators.CompileAggregate(a)
		if err != nil {
			return nil, err
		}
		return g.Schema(), nil
	}
	if d := p.GetDropDuplicates(); d != nil {
		x, err := operators.CompileDropDuplicates(d)
		if err != nil {
			return nil, err
		}
		return x.Schema(), nil
	}
	n, err := operators.CompileNarrow(p)
	if err != nil {
		return nil, err
	}
	return n.Schema(), nil
}

func named(c Column) *planpb.NamedExpr { return &planpb.NamedExpr{Expr: c.expr, Name: c.name} }

// Select projects columns. At most one of them may be Explode(...), as in
// Spark; the exploded column comes out where it stands in the list.
func (df *DataFrame) Select(cols ...Column) *DataFrame {
	if df.err != nil {
		return df
	}
	if err := columnsErr(cols); err != nil {
		return df.s.failed(fmt.Errorf("%w: %w", ErrAnalysis, err))
	}
	gen := -1
	for i, c := range cols {
		if c.generator {
			if gen >= 0 {
				return df.s.failed(fmt.Errorf("%w: only one Explode per Select", ErrAnalysis))
			}
			gen = i
		}
	}
	if gen < 0 {
		pr := &planpb.Project{Input: df.plan}
		for _, c := range cols {
			pr.Exprs = append(pr.Exprs, named(c))
		}
		return df.derive(&planpb.Plan{Node: &planpb.Plan_Project{Project: pr}}, false)
	}
	ex := &planpb.Explode{Input: df.plan, Generator: cols[gen].expr, Output: cols[gen].name}
	for i, c := range cols {
		if i != gen {
			ex.Keep = append(ex.Keep, named(c))
		}
	}
	out := df.derive(&planpb.Plan{Node: &planpb.Plan_Explode{Explode: ex}}, false)
	if gen == len(cols)-1 || out.err != nil {
		return out
	}
	// Restore the caller's column order: explode emits kept columns first.
	order := make([]Column, 0, len(cols))
	for i, c := range cols {
		if i == gen {
			order = append(order, Col(ex.Output))
		} else {
			order = append(order, Col(c.name))
		}
	}
	return out.Select(order...)
}

// Filter keeps the rows where cond is true (Spark's filter / where): cond
// is a boolean Column or a Spark SQL condition string, as in
// Filter("level = 'ERROR' AND status >= 500"). A row whose condition is
// null is dropped.
func (df *DataFrame) Filter(cond any) *DataFrame {
	if df.err != nil {
		return df
	}
	var c Column
	switch x := cond.(type) {
	case Column:
		c = x
	case string:
		c = parseExpr("filter", x)
	default:
		return df.s.failed(fmt.Errorf("%w: Filter takes a Column or a SQL condition string, not %T", ErrAnalysis, cond))
	}
	if c.err != nil {
		return df.s.failed(fmt.Errorf("%w: %w", ErrAnalysis, c.err))
	}
	return df.derive(&planpb.Plan{Node: &planpb.Plan_Filter{Filter: &planpb.Filter{Input: df.plan, Condition: c.expr}}}, false)
}

// Where is Filter.
func (df *DataFrame) Where(cond any) *DataFrame { return df.Filter(cond) }

// WithColumn adds (or replaces) a column.
func (df *DataFrame) WithColumn(name string, c Column) *DataFrame {
	if df.err != nil {
		return df
	}
	cols := make([]Column, 0, len(df.schema)+1)
	replaced := false
	for _, f := range df.schema {
		if f.Name == name {
			cols, replaced = append(cols, c.As(name)), true
		} else {
			cols = append(cols, Col(f.Name))
		}
	}
	if !replaced {
		cols = append(cols, c.As(name))
	}
	return df.Select(cols...)
}

// DropDuplicates keeps each row whose values in the named columns (all
// columns when none are named) no earlier row of the stream had, as Spark's
// dropDuplicates on a stream without a watermark: nulls equal nulls, the
// first row of a key in a batch is kept, and the keys seen are kept in the
// query's state store (in the checkpoint, on disk past the memory budget)
// for the life of the query. It runs in append or update mode and must be
// the query's last operator for now.
func (df *DataFrame) DropDuplicates(cols ...string) *DataFrame {
	return df.derive(&planpb.Plan{Node: &planpb.Plan_DropDuplicates{DropDuplicates: &planpb.DropDuplicates{Input: df.plan, Columns: cols}}}, false)
}

// GroupBy groups by the columns for an aggregation.
func (df *DataFrame) GroupBy(cols ...Column) *GroupedData { return &GroupedData{df: df, keys: cols} }

// GroupedData is a DataFrame grouped by keys, waiting for its aggregates.
type GroupedData struct {
	df   *DataFrame
	keys []Column
}

// Count counts rows per group into a column named "count".
func (g *GroupedData) Count() *DataFrame { return g.Agg(CountAll()) }

// Agg computes the aggregates per group; the result has the group columns
// then one column per aggregate.
func (g *GroupedData) Agg(aggs ...Agg) *DataFrame {
	df := g.df
	if df.err != nil {
		return df
	}
	if err := columnsErr(g.keys); err != nil {
		return df.s.failed(fmt.Errorf("%w: %w", ErrAnalysis, err))
	}
	a := &planpb.Aggregate{Input: df.plan}
	for _, k := range g.keys {
		a.GroupBy = append(a.GroupBy, named(k))
	}
	for _, x := range aggs {
		if x.err != nil {
			return df.s.failed(fmt.Errorf("%w: %w", ErrAnalysis, x.err))
		}
		a.Aggregates = append(a.Aggregates, &planpb.AggregateExpr{Function: x.fn, Arg: x.arg, Name: x.name})
	}
	return df.derive(&planpb.Plan{Node: &planpb.Plan_Aggregate{Aggregate: a}}, true)
}
