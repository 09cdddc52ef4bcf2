package engine

import (
	"fmt"
	"strings"

	"github.com/gostream/gostream/proto/planpb"
)

// When starts a conditional column, Spark's when(cond, value): value (a
// Column or a literal) where cond is true. Chain more cases with
// Column.When and end with Otherwise; rows no case matches (a null
// condition counts as false) are null without Otherwise. The values must
// have a common type (numbers widen to bigint, then double; a string with a
// number makes a string), as in Spark.
func When(cond Column, value any) Column {
	v := column(value)
	return call("when", "CASE WHEN "+cond.name+" THEN "+v.name+" END", cond, v)
}

// whenArgs returns the arguments of c when it is an open When chain.
func (c Column) whenArgs(method string) ([]*planpb.Expr, error) {
	w := c.expr.GetCall()
	switch {
	case c.err != nil:
		return nil, c.err
	case w.GetFunction() != "when":
		return nil, fmt.Errorf("%s applies to a Column made by engine.When, not to %s", method, c.name)
	case len(w.GetArgs())%2 == 1:
		return nil, fmt.Errorf("%s cannot follow Otherwise (in %s)", method, c.name)
	case !strings.HasSuffix(c.name, " END"):
		return nil, fmt.Errorf("%s cannot follow As (%s): call As last", method, c.name)
	}
	return w.GetArgs(), nil
}

// extend returns the When chain c with more arguments and its name with
// more text before END.
func (c Column) extend(method, text string, more ...Column) Column {
	args, err := c.whenArgs(method)
	if err != nil {
		return Column{name: c.name, err: err}
	}
	if err := columnsErr(more); err != nil {
		return Column{name: c.name, err: err}
	}
	w := &planpb.Call{Function: "when", Args: append([]*planpb.Expr(nil), args...)}
	for _, m := range more {
		w.Args = append(w.Args, m.expr)
	}
	return Column{expr: &planpb.Expr{Kind: &planpb.Expr_Call{Call: w}}, name: strings.TrimSuffix(c.name, " END") + text + " END"}
}

// When adds a case to a When chain: value where cond is true and no case
// before matched.
func (c Column) When(cond Column, value any) Column {
	v := column(value)
	return c.extend("When", " WHEN "+cond.name+" THEN "+v.name, cond, v)
}

// Otherwise ends a When chain: value where no case matched.
func (c Column) Otherwise(value any) Column {
	v := column(value)
	return c.extend("Otherwise", " ELSE "+v.name, v)
}

// Coalesce is the first non-null of cols, or null (Spark's coalesce). The
// columns must have a common type, as for When.
func Coalesce(cols ...Column) Column {
	if len(cols) == 0 {
		return Column{name: "coalesce()", err: fmt.Errorf("coalesce takes at least one column")}
	}
	return call("coalesce", "coalesce("+names(cols)+")", cols...)
}

// IsIn is true where c equals one of values (Columns or literals), Spark's
// isin / IN: null where c is null, and where no value matches but one of
// them is null.
func (c Column) IsIn(values ...any) Column {
	if len(values) == 0 {
		return Column{name: c.name, err: fmt.Errorf("IsIn needs at least one value (in %s)", c.name)}
	}
	args := []Column{c}
	for _, v := range values {
		args = append(args, column(v))
	}
	return call("in", "("+c.name+" IN ("+names(args[1:])+"))", args...)
}

// EqNullSafe is c <=> other: equality where null equals null and differs
// from any value, so it is never null.
func (c Column) EqNullSafe(other any) Column { return c.binary("<=>", other) }

// Mod is c % other, the remainder with the sign of c; null when other is 0.
func (c Column) Mod(other any) Column { return c.binary("%", other) }
