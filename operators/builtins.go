package operators

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gostream/gostream/proto/planpb"
)

// callSite is a call of a built-in function being compiled: its name (lower
// case), the call, its compiled arguments and its environment (nil:
// current_timestamp is the time of compiling, the time zone UTC).
type callSite struct {
	name string
	call *planpb.Call
	args []Expr
	env  *exprEnv
}

// compileFunc compiles a call of one built-in function.
type compileFunc func(cs *callSite) (Expr, error)

// builtinTables hold the built-in functions by their Spark names, one table
// per family of functions.
var builtinTables = []map[string]compileFunc{stringFuncs, timeFuncs, condFuncs, jsonFuncs}

func builtin(name string) (compileFunc, bool) {
	for _, t := range builtinTables {
		if f, ok := t[name]; ok {
			return f, true
		}
	}
	return nil, false
}

// IsBuiltin reports whether name (in any case) is a built-in function,
// which a plan's call by that name reaches before any registered one.
func IsBuiltin(name string) bool {
	name = strings.ToLower(name)
	_, ok := builtin(name)
	// The names compileCall handles before builtinTables.
	return ok || slices.Contains([]string{"split", "and", "or", "not", "is_null", "is_not_null", "udf"}, name)
}

// builtinNames lists the functions of builtinTables, sorted.
func builtinNames() string {
	var names []string
	for _, t := range builtinTables {
		names = slices.AppendSeq(names, maps.Keys(t))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// arity checks that the call has between lo and hi arguments.
func (cs *callSite) arity(lo, hi int) error {
	if n := len(cs.args); n < lo || n > hi {
		want := fmt.Sprint(lo)
		if hi > lo {
			want = fmt.Sprintf("%d to %d", lo, hi)
		}
		return fmt.Errorf("%w: %s takes %s arguments, got %d", ErrType, cs.name, want, n)
	}
	return nil
}

// str returns argument i as a string or binary expression: numbers,
// booleans and timestamps are cast to string, as Spark casts them
// implicitly.
func (cs *callSite) str(i int) (Expr, error) {
	a := cs.args[i]
	switch t := a.Type(); t {
	case planpb.DataType_STRING, planpb.DataType_BINARY:
		return a, nil
	case planpb.DataType_LONG, planpb.DataType_INT, planpb.DataType_DOUBLE, planpb.DataType_BOOLEAN, planpb.DataType_TIMESTAMP:
		return cs.cast(a, planpb.DataType_STRING)
	default:
		return nil, fmt.Errorf("%w: %s's argument %d is %s, not a string", ErrType, cs.name, i+1, TypeName(t))
	}
}

// cast is newCast in the call's time zone.
func (cs *callSite) cast(x Expr, to planpb.DataType) (Expr, error) {
	return castIn(x, to, cs.env)
}

// strs is str for every argument from i on.
func (cs *callSite) strs(i int) ([]Expr, error) {
	out := make([]Expr, 0, len(cs.args)-i)
	for ; i < len(cs.args); i++ {
		a, err := cs.str(i)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// integer checks that argument i is an integer.
func (cs *callSite) integer(i int) (Expr, error) {
	a := cs.args[i]
	if t := a.Type(); t != planpb.DataType_LONG && t != planpb.DataType_INT {
		return nil, fmt.Errorf("%w: %s's argument %d is %s, not an integer", ErrType, cs.name, i+1, TypeName(t))
	}
	return a, nil
}

// literal returns argument i's value when it is a literal.
func (cs *callSite) literal(i int) (Value, bool) {
	l, ok := cs.args[i].(*literalExpr)
	if !ok {
		return Null, false
	}
	return l.v, true
}

// literalString returns argument i, which must be a string literal (or a
// null one: null reports it).
func (cs *callSite) literalString(i int, what string) (s string, null bool, err error) {
	v, ok := cs.literal(i)
	switch {
	case !ok || (v.Kind != KindString && v.Kind != KindNull):
		return "", false, fmt.Errorf("%w: %s's %s (argument %d) must be a string literal", ErrType, cs.name, what, i+1)
	case v.Kind == KindNull:
		return "", true, nil
	}
	return string(v.B), false, nil
}

// constString is literalString for an argument that must not be null.
func (cs *callSite) constString(i int, what string) (string, error) {
	s, null, err := cs.literalString(i, what)
	if err == nil && null {
		err = fmt.Errorf("%w: %s's %s (argument %d) must not be null", ErrType, cs.name, what, i+1)
	}
	return s, err
}

// nullOf is an expression that is always null, of type t: what a call with
// a null literal where Spark returns null compiles to.
func nullOf(t planpb.DataType) Expr { return &literalExpr{Null, t} }
