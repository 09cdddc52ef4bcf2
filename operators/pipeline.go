package operators

import (
	"fmt"
	"strings"
	"time"

	"github.com/gostream/gostream/proto/planpb"
)

// Emit receives one row. The row is borrowed: it is valid only during the
// call (Row.Clone keeps it).
type Emit func(Row) error

// Narrow is a compiled chain of narrow operators (project, filter, explode)
// above a Kafka scan: the part of a plan that runs inside one map task.
type Narrow struct {
	scan   *planpb.KafkaScan
	stages []*planpb.Plan // bottom-up, scan excluded
	schema Schema
	clock  BatchClock
}

// CompileNarrow checks a chain of narrow operators ending in a Kafka scan.
func CompileNarrow(p *planpb.Plan) (*Narrow, error) {
	var stages []*planpb.Plan
	for {
		switch n := p.GetNode().(type) {
		case *planpb.Plan_KafkaScan:
			for i, j := 0, len(stages)-1; i < j; i, j = i+1, j-1 {
				stages[i], stages[j] = stages[j], stages[i]
			}
			nw := &Narrow{scan: n.KafkaScan, stages: stages}
			_, schema, err := nw.build(func(Row) error { return nil })
			if err != nil {
				return nil, err
			}
			nw.schema = schema
			return nw, nil
		case *planpb.Plan_Project:
			stages, p = append(stages, p), n.Project.GetInput()
		case *planpb.Plan_Filter:
			stages, p = append(stages, p), n.Filter.GetInput()
		case *planpb.Plan_Explode:
			stages, p = append(stages, p), n.Explode.GetInput()
		case *planpb.Plan_Aggregate:
			return nil, fmt.Errorf("%w: only one aggregation per query is supported (Spark's rule for streaming queries without watermarks)", ErrType)
		case *planpb.Plan_DropDuplicates:
			return nil, fmt.Errorf("%w: dropDuplicates must be a query's last operator for now", ErrType)
		default:
			return nil, fmt.Errorf("%w: plan node %T has no input scan", ErrType, n)
		}
	}
}

// Scan is the Kafka scan at the bottom of the chain.
func (n *Narrow) Scan() *planpb.KafkaScan { return n.scan }

// Schema is the schema of the rows the chain emits.
func (n *Narrow) Schema() Schema { return n.schema }

// Clock is the batch clock of every instance of the chain (New).
func (n *Narrow) Clock() *BatchClock { return &n.clock }

// env is the environment the chain's expressions compile in.
func (n *Narrow) env() *exprEnv { return &exprEnv{clock: &n.clock, zone: time.UTC} }

// New compiles a fresh instance of the chain feeding out and returns its
// entry, which takes rows of the Kafka schema. Each task needs its own
// instance.
func (n *Narrow) New(out Emit) (Emit, error) {
	emit, _, err := n.build(out)
	return emit, err
}

func (n *Narrow) build(out Emit) (Emit, Schema, error) {
	wrap, schema, err := compileStages(n.stages, KafkaSchema(n.scan.GetIncludeHeaders()), n.env())
	if err != nil {
		return nil, nil, err
	}
	return wrap(out), schema, nil
}

// pieceSink receives the elements of exploded splits, a row's at a time.
// The elements are valid only during the call.
type pieceSink interface {
	addAll(pieces [][]byte)
	// addSplit takes str split on sep, an ASCII byte, without a limit, up
	// to rest, where invalid UTF-8 begins (-1: all of str was taken).
	addSplit(str []byte, sep byte) (rest int)
}

// pieceEntries are the entries of a chain compiled by newPieces.
type pieceEntries struct {
	// row takes rows of the Kafka schema.
	row Emit
	// value, when not nil, takes a record's value (nil for a tombstone)
	// instead of its row: the split's input is CAST(value AS STRING)
	// through projections only, so the other columns are never needed.
	value func(value []byte)
}

// newPieces compiles a fresh instance of a chain whose last stage explodes
// a split, or whose last stages are such an explode and filters of the
// exploded column alone: its entries hand each input's elements (those the
// filters keep) to sink instead of emitting a row per element (the other
// columns of those rows are never computed). ok is false for any other
// chain.
func (n *Narrow) newPieces(sink pieceSink) (entries pieceEntries, ok bool, err error) {
	xi := len(n.stages) - 1 // the explode
	for xi >= 0 && n.stages[xi].GetFilter() != nil {
		xi--
	}
	if xi < 0 || n.stages[xi].GetExplode() == nil {
		return pieceEntries{}, false, nil
	}
	x := n.stages[xi].GetExplode()
	wrap, schema, err := compileStages(n.stages[:xi], KafkaSchema(n.scan.GetIncludeHeaders()), n.env())
	if err != nil {
		return pieceEntries{}, false, err
	}
	gen, err := compileExpr(x.GetGenerator(), schema, n.env())
	if err != nil {
		return pieceEntries{}, false, err
	}
	sp, ok := gen.(*splitExpr)
	if !ok {
		return pieceEntries{}, false, nil
	}
	keep, ok := n.pieceFilter(x, n.stages[xi+1:])
	if !ok {
		return pieceEntries{}, false, nil
	}
	var buf [][]byte
	add := func(p []byte) { buf = append(buf, p) }
	if keep != nil {
		add = func(p []byte) {
			if keep(p) {
				buf = append(buf, p)
			}
		}
	}
	sep, oneByte := sp.sp.byteSep()
	split := func(str []byte, null bool) {
		switch {
		case null: // split(null) is null: explode emits nothing
		case oneByte && keep == nil:
			if rest := sink.addSplit(str, sep); rest >= 0 {
				buf = buf[:0]
				sp.sp.Each(str[rest:], add)
				sink.addAll(buf)
			}
		default:
			buf = buf[:0]
			sp.sp.Each(str, add)
			sink.addAll(buf)
		}
	}
	entries.row = wrap(func(r Row) error {
		v := sp.x.Eval(r)
		split(v.B, v.Kind == KindNull)
		return nil
	})
	if args := unzoned(x.GetGenerator()).GetCall().GetArgs(); len(args) > 0 && n.valueKind(args[0], xi) == stringValue {
		entries.value = func(value []byte) { split(value, value == nil) }
	}
	return entries, true, nil
}

// pieceFilter compiles filters, which follow the explode x, into a test of
// one exploded element (nil: no filters). ok is false when a condition
// refers to another column than the exploded one, or fails to compile (the
// row-at-a-time chain then runs it, or reports its error).
func (n *Narrow) pieceFilter(x *planpb.Explode, filters []*planpb.Plan) (keep func([]byte) bool, ok bool) {
	if len(filters) == 0 {
		return nil, true
	}
	for _, k := range x.GetKeep() {
		if strings.EqualFold(k.GetName(), x.GetOutput()) {
			return nil, false // a condition on that name means the kept column
		}
	}
	elem := Schema{{Name: x.GetOutput(), Type: planpb.DataType_STRING, Nullable: true}}
	tests := make([]func(*Value) bool, len(filters))
	for i, f := range filters {
		c, err := compileExpr(f.GetFilter().GetCondition(), elem, n.env())
		if err != nil || c.Type() != planpb.DataType_BOOLEAN {
			return nil, false
		}
		if cc, ok := c.(*compareColumn); ok { // word != '' and the like: no Eval call
			tests[i] = func(v *Value) bool { holds, _ := cc.test(v); return holds }
			continue
		}
		row := make(Row, 1)
		tests[i] = func(v *Value) bool {
			row[0] = *v
			r := c.Eval(row)
			return r.Kind == KindBool && r.I == 1
		}
	}
	var v Value // outside the closure: a pointer to it passed to tests would make a local escape
	return func(p []byte) bool {
		v = String(p)
		for _, t := range tests {
			if !t(&v) {
				return false
			}
		}
		return true
	}, true
}

// unzoned is e without its with_time_zone wrapper, if any.
func unzoned(e *planpb.Expr) *planpb.Expr {
	if c := e.GetCall(); c.GetFunction() == WithTimeZone && len(c.GetArgs()) == 2 {
		return c.GetArgs()[1]
	}
	return e
}

// What an expression is in terms of the Kafka record's value.
const (
	notValue    = iota
	rawValue    // the value column itself
	stringValue // CAST(value AS STRING): the same bytes, as a string
)

// valueKind tells what e, over the output of the first k stages, is in
// terms of the record's value, following column references through
// projections (as CompileExpr resolves them: the first column of that name,
// ignoring case).
func (n *Narrow) valueKind(e *planpb.Expr, k int) int {
	switch x := e.GetKind().(type) {
	case *planpb.Expr_Column:
		if k == 0 { // the Kafka schema, which has one column named value
			if strings.EqualFold(x.Column, "value") {
				return rawValue
			}
			return notValue
		}
		p := n.stages[k-1].GetProject()
		if p == nil {
			return notValue
		}
		for _, ne := range p.GetExprs() {
			if strings.EqualFold(ne.GetName(), x.Column) {
				return n.valueKind(ne.GetExpr(), k-1)
			}
		}
	case *planpb.Expr_Cast:
		if x.Cast.GetTo() == planpb.DataType_STRING && n.valueKind(x.Cast.GetExpr(), k) != notValue {
			return stringValue
		}
	case *planpb.Expr_Call:
		if args := x.Call.GetArgs(); x.Call.GetFunction() == WithTimeZone && len(args) == 2 {
			return n.valueKind(args[1], k) // a session time zone changes no bytes
		}
	}
	return notValue
}

// compileStages compiles stages over rows of schema in into one wrapper
// that puts them in front of an Emit, and returns the output schema.
func compileStages(stages []*planpb.Plan, in Schema, env *exprEnv) (func(Emit) Emit, Schema, error) {
	wraps := make([]func(Emit) Emit, 0, len(stages))
	for _, st := range stages {
		wrap, next, err := compileStage(st, in, env)
		if err != nil {
			return nil, nil, err
		}
		wraps, in = append(wraps, wrap), next
	}
	return func(emit Emit) Emit {
		for i := len(wraps) - 1; i >= 0; i-- {
			emit = wraps[i](emit)
		}
		return emit
	}, in, nil
}

func compileStage(p *planpb.Plan, in Schema, env *exprEnv) (func(Emit) Emit, Schema, error) {
	switch n := p.GetNode().(type) {
	case *planpb.Plan_Project:
		exprs, out, err := compileNamed(n.Project.GetExprs(), in, env)
		if err != nil {
			return nil, nil, err
		}
		return func(next Emit) Emit {
			row := make(Row, len(exprs))
			return func(r Row) error {
				for i, e := range exprs {
					row[i] = e.Eval(r)
				}
				return next(row)
			}
		}, out, nil
	case *planpb.Plan_Filter:
		cond, err := compileExpr(n.Filter.GetCondition(), in, env)
		if err != nil {
			return nil, nil, err
		}
		if cond.Type() != planpb.DataType_BOOLEAN {
			return nil, nil, fmt.Errorf("%w: filter condition is %s, not boolean", ErrType, TypeName(cond.Type()))
		}
		return func(next Emit) Emit {
			return func(r Row) error {
				if v := cond.Eval(r); v.Kind == KindBool && v.I == 1 {
					return next(r)
				}
				return nil
			}
		}, in, nil
	case *planpb.Plan_Explode:
		return compileExplode(n.Explode, in, env)
	}
	return nil, nil, fmt.Errorf("%w: %T is not a narrow operator", ErrType, p.GetNode())
}

func compileNamed(named []*planpb.NamedExpr, in Schema, env *exprEnv) ([]Expr, Schema, error) {
	exprs := make([]Expr, len(named))
	out := make(Schema, len(named))
	for i, ne := range named {
		e, err := compileExpr(ne.GetExpr(), in, env)
		if err != nil {
			return nil, nil, fmt.Errorf("column %q: %w", ne.GetName(), err)
		}
		exprs[i] = e
		out[i] = Field{Name: ne.GetName(), Type: e.Type(), Nullable: true, Fields: fieldsOf(e)}
	}
	return exprs, out, nil
}

func compileExplode(x *planpb.Explode, in Schema, env *exprEnv) (func(Emit) Emit, Schema, error) {
	keep, out, err := compileNamed(x.GetKeep(), in, env)
	if err != nil {
		return nil, nil, err
	}
	gen, err := compileExpr(x.GetGenerator(), in, env)
	if err != nil {
		return nil, nil, err
	}
	elem := planpb.DataType_STRING
	switch gen.Type() {
	case planpb.DataType_ARRAY_STRING:
	case planpb.DataType_HEADERS:
		elem = planpb.DataType_HEADERS // each element is a struct(key, value)
	default:
		return nil, nil, fmt.Errorf("%w: explode needs an array, got %s", ErrType, TypeName(gen.Type()))
	}
	out = append(out, Field{Name: x.GetOutput(), Type: elem, Nullable: true})
	return func(next Emit) Emit {
		e := &exploder{keep: keep, next: next, row: make(Row, len(keep)+1)}
		if sp, ok := gen.(*splitExpr); ok {
			e.split = sp
			e.piece = e.emitPiece
		} else {
			e.gen = gen
		}
		return e.push
	}, out, nil
}

// exploder emits one row per array element. When the generator is split, it
// walks the pieces directly instead of building the array.
type exploder struct {
	keep  []Expr
	gen   Expr
	split *splitExpr
	piece func([]byte) // e.emitPiece, bound once so pushing allocates nothing
	next  Emit
	row   Row
	err   error
}

func (e *exploder) push(in Row) error {
	for i, k := range e.keep {
		e.row[i] = k.Eval(in)
	}
	if e.split != nil {
		e.err = nil
		e.split.each(in, e.piece)
		return e.err
	}
	arr := e.gen.Eval(in)
	for _, v := range arr.A {
		e.row[len(e.keep)] = v
		if err := e.next(e.row); err != nil {
			return err
		}
	}
	return nil
}

func (e *exploder) emitPiece(p []byte) {
	if e.err != nil {
		return
	}
	e.row[len(e.keep)] = String(p)
	e.err = e.next(e.row)
}
