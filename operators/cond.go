package operators

import (
	"fmt"

	"github.com/gostream/gostream/proto/planpb"
)

// Conditionals and sets, with Spark's null rules:
//
//	when(c1, v1, c2, v2, ..., [else])  CASE WHEN: the value of the first true
//	                                   condition (null counts as false), else
//	                                   the else value, else null
//	coalesce(x, ...)                   the first non-null argument
//	in(x, v1, ...)                     x IN (v1, ...): null for a null x, or
//	                                   for no match when a v is null
//	<=>(a, b)                          null-safe equality: never null
//
// The values of when and coalesce, and the operands of in, are coerced to
// their wider common type as Spark does (numbers widen to bigint, then
// double; a string with a number or timestamp makes a string). The operands
// of comparisons and <=> are coerced as in Spark's binary comparisons (a
// string against another type is cast to that type).

var condFuncs = map[string]compileFunc{
	"when":     func(cs *callSite) (Expr, error) { return compileWhen(cs.args) },
	"coalesce": func(cs *callSite) (Expr, error) { return compileCoalesce(cs.args) },
	"in":       func(cs *callSite) (Expr, error) { return compileIn(cs.args) },
	"<=>":      compileEqNullSafe,
}

func compileEqNullSafe(cs *callSite) (Expr, error) {
	if err := cs.arity(2, 2); err != nil {
		return nil, err
	}
	l, r, err := coerceComparison("<=>", cs.args[0], cs.args[1])
	if err != nil {
		return nil, err
	}
	return &eqNullSafe{l: l, r: r}, nil
}

func isNullLiteral(x Expr) bool {
	l, ok := x.(*literalExpr)
	return ok && l.v.Kind == KindNull
}

// widerType is Spark's wider common type of a and b (findWiderTypeForTwo
// with string promotion); ok is false when there is none.
func widerType(a, b planpb.DataType) (t planpb.DataType, ok bool) {
	switch {
	case a == b:
		return a, true
	case isNumeric(a) && isNumeric(b):
		if a == planpb.DataType_DOUBLE || b == planpb.DataType_DOUBLE {
			return planpb.DataType_DOUBLE, true
		}
		return planpb.DataType_LONG, true
	case a == planpb.DataType_STRING && promotesToString(b), b == planpb.DataType_STRING && promotesToString(a):
		return planpb.DataType_STRING, true
	}
	return 0, false
}

func promotesToString(t planpb.DataType) bool {
	return isNumeric(t) || t == planpb.DataType_TIMESTAMP
}

// coerce casts each of xs to their wider common type; a null literal takes
// that type. fn names the function in the error.
func coerce(fn string, xs []Expr) ([]Expr, planpb.DataType, error) {
	t, found := planpb.DataType_STRING, false // all null: a null string, as Lit(nil)
	for _, x := range xs {
		if isNullLiteral(x) {
			continue
		}
		if !found {
			t, found = x.Type(), true
			continue
		}
		w, ok := widerType(t, x.Type())
		if !ok {
			return nil, 0, fmt.Errorf("%w: %s cannot mix %s and %s (cast one of them: CAST(x AS %s))", ErrType, fn, TypeName(t), TypeName(x.Type()), TypeName(t))
		}
		t = w
	}
	out := make([]Expr, len(xs))
	for i, x := range xs {
		c, err := castTo(x, t)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", fn, err)
		}
		out[i] = c
	}
	return out, t, nil
}

// castTo is x as type t: x itself when it has that representation already.
func castTo(x Expr, t planpb.DataType) (Expr, error) {
	switch {
	case isNullLiteral(x):
		return &literalExpr{Null, t}, nil
	case x.Type() == t, kindOf(x.Type()) == kindOf(t) && isNumeric(t):
		return x, nil
	}
	return newCast(x, t)
}

// coerceComparison casts l and r to the type Spark compares them in: a
// string against another type is cast to that type; numbers compare
// numerically as they are. Other pairs of different types are refused.
func coerceComparison(op string, l, r Expr) (Expr, Expr, error) {
	lt, rt := l.Type(), r.Type()
	switch {
	case isNullLiteral(l) || isNullLiteral(r) || lt == rt || isNumeric(lt) && isNumeric(rt),
		lt == planpb.DataType_STRING && rt == planpb.DataType_BINARY,
		lt == planpb.DataType_BINARY && rt == planpb.DataType_STRING:
		return l, r, nil
	case lt == planpb.DataType_STRING:
		c, err := newCast(l, rt)
		return c, r, err
	case rt == planpb.DataType_STRING:
		c, err := newCast(r, lt)
		return l, c, err
	}
	return nil, nil, fmt.Errorf("%w: cannot compare %s %s %s (cast one side: CAST(x AS %s))", ErrType, TypeName(lt), op, TypeName(rt), TypeName(lt))
}

type when struct {
	conds, vals []Expr
	els         Expr // nil: null
	t           planpb.DataType
}

func compileWhen(args []Expr) (Expr, error) {
	if len(args) < 2 {
		return nil, fmt.Errorf("%w: CASE WHEN needs a condition and a value, got %d arguments", ErrType, len(args))
	}
	w := &when{}
	pairs := len(args) / 2
	vals := make([]Expr, 0, pairs+1)
	for i := 0; i < pairs; i++ {
		c := args[2*i]
		if t := c.Type(); t != planpb.DataType_BOOLEAN && !isNullLiteral(c) {
			return nil, fmt.Errorf("%w: a WHEN condition must be boolean, got %s", ErrType, TypeName(t))
		}
		w.conds = append(w.conds, c)
		vals = append(vals, args[2*i+1])
	}
	if len(args)%2 == 1 {
		vals = append(vals, args[len(args)-1])
	}
	vals, t, err := coerce("CASE WHEN", vals)
	if err != nil {
		return nil, err
	}
	w.t, w.vals = t, vals[:pairs]
	if len(vals) > pairs {
		w.els = vals[pairs]
	}
	return w, nil
}

func (w *when) Type() planpb.DataType { return w.t }

func (w *when) Eval(row Row) Value {
	for i, c := range w.conds {
		if v := c.Eval(row); v.Kind == KindBool && v.I == 1 {
			return w.vals[i].Eval(row)
		}
	}
	if w.els == nil {
		return Null
	}
	return w.els.Eval(row)
}

type coalesceExpr struct {
	xs []Expr
	t  planpb.DataType
}

func compileCoalesce(args []Expr) (Expr, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: coalesce takes at least 1 argument, got 0", ErrType)
	}
	xs, t, err := coerce("coalesce", args)
	if err != nil {
		return nil, err
	}
	return &coalesceExpr{xs: xs, t: t}, nil
}

func (c *coalesceExpr) Type() planpb.DataType { return c.t }

func (c *coalesceExpr) Eval(row Row) Value {
	for _, x := range c.xs {
		if v := x.Eval(row); v.Kind != KindNull {
			return v
		}
	}
	return Null
}

type inExpr struct {
	x    Expr
	list []Expr
}

func compileIn(args []Expr) (Expr, error) {
	if len(args) < 2 {
		return nil, fmt.Errorf("%w: IN needs a value and at least one candidate, got %d arguments", ErrType, len(args))
	}
	xs, _, err := coerce("IN", args)
	if err != nil {
		return nil, err
	}
	return &inExpr{x: xs[0], list: xs[1:]}, nil
}

func (in *inExpr) Type() planpb.DataType { return planpb.DataType_BOOLEAN }

func (in *inExpr) Eval(row Row) Value {
	x := in.x.Eval(row)
	if x.Kind == KindNull {
		return Null
	}
	sawNull := false
	for _, e := range in.list {
		v := e.Eval(row)
		if v.Kind == KindNull {
			sawNull = true
			continue
		}
		if compareRefs(&x, &v) == 0 {
			return Bool(true)
		}
	}
	if sawNull {
		return Null
	}
	return Bool(false)
}

type eqNullSafe struct{ l, r Expr }

func (e *eqNullSafe) Type() planpb.DataType { return planpb.DataType_BOOLEAN }

func (e *eqNullSafe) Eval(row Row) Value {
	l, r := e.l.Eval(row), e.r.Eval(row)
	if l.Kind == KindNull || r.Kind == KindNull {
		return Bool(l.Kind == r.Kind)
	}
	return Bool(compareRefs(&l, &r) == 0)
}

// arithOperands converts, in place, the operands of arithmetic as Spark
// does: a null literal is a null number, a string is cast to a double ('1'
// + 1 is 2.0).
func arithOperands(args []Expr) error {
	for i, a := range args {
		switch {
		case isNullLiteral(a):
			args[i] = nullOf(planpb.DataType_LONG)
		case a.Type() == planpb.DataType_STRING:
			c, err := newCast(a, planpb.DataType_DOUBLE)
			if err != nil {
				return err
			}
			args[i] = c
		}
	}
	return nil
}
